//! The `replay` subcommand of a service binary: its flags ([`ReplayArgs`]), its help, the
//! service's own command line with the subcommand added ([`command_line`]), and its entry point
//! ([`main`]) mapping failures to exit codes. The runner itself is [`super::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, FromArgMatches, Parser};

use super::{Record, Replay, ReplayError, Service};
use crate::RegistryConfig;

/// What a service binary was asked to do.
#[derive(Debug)]
pub enum CommandLine<C> {
    /// No subcommand: run the service with this configuration, as always.
    Serve(C),
    /// `<service> replay ...`.
    Replay(Box<ReplayArgs>),
}

/// Parses the process's arguments as the service's configuration `C`, with a `replay`
/// subcommand added; prints help or errors and exits as clap does.
pub fn command_line<C: Parser>(service: &str) -> CommandLine<C> {
    let replay = ReplayArgs::augment_args(clap::Command::new("replay"))
        .about(
            "Reprocess a dump file's records through this service's own handlers into a fresh \
             database, and optionally compare the result with another (normally the live one's)",
        )
        .after_help(help(service));
    let matches = C::command()
        .subcommand(replay)
        .subcommand_negates_reqs(true)
        .args_conflicts_with_subcommands(true)
        .get_matches();
    let parsed = match matches.subcommand_matches("replay") {
        Some(replay) => {
            ReplayArgs::from_arg_matches(replay).map(|args| CommandLine::Replay(Box::new(args)))
        }
        None => C::from_arg_matches(&matches).map(CommandLine::Serve),
    };
    parsed.unwrap_or_else(|e| e.exit())
}

/// The examples and notes of `<service> replay --help`.
pub fn help(service: &str) -> String {
    format!(
        "\
Examples:
  choreo replay dump --topic <topic> --from-time 2026-11-27T09:00:00Z --output incident.jsonl
  {service} replay --input incident.jsonl \\
      --database-url postgres://me@localhost/replay_{service} --create \\
      --diff-against \"$DATABASE_URL_{upper}\"

Applies each record of the file (per partition in offset order, merged across partitions and
topics by timestamp) in a transaction of its own: the inbox, then the service's handler, exactly
as its consumer would. Outbox rows stay in the fresh database: what the service would have
published; no relay, worker or sweeper runs. The file's schemas are registered in the local
registry first (SCHEMA_REGISTRY_URL or --registry) and the values' ids rewritten.

Exit codes: 0 done, 1 failed, 2 bad input (arguments, the file, --init-sql), 3 refused (the
database already holds the service's rows and --force was not given, or --diff-against found
differences).",
        upper = service.to_uppercase()
    )
}

/// Which records of the file: topics, partitions, offsets or times, keys.
#[derive(Debug, Clone, Default, Args)]
pub struct RangeArgs {
    /// A topic to read (repeatable).
    #[arg(long = "topic", value_name = "TOPIC")]
    pub topics: Vec<String>,
    /// Only this partition of every topic (repeatable); all when omitted.
    #[arg(long = "partition", value_name = "P")]
    pub partitions: Vec<i32>,
    /// Start at this offset in every partition (default: the beginning).
    #[arg(long, value_name = "N", conflicts_with = "from_time")]
    pub from_offset: Option<i64>,
    /// Start at the first record at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub from_time: Option<i64>,
    /// Stop before this offset in every partition (default: the end as of now).
    #[arg(long, value_name = "N", conflicts_with = "to_time")]
    pub to_offset: Option<i64>,
    /// Stop before the first record at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub to_time: Option<i64>,
    /// Only records with this key, i.e. this order id (repeatable).
    #[arg(long = "key", value_name = "K")]
    pub keys: Vec<String>,
}

impl RangeArgs {
    pub fn wants_key(&self, record: &Record) -> bool {
        self.keys.is_empty()
            || record
                .key_str()
                .is_some_and(|key| self.keys.iter().any(|k| k == key))
    }

