//! `choreo replay`: dump event streams to a portable file ([`dump`]) or load a dump into a
//! cluster ([`load`]). The file format is the backbone's ([`format`](mod@format), from
//! [`choreo::replay::format`]), which a service binary's `replay` subcommand also reads to
//! reprocess a range through the service's own handlers (this tool knows no service). Reading
//! Kafka goes through [`crate::read`]; nothing here joins a consumer group.

pub mod dump;
pub mod load;

use std::path::PathBuf;

use clap::{Args, Subcommand};

pub use choreo::replay::format;
pub(crate) use choreo::replay::progress;
pub use choreo::replay::RangeArgs;

use crate::cluster::ClusterArgs;
use crate::failure::Failure;
use crate::read::{Selection, Start, Stop};

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
}

/// What to read from Kafka for `range` (keys are filtered afterwards, see
/// [`RangeArgs::wants_key`]).
pub fn selection(range: &RangeArgs, topics: Vec<String>) -> Selection {
    Selection {
        topics,
        partitions: (!range.partitions.is_empty()).then(|| range.partitions.clone()),
        start: match (range.from_offset, range.from_time) {
            (Some(offset), _) => Start::Offset(offset),
            (None, Some(ms)) => Start::Time(ms),
            (None, None) => Start::Beginning,
        },
        stop: match (range.to_offset, range.to_time) {
            (Some(offset), _) => Stop::Offset(offset),
            (None, Some(ms)) => Stop::Time(ms),
            (None, None) => Stop::End,
        },
    }
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

pub async fn run(cluster: &ClusterArgs, args: ReplayArgs) -> Result<(), Failure> {
    match args.command {
        ReplayCommand::Dump(args) => dump::run(cluster, args).await,
        ReplayCommand::Load(args) => load::run(cluster, args).await,
    }
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

    #[test]
    fn mappings_name_two_topics() {
        assert_eq!(parse_mapping("a=b"), Ok(("a".into(), "b".into())));
        assert!(parse_mapping("a=").is_err());
    }
}
