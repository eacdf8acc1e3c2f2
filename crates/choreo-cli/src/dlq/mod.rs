//! `choreo dlq`: dead letters. A consumer sends a message it can never apply to
//! `<topic>.<group>.dlq` with the original key, value and headers plus `dlq.*` headers saying
//! why ([`choreo::consumer::dlq`]). `list` counts them by source topic, group and reason, `show`
//! prints them decoded, `redrive` sends them back to their original topic once the cause is
//! fixed, at most once each unless asked again (the ledger, `ledger.rs`).
//!
//! This module holds the arguments, the dispatch and the edges the commands share (the cluster's
//! topic names, reading with [`crate::read`]); which letters are selected and how they are
//! grouped is in `select.rs`, and what a redrive does with each in `decide.rs`; both are pure.

mod decide;
mod ledger;
mod list;
mod redrive;
mod select;
mod show;

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::cluster::ClusterArgs;
use crate::failure::Failure;
use crate::read::{Record, Selection, Start, Stop};
use crate::topics::cluster::Admin;
use select::{Filter, OffsetRange};

const DLQ_HELP: &str = "\
Dead-letter topics are named <topic>.<group>.dlq. Each dead letter keeps the original key, value
and headers, plus dlq.reason (rejected, not_wire_format, unknown_schema, schema_mismatch,
malformed, encode_failed, retries_exhausted), dlq.error, dlq.attempts, dlq.original.topic,
dlq.original.partition, dlq.original.offset, dlq.failed_at and dlq.group.

Examples:
  choreo dlq list
  choreo dlq show shop.orders.v1.inventory.dlq --reason rejected
  choreo dlq redrive shop.orders.v1.inventory.dlq --reason rejected --dry-run";

const LIST_HELP: &str = "\
Examples:
  choreo dlq list                                      every topic whose name ends in .dlq
  choreo dlq list --topic shop.orders.v1.inventory.dlq
  choreo dlq list --json | jq 'select(.count > 10)'

One row (or JSON line) per dead-letter topic, source topic, consumer group and reason: how many
dead letters, how many of them the redrive ledger says were redriven, and when the first and the
last failed.";

const SHOW_HELP: &str = "\
Examples:
  choreo dlq show shop.orders.v1.inventory.dlq
  choreo dlq show shop.orders.v1.inventory.dlq --reason not_wire_format --limit 5
  choreo dlq show shop.orders.v1.inventory.dlq --key 0190b6c2-... | jq .value
  choreo dlq show shop.orders.v1.inventory.dlq --partition 2 --from-offset 100 --to-offset 120

One JSON object per line: dlq {topic, partition, offset}, key, reason, error, attempts,
failed_at, group, original {topic, partition, offset}, every header (original and dlq.*),
event_type and value decoded with its writer's schema, or value_base64 and decode_error when it
cannot be decoded (often why it is a dead letter), and redriven (the ledger's entry) or null.";

const REDRIVE_HELP: &str = "\
Examples:
  choreo dlq redrive shop.orders.v1.inventory.dlq --reason rejected --dry-run
  choreo dlq redrive shop.orders.v1.inventory.dlq --reason rejected
  choreo dlq redrive shop.orders.v1.inventory.dlq --partition 0 --from-offset 10 --to-offset 12
  choreo dlq redrive shop.orders.v1.inventory.dlq --all

Each selected dead letter is produced to its original topic (dlq.original.topic) with its
original key, value and headers (the dlq.* headers dropped), plus redrive_count (the previous one
+ 1) and redriven_from (<dlq topic>/<partition>/<offset>), partitioned by key like any event, so
it comes after what its key saw since it failed. Fix the cause first: a redriven event that fails
again becomes a new dead letter.

Never twice by accident: every redrive is recorded, after Kafka acknowledged the redriven record,
in the compacted topic choreo.dlq.redrives keyed by <dlq topic>/<partition>/<offset>. A dead
letter found there is skipped and reported; --again redrives it anyway. Even then the consumer
applies the event once: it keeps its event_id header, and the consumer's inbox skips an event_id
it has applied.

A selection is required: --reason, --key, --partition [--from-offset N] [--to-offset M], or --all
for every dead letter of the topic. Exit 1 when a record could not be redriven or recorded.";

/// Arguments of `choreo dlq`.
#[derive(Debug, Args)]
#[command(after_help = DLQ_HELP)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters grouped by dead-letter topic, source topic, group and reason, with counts,
    /// first and last failure, and how many were redriven.
    #[command(after_help = LIST_HELP)]
    List(ListArgs),
    /// Print dead letters as JSON lines: where they are, every header, the error and the value
    /// decoded (or raw when it cannot be).
    #[command(after_help = SHOW_HELP)]
    Show(ShowArgs),
    /// Send selected dead letters back to their original topic, each at most once unless
    /// --again.
    #[command(after_help = REDRIVE_HELP)]
    Redrive(RedriveArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// A dead-letter topic to count (repeatable); default: every topic whose name ends in .dlq.
    #[arg(long = "topic", value_name = "DLQ_TOPIC")]
    pub topics: Vec<String>,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Which dead letters of a topic: those matching every criterion given.
#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// Only dead letters with this dlq.reason (e.g. rejected, not_wire_format).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only dead letters with this key.
    #[arg(long)]
    pub key: Option<String>,
    /// Only this partition of the dead-letter topic.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Only offsets from N on (needs --partition).
    #[arg(long, value_name = "N", requires = "partition")]
    pub from_offset: Option<i64>,
    /// Only offsets up to M, inclusive (needs --partition).
    #[arg(long, value_name = "M", requires = "partition")]
    pub to_offset: Option<i64>,
}

impl SelectionArgs {
    fn filter(&self) -> Result<Filter, Failure> {
        let range = self
            .partition
            .map(|p| OffsetRange::new(p, self.from_offset, self.to_offset))
            .transpose()
            .map_err(Failure::BadInput)?;
        Ok(Filter {
            reason: self.reason.clone(),
            key: self.key.clone(),
            range,
        })
    }
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The dead-letter topic, named TOPIC.GROUP.dlq.
    pub topic: String,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Print at most this many dead letters.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// The schema registry's Confluent API base URL, to decode values.
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    pub registry: Option<String>,
}

#[derive(Debug, Args)]
pub struct RedriveArgs {
    /// The dead-letter topic, named TOPIC.GROUP.dlq.
    pub topic: String,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Every dead letter of the topic (a selection is required otherwise).
    #[arg(long, conflicts_with_all = ["reason", "key", "partition"])]
    pub all: bool,
    /// Say what would be redriven and skipped; produce nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Redrive dead letters the ledger says were redriven already.
    #[arg(long)]
    pub again: bool,
}

pub async fn run(cluster: &ClusterArgs, args: DlqArgs) -> Result<(), Failure> {
    let kafka = cluster.kafka()?;
    let timeout = Duration::from_secs(cluster.timeout);
    match args.command {
        DlqCommand::List(args) => list::run(&kafka, timeout, args).await,
        DlqCommand::Show(args) => show::run(&kafka, timeout, args).await,
        DlqCommand::Redrive(args) => redrive::run(&kafka, timeout, args).await,
    }
}

/// An admin client on a cluster that answered, and the names of its topics.
async fn connect(
    kafka: &choreo::KafkaConfig,
    timeout: Duration,
) -> Result<(Admin, BTreeSet<String>), Failure> {
    let admin = crate::topics::cluster::connect(kafka, timeout)?;
    let metadata = tokio::task::block_in_place(|| admin.inner().fetch_metadata(None, timeout))
        .map_err(|e| Failure::Error(anyhow::anyhow!("cannot read the cluster's topics: {e}")))?;
    let names = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.name().to_owned())
        .collect();
    Ok((admin, names))
}

