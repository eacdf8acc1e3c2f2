//! Keeps tables that only ever grow small: a [`Pruner`] deletes, every `interval`, the rows of one
//! table older than its retention, in chunks of a few thousand rows per statement (so no
//! statement holds many locks or makes a large transaction), and reports the table's size and
//! what it deleted as metrics. [`Pruner::inbox`] prunes `choreo_inbox`; [`Service`] runs it for
//! every service that consumes. Another crate prunes a table of its own with [`Pruner::new`] and
//! a [`Table`] of its statements.
//!
//! # How long the inbox must remember
//!
//! The inbox is what makes a redelivered event harmless: an event whose row has been pruned is
//! applied a second time if it comes again. So the retention must be longer than any
//! redelivery can come: the shop's topics keep events 7 days (`retention.ms: 604800000` in
//! `topics/*.yaml`, `log.retention.hours=168` in the local stack), so a consumer group reset to
//! the earliest offset, or a dead letter redriven from its DLQ topic, can bring back an event up
//! to 7 days old. The default, [`DEFAULT_INBOX_RETENTION`] (8 days), covers that with a day to
//! spare; raise it with `CHOREO_INBOX_RETENTION` (e.g. `14d`) before you redrive or replay
//! anything older, and replay old dumps into a fresh database (as `choreo replay` is meant to be
//! used), never into a live one whose inbox has forgotten them. Less than an hour
//! ([`MIN_RETENTION`]) is refused at start-up: it would forget events still being retried.
//!
//! What does not live here: the inbox's writes (`crate::inbox`), and which rows a table may
//! lose (each [`Table`]'s statement says that).
//!
//! [`Service`]: crate::service::Service

use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use sqlx::PgPool;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::config::{duration_at_least, ConfigError};
use crate::metrics::Metrics;

/// The variable that sets the inbox's retention (see the module docs for why it is long).
pub const INBOX_RETENTION_VAR: &str = "CHOREO_INBOX_RETENTION";
/// Eight days: the topics' seven days of retention, and a day more.
pub const DEFAULT_INBOX_RETENTION: Duration = Duration::from_secs(8 * 24 * 3600);
/// The shortest retention accepted.
pub const MIN_RETENTION: Duration = Duration::from_secs(3600);
/// How often a pruner runs by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Rows deleted by one statement at most.
pub const DEFAULT_CHUNK: i64 = 5_000;
/// Statements one cycle runs at most (a backlog of more rows waits for the next cycle), so a
/// cycle ends and its gauge is set even while a huge backlog drains.
pub const DEFAULT_MAX_CHUNKS: u32 = 200;

/// How one table is pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneConfig {
    /// Rows older than this are deleted.
    pub retention: Duration,
    /// Time between two cycles.
    pub interval: Duration,
    /// Rows per delete statement.
    pub chunk: i64,
    /// Delete statements per cycle at most.
    pub max_chunks: u32,
}

impl PruneConfig {
    /// Prunes rows older than `retention`, with the default interval and chunks.
    pub fn new(retention: Duration) -> Self {
        Self {
            retention,
            interval: DEFAULT_INTERVAL,
            chunk: DEFAULT_CHUNK,
            max_chunks: DEFAULT_MAX_CHUNKS,
        }
    }

    /// The inbox's pruning: `CHOREO_INBOX_RETENTION` (default 8 days, at least an hour).
    pub fn inbox_from_env() -> Result<Self, ConfigError> {
        Self::inbox(std::env::var(INBOX_RETENTION_VAR).ok().as_deref())
    }

    /// The inbox's pruning for a value of `CHOREO_INBOX_RETENTION` (`None` or empty: 8 days).
    pub fn inbox(retention: Option<&str>) -> Result<Self, ConfigError> {
        match retention.filter(|value| !value.trim().is_empty()) {
            None => Ok(Self::new(DEFAULT_INBOX_RETENTION)),
            Some(value) => duration_at_least(
                INBOX_RETENTION_VAR,
                value,
                MIN_RETENTION,
                "a redelivered event older than the retention would be applied twice",
            )
            .map(Self::new),
        }
    }
}

/// The statements that prune one table.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// The table's name, for logs.
    pub name: &'static str,
    /// Deletes at most `$2` (bigint) rows older than `$1` (seconds, float8) that may go; one
    /// statement, so it commits on its own.
    pub delete_chunk: &'static str,
    /// Counts the table's rows.
    pub count: &'static str,
}

/// The inbox: its rows never change after their insert, so any row old enough may go. `skip
/// locked` keeps the pruners of two replicas from waiting for each other.
pub const INBOX: Table = Table {
    name: "choreo_inbox",
    delete_chunk: "delete from choreo_inbox where (consumer, event_id) in (
            select consumer, event_id from choreo_inbox
            where applied_at < now() - make_interval(secs => $1)
            limit $2 for update skip locked)",
    count: "select count(*) from choreo_inbox",
};

/// After the `chunks_done`-th statement of a cycle deleted `deleted` rows: is another one due?
/// Only a full chunk says that more old rows may be left.
pub fn another_chunk(deleted: u64, config: &PruneConfig, chunks_done: u32) -> bool {
    let full = u64::try_from(config.chunk).is_ok_and(|chunk| deleted >= chunk);
    full && chunks_done < config.max_chunks
}

