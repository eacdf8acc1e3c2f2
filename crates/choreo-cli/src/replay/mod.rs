//! `choreo replay`: dump event streams to a portable file ([`dump`]), load a dump into a cluster
//! ([`load`]), or reprocess a range through one service's own handlers into a fresh local
//! database ([`run`]) and compare that database with another ([`diff`]). The file format is in
//! [`format`]; `run`'s database and handlers are set up in `database` and `service`. Reading
//! Kafka goes through [`crate::read`]; nothing here joins a consumer group.

mod database;
pub mod diff;
pub mod dump;
pub mod format;
pub mod load;
pub mod run;
mod service;

use std::io::IsTerminal as _;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::cli::{ClusterArgs, Failure};
use crate::read::{Record, Selection, Start, Stop};

const DUMP_HELP: &str = "\
Examples:
  choreo replay dump --topic shop.orders.v1 --topic shop.payments.v1 --output incident.jsonl
  choreo replay dump --topic shop.orders.v1 --from-time 2026-11-27T09:00:00Z \\
      --to-time 2026-11-27T09:15:00Z --key 0199c0de-… --output one-order.jsonl

The file is JSON lines: a header (format, version, source, topics with their partition counts,
the writer schema of every schema id in the values), then one line per record (topic,
partition, offset, timestamp, key, headers, value as base64). It needs no registry to be read.";

const LOAD_HELP: &str = "\
Examples:
  choreo replay load incident.jsonl --topic-map shop.orders.v1=lab.orders.v1
  choreo replay load incident.jsonl --brokers laptop:9092 --registry http://laptop:8081 --rate 500

Registers every schema of the file in the target registry (under <target topic>-<record>),
rewrites each value's schema id to the target's, and produces each record with its key, headers
and timestamp to the same partition number, in file order, with one idempotent producer. Exit 2
when a target topic is missing or has fewer partitions than its source; exit 3 when it already
holds records (unless --force).";

const RUN_HELP: &str = "\
Examples:
  choreo replay run --service inventory --input incident.jsonl \\
      --database-url postgres://me@localhost/replay_inventory --create \\
      --init-sql receipts.sql --diff-against \"$DATABASE_URL_INVENTORY\"
  choreo replay run --service order --from-time 2026-11-27T09:00:00Z --key 0199c0de-… \\
      --database-url postgres://me@localhost/replay_order --create

Applies each record (per partition in offset order, merged across partitions and topics by
timestamp) in a transaction of its own: the inbox, then the service's handler, exactly as its
consumer would. Outbox rows stay in the fresh database: what the service would have published.
The payment worker and the order deadline sweeper do not run. Exit 3 when --diff-against finds
differences, or when the database already holds the service's rows (unless --force).";

/// Arguments of `choreo replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(subcommand)]
    pub command: ReplayCommand,
}

#[derive(Debug, Subcommand)]
pub enum ReplayCommand {
    /// Write a range of one or more topics to a portable, self-contained dump file.
    #[command(after_help = DUMP_HELP)]
    Dump(DumpArgs),
    /// Produce a dump file's records into a cluster, keeping partitions, keys, headers and
    /// timestamps, with the schema ids rewritten for the target registry.
    #[command(after_help = LOAD_HELP)]
    Load(LoadArgs),
    /// Reprocess a range (from Kafka or a dump file) through one service's own handlers into a
    /// fresh database, and optionally compare the result with another database.
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
}

/// Which records: topics, partitions, offsets or times, keys.
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
    /// What to read from Kafka (keys are filtered afterwards, see [`RangeArgs::wants_key`]).
    pub fn selection(&self, topics: Vec<String>) -> Selection {
        Selection {
            topics,
            partitions: (!self.partitions.is_empty()).then(|| self.partitions.clone()),
            start: match (self.from_offset, self.from_time) {
                (Some(offset), _) => Start::Offset(offset),
                (None, Some(ms)) => Start::Time(ms),
                (None, None) => Start::Beginning,
            },
            stop: match (self.to_offset, self.to_time) {
                (Some(offset), _) => Stop::Offset(offset),
                (None, Some(ms)) => Stop::Time(ms),
                (None, None) => Stop::End,
            },
        }
    }

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

fn parse_time(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("`{text}` is not an RFC 3339 time (e.g. 2026-11-27T09:00:00Z): {e}"))
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub range: RangeArgs,
    /// The dump file to write (replaced if it exists).
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// The source schema registry (Confluent API base URL), for the writer schemas.
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    pub registry: Option<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The dump file to load.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The target schema registry (Confluent API base URL).
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    pub registry: Option<String>,
    /// At most this many records per second.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,
    /// Write into topics that already hold records.
    #[arg(long)]
    pub force: bool,
    /// Produce the records of topic FROM to topic TO (repeatable).
    #[arg(long = "topic-map", value_name = "FROM=TO", value_parser = parse_mapping)]
    pub topic_map: Vec<(String, String)>,
}

fn parse_mapping(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => {
            Ok((from.to_owned(), to.to_owned()))
        }
        _ => Err(format!("`{text}` is not FROM=TO (two topic names)")),
    }
}

/// A service whose handlers `replay run` can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    Order,
    Inventory,
    Payment,
    Shipping,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The service whose handlers apply the records.
    #[arg(long, value_enum)]
    pub service: Service,
    #[command(flatten)]
    pub range: RangeArgs,
    /// Read the records from this dump file instead of Kafka.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// The fresh database the replay writes to.
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
}

pub async fn run(cluster: &ClusterArgs, args: ReplayArgs) -> Result<(), Failure> {
    match args.command {
        ReplayCommand::Dump(args) => dump::run(cluster, args).await,
        ReplayCommand::Load(args) => load::run(cluster, args).await,
        ReplayCommand::Run(args) => run::run(cluster, args).await,
    }
}

/// A progress bar on stderr (records, rate, ETA), hidden when stderr is not a terminal.
pub(crate) fn progress(total: Option<u64>, what: &str) -> indicatif::ProgressBar {
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

/// The Kafka settings from `--brokers`, or bad input.
pub(crate) fn kafka(cluster: &ClusterArgs) -> Result<choreo::KafkaConfig, Failure> {
    choreo::KafkaConfig::parse(&cluster.brokers).map_err(|e| Failure::BadInput(e.to_string()))
}

/// Runs blocking Kafka work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Failure::Error(anyhow::anyhow!("a reading task failed: {e}")))?
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
    fn times_are_rfc3339_and_mappings_name_two_topics() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1000));
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_mapping("a=b"), Ok(("a".into(), "b".into())));
        assert!(parse_mapping("a=").is_err());
    }
}