/// Bad input unless `topic` is a dead-letter topic the cluster has.
fn check_dlq_topic(topic: &str, existing: &BTreeSet<String>) -> Result<(), Failure> {
    if !topic.ends_with(".dlq") {
        return Err(Failure::BadInput(format!(
            "`{topic}` is not a dead-letter topic: their names end in .dlq (<topic>.<group>.dlq)"
        )));
    }
    if !existing.contains(topic) {
        return Err(Failure::BadInput(format!(
            "dead-letter topic `{topic}` does not exist (`choreo dlq list` shows those that do)"
        )));
    }
    Ok(())
}

/// What to read of `topic` for `filter`: only the partition and offsets of its range, if any.
fn selection_for(topic: &str, filter: &Filter) -> Selection {
    Selection {
        topics: vec![topic.to_owned()],
        partitions: filter.range.map(|r| vec![r.partition()]),
        start: filter
            .range
            .map_or(Start::Beginning, |r| Start::Offset(r.from())),
        stop: filter
            .range
            .and_then(|r| r.end_exclusive())
            .map_or(Stop::End, Stop::Offset),
    }
}

/// Reads `selection` up to its end ([`crate::read::stream`]), folding each record into `state`
/// until `visit` breaks.
async fn scan<S>(
    kafka: &choreo::KafkaConfig,
    selection: Selection,
    timeout: Duration,
    mut state: S,
    mut visit: impl FnMut(&mut S, Record) -> ControlFlow<()>,
) -> Result<S, Failure> {
    let mut records = crate::read::stream(kafka, selection, timeout).await?;
    while let Some(record) = records.recv().await {
        if visit(&mut state, record?).is_break() {
            break;
        }
    }
    Ok(state)
}

/// The dead letters of `topic` that `filter` selects, at most `limit`.
async fn read_letters(
    kafka: &choreo::KafkaConfig,
    timeout: Duration,
    topic: &str,
    filter: &Filter,
    limit: Option<usize>,
) -> Result<Vec<Record>, Failure> {
    scan(
        kafka,
        selection_for(topic, filter),
        timeout,
        Vec::new(),
        |letters, record| {
            if filter.matches(&record) {
                letters.push(record);
            }
            if limit.is_some_and(|limit| letters.len() >= limit) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_reads_only_its_partition_and_offsets() {
        let filter = Filter {
            range: Some(OffsetRange::new(2, Some(10), Some(12)).unwrap()),
            ..Filter::default()
        };
        let selection = selection_for("t.g.dlq", &filter);
        assert_eq!(selection.partitions, Some(vec![2]));
        assert_eq!(selection.start, Start::Offset(10));
        assert_eq!(selection.stop, Stop::Offset(13));
        let everything = selection_for("t.g.dlq", &Filter::default());
        assert_eq!(
            (everything.partitions, everything.start, everything.stop),
            (None, Start::Beginning, Stop::End)
        );
    }

    #[test]
    fn only_existing_dlq_topics_are_accepted() {
        let existing: BTreeSet<String> = ["a.g.dlq".to_owned()].into();
        assert!(check_dlq_topic("a.g.dlq", &existing).is_ok());
        let Err(Failure::BadInput(message)) = check_dlq_topic("b.g.dlq", &existing) else {
            panic!("bad input");
        };
        assert!(message.contains("b.g.dlq"));
        assert!(matches!(
            check_dlq_topic("shop.orders.v1", &existing),
            Err(Failure::BadInput(_))
        ));
    }
}
