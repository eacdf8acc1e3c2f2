//! Replaying recorded events through a service's own handlers into a fresh database: the dump
//! file a replay reads ([`format`](mod@format), which `choreo replay dump|load` share), the
//! service as a replay sees it ([`Service`], [`Replay`]), the runner ([`run`]) with its database
//! set-up (`database`) and its comparison with another database ([`diff`]), and the `replay`
//! subcommand every service binary offers ([`command_line`], [`ReplayArgs`], [`main`]). Nothing
//! here reads Kafka or joins a consumer group: records come from a dump file.

mod cli;
mod database;
pub mod diff;
pub mod format;
pub mod run;
pub mod schemas;
#[cfg(feature = "testing")]
pub mod testing;

use std::io::IsTerminal as _;
use std::sync::Arc;

use sqlx::PgConnection;

use crate::avro::Codec;
use crate::consumer::{traced, Handler, HandlerError, Incoming};
use crate::outbox::Outbox;

pub use cli::{
    command_line, help, main, parse_time, registry_config, CommandLine, RangeArgs, ReplayArgs,
};
pub use format::Record;

/// Why a replay did not succeed; each kind has its own exit code ([`ReplayError::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Something failed (a database, the registry): exit 1.
    #[error("{0}")]
    Failed(String),
    /// Bad arguments or files: exit 2.
    #[error("{0}")]
    BadInput(String),
    /// Refused (a database that is not fresh, differences found): exit 3.
    #[error("{0}")]
    Refused(String),
}

impl ReplayError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ReplayError::Failed(_) => 1,
            ReplayError::BadInput(_) => 2,
            ReplayError::Refused(_) => 3,
        }
    }
}

/// A service as a replay drives it.
pub struct Service<R> {
    /// Its consumer group, inbox consumer and outbox producer name.
    pub name: &'static str,
    /// The topics a replay reads from the file unless `--topic` names others.
    pub topics: Vec<String>,
    /// Its own migrations (the backbone's run first).
    pub migrator: &'static sqlx::migrate::Migrator,
    /// The tables that hold state events (or `--init-sql`) wrote; a database with rows in any of
    /// them, or in the inbox or outbox, is not fresh.
    pub state_tables: &'static [&'static str],
    /// Columns the service fills with ids it makes itself (UUIDv7, a provider's reference):
    /// never the same twice, so `--diff-against` does not compare them.
    pub generated_ids: &'static [&'static str],
    /// Builds its handlers as the service builds them, with the replay's codec and an outbox
    /// named after it (no relay runs: nothing is published).
    pub handlers: fn(Arc<Codec>, Outbox) -> R,
}

/// What applying one record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// The record changes nothing in a replay, and why.
    Skipped(&'static str),
}

/// Applies recorded events as a service's consumer would.
pub trait Replay: Send + Sync {
    /// Applies `event` inside `tx`; an error is what the consumer would have dead-lettered (or
    /// retried, for a transient one), as text (see [`reason`]).
    fn apply(
        &self,
        tx: &mut PgConnection,
        event: &Incoming,
    ) -> impl std::future::Future<Output = Result<Outcome, String>> + Send;
}

/// A consumer's [`Handler`] replayed as is: every event handed to it, as the consumer would.
pub struct Handled<H>(pub H);

impl<H: Handler> Replay for Handled<H> {
    async fn apply(&self, tx: &mut PgConnection, event: &Incoming) -> Result<Outcome, String> {
        traced(event, self.0.handle(tx, event))
            .await
            .map(|()| Outcome::Applied)
            .map_err(|e| reason(&e))
    }
}

/// The error as the consumer would record it: its dead-letter reason, or that it would retry.
pub fn reason(error: &HandlerError) -> String {
    match error.permanent_reason() {
        Some(_) => error.to_string(),
        None => format!("{error} (transient: the consumer would retry it)"),
    }
}

/// A progress bar on stderr (records, rate, ETA), hidden when stderr is not a terminal.
pub fn progress(total: Option<u64>, what: &str) -> indicatif::ProgressBar {
    let bar = match total {
        Some(total) => indicatif::ProgressBar::new(total),
        None => indicatif::ProgressBar::no_length(),
    };
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let template = format!("{what} {{bar:30}} {{pos}}/{{len}} records, {{per_sec}}, ETA {{eta}}");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}