/// Deletes `table`'s rows older than the retention, a chunk per statement, until a statement
/// deletes less than a chunk, `max_chunks` ran or `token` is cancelled. Returns the rows deleted.
pub async fn delete_in_chunks(
    pool: &PgPool,
    table: &Table,
    config: &PruneConfig,
    token: &CancellationToken,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    let mut chunks = 0;
    loop {
        let deleted = sqlx::query(table.delete_chunk)
            .bind(config.retention.as_secs_f64())
            .bind(config.chunk)
            .execute(pool)
            .await?
            .rows_affected();
        total += deleted;
        chunks += 1;
        if !another_chunk(deleted, config, chunks) || token.is_cancelled() {
            return Ok(total);
        }
    }
}

/// What one cycle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cycle {
    pub deleted: u64,
    /// The table's rows after the deletes.
    pub rows: i64,
}

/// Prunes one table every `interval`; see the module docs.
pub struct Pruner {
    pool: PgPool,
    table: Table,
    config: PruneConfig,
    rows: IntGauge,
    pruned: IntCounter,
}

impl Pruner {
    /// Prunes `table`, setting `rows` to its size and adding what it deletes to `pruned`.
    pub fn new(
        pool: PgPool,
        table: Table,
        config: PruneConfig,
        rows: IntGauge,
        pruned: IntCounter,
    ) -> Self {
        Self {
            pool,
            table,
            config,
            rows,
            pruned,
        }
    }

    /// The inbox's pruner, reporting `choreo_inbox_rows` and `choreo_inbox_pruned_total`.
    pub fn inbox(pool: PgPool, config: PruneConfig, metrics: &Metrics) -> Self {
        Self::new(
            pool,
            INBOX,
            config,
            metrics.inbox_rows.clone(),
            metrics.inbox_pruned.clone(),
        )
    }

    /// One cycle: the deletes, then the count.
    #[tracing::instrument(skip_all, fields(table = self.table.name), err)]
    pub async fn cycle(&self, token: &CancellationToken) -> Result<Cycle, sqlx::Error> {
        let deleted = delete_in_chunks(&self.pool, &self.table, &self.config, token).await?;
        self.pruned.inc_by(deleted);
        let rows: i64 = sqlx::query_scalar(self.table.count)
            .fetch_one(&self.pool)
            .await?;
        self.rows.set(rows);
        if deleted > 0 {
            tracing::info!(table = self.table.name, deleted, rows, "pruned");
        }
        Ok(Cycle { deleted, rows })
    }

    /// Runs a cycle now and every `interval` until `token` is cancelled. A failed cycle (the
    /// database away) is logged and the next one tries again: pruning late is harmless.
    pub async fn run(self, token: CancellationToken) -> Result<(), std::convert::Infallible> {
        let mut every = tokio::time::interval(self.config.interval);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = token.cancelled() => return Ok(()),
                _ = every.tick() => {}
            }
            // The error is logged by the span of `cycle`.
            let _ = self.cycle(&token).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(chunk: i64, max_chunks: u32) -> PruneConfig {
        PruneConfig {
            chunk,
            max_chunks,
            ..PruneConfig::new(DEFAULT_INBOX_RETENTION)
        }
    }

    #[test]
    fn a_full_chunk_asks_for_another_and_a_short_one_ends_the_cycle() {
        let config = config(5_000, 200);
        assert!(another_chunk(5_000, &config, 1));
        assert!(!another_chunk(4_999, &config, 1));
        assert!(!another_chunk(0, &config, 1));
    }

    #[test]
    fn a_cycle_stops_after_its_most_chunks_even_with_rows_left() {
        let config = config(10, 3);
        assert!(another_chunk(10, &config, 2));
        assert!(!another_chunk(10, &config, 3));
    }

    #[test]
    fn the_inbox_keeps_eight_days_by_default_longer_than_the_topics_week() {
        let week = Duration::from_secs(604_800_000 / 1000);
        assert!(DEFAULT_INBOX_RETENTION > week);
        assert_eq!(PruneConfig::new(DEFAULT_INBOX_RETENTION).chunk, 5_000);
    }

    #[test]
    fn the_inbox_retention_is_read_in_any_unit_and_defaults_to_eight_days() {
        let retention = |value| PruneConfig::inbox(value).map(|c| c.retention.as_secs());
        assert_eq!(retention(None), Ok(8 * 86_400));
        assert_eq!(retention(Some(" ")), Ok(8 * 86_400));
        assert_eq!(retention(Some("14d")), Ok(14 * 86_400));
        assert_eq!(retention(Some("3600")), Ok(3600));
    }

    #[test]
    fn an_inbox_retention_below_an_hour_is_refused() {
        let err = PruneConfig::inbox(Some("59m")).unwrap_err();
        assert!(err.to_string().contains(INBOX_RETENTION_VAR), "{err}");
        assert!(err.to_string().contains("at least 3600s"), "{err}");
        assert!(err.to_string().contains("applied twice"), "{err}");
    }
}