    /// Whether a record read from a file is in the range (the file's own order is kept).
    pub fn contains(&self, topics: &[String], record: &Record) -> bool {
        let time = record.timestamp_ms;
        topics.contains(&record.topic)
            && (self.partitions.is_empty() || self.partitions.contains(&record.partition))
            && self.from_offset.is_none_or(|from| record.offset >= from)
            && self.to_offset.is_none_or(|to| record.offset < to)
            && self
                .from_time
                .is_none_or(|from| time.is_some_and(|t| t >= from))
            && self.to_time.is_none_or(|to| time.is_none_or(|t| t < to))
            && self.wants_key(record)
    }
}

/// An RFC 3339 time as milliseconds since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("`{text}` is not an RFC 3339 time (e.g. 2026-11-27T09:00:00Z): {e}"))
}

/// The flags of a service's `replay` subcommand.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The dump file to replay (written by `choreo replay dump`).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    #[command(flatten)]
    pub range: RangeArgs,
    /// The fresh database the replay writes to (never taken from the environment).
    #[arg(long, value_name = "URL")]
    pub database_url: String,
    /// Create the database (through PG_ADMIN_URL) if it does not exist.
    #[arg(long)]
    pub create: bool,
    /// Use a database that already holds the service's rows.
    #[arg(long)]
    pub force: bool,
    /// SQL run after the migrations and before replaying: state that does not come from events
    /// (e.g. inventory receipts).
    #[arg(long, value_name = "FILE")]
    pub init_sql: Option<PathBuf>,
    /// Compare the result with this database (normally the live service's).
    #[arg(long, value_name = "URL")]
    pub diff_against: Option<String>,
    /// A column the comparison ignores, besides timestamps and generated ids (repeatable).
    #[arg(long = "ignore", value_name = "COL")]
    pub ignore: Vec<String>,
    /// The schema registry the service's codec uses (Confluent API base URL).
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    pub registry: Option<String>,
    /// How long to wait for the schema registry on each request, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

/// The registry named by `--registry`, else by `SCHEMA_REGISTRY_URL`, called with the
/// credentials of the environment (`SCHEMA_REGISTRY_USERNAME`, `SCHEMA_REGISTRY_PASSWORD_FILE`
/// or `SCHEMA_REGISTRY_PASSWORD`); bad input naming the variable when neither is given (or is
/// blank), or when the URL or the credentials are malformed.
pub fn registry_config(url: Option<&str>) -> Result<RegistryConfig, ReplayError> {
    let var = RegistryConfig::URL_VAR;
    let url = url
        .map(str::to_owned)
        .or_else(|| std::env::var(var).ok())
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            ReplayError::BadInput(format!(
                "no schema registry: pass --registry, or set {var} (`scripts/stack up` writes it \
                 to .stack/env)"
            ))
        })?;
    let bad = |e: crate::ConfigError| ReplayError::BadInput(e.to_string());
    let credentials = crate::config::RegistryCredentials::from_env().map_err(bad)?;
    Ok(RegistryConfig::parse(url.trim())
        .map_err(bad)?
        .with_credentials(credentials))
}

/// Runs a service's `replay` subcommand to its exit code: logs (`RUST_LOG`, default warn) go to
/// stderr, the summary to stdout, an error to stderr.
pub async fn main<R: Replay>(service: Service<R>, args: Box<ReplayArgs>) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match super::run::run(&service, *args, &mut std::io::stdout()).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, at: i64, key: &str) -> Record {
        Record {
            topic: "t".into(),
            partition: 1,
            offset,
            timestamp_ms: Some(at),
            key: Some(key.as_bytes().to_vec()),
            headers: vec![],
            value: None,
        }
    }

    #[test]
    fn a_range_filters_file_records_as_kafka_would() {
        let range = RangeArgs {
            from_offset: Some(5),
            to_time: Some(1000),
            keys: vec!["a".into()],
            ..RangeArgs::default()
        };
        let topics = vec!["t".to_owned()];
        assert!(range.contains(&topics, &record(5, 999, "a")));
        assert!(
            !range.contains(&topics, &record(4, 10, "a")),
            "before the start"
        );
        assert!(
            !range.contains(&topics, &record(6, 1000, "a")),
            "at the stop time"
        );
        assert!(!range.contains(&topics, &record(6, 10, "b")), "another key");
        assert!(!range.contains(&["u".to_owned()], &record(6, 10, "a")));
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1000));
        assert!(parse_time("yesterday").is_err());
    }
}
