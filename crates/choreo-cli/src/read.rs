//! Reading a bounded range of one or more topics by assigned partitions (never joining or moving
//! a consumer group): from the beginning, an offset, a time or the last N records, up to the end
//! offsets as they were when reading started, a time, an offset, or following new records.
//!
//! The API is blocking (librdkafka's `BaseConsumer`); async callers run it on
//! `tokio::task::spawn_blocking`. Decoding values is not done here (see [`crate::decode`]).
//!
//! Reads are `read_committed`: the relay writes in transactions, so a partition's last offsets may
//! be commit markers that no record carries. A partition is therefore done when the consumer's
//! position reaches its stop offset, not only when a record with offset `stop - 1` arrives.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::failure::Failure;

/// The group id prefix of the CLI's own consumers: they assign partitions and never commit, so
/// their groups hold no offsets, and `choreo lag` skips them.
pub const GROUP_PREFIX: &str = "choreo-cli.";

/// A topic and one of its partitions.
pub type TopicPartition = (String, i32);

/// How long one poll waits before positions are checked again.
const POLL: Duration = Duration::from_millis(200);

/// Where reading starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Beginning,
    End,
    /// This offset (clamped to what the partition holds).
    Offset(i64),
    /// The first record at or after this time, in ms since the epoch.
    Time(i64),
    /// The last N offsets of each partition (commit markers count, so a transactional topic may
    /// give fewer than N records).
    Last(i64),
}

/// Where reading stops in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The end offsets when reading starts.
    End,
    /// Before the first record at or after this time, in ms since the epoch (or the end offset
    /// when reading starts, when no record is that recent yet).
    Time(i64),
    /// This offset, exclusive (clamped to the end offset when reading starts).
    Offset(i64),
    /// Never: wait for new records.
    Follow,
}

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub topics: Vec<String>,
    /// Only these partitions (of every topic); all when `None`.
    pub partitions: Option<Vec<i32>>,
    pub start: Start,
    pub stop: Stop,
}

/// One record as read, with owned bytes (the dump file's record too).
pub use choreo::replay::Record;

/// Where one partition is: its stop offset (exclusive; `None` when following) and whether it got
/// there.
#[derive(Debug)]
struct Bound {
    stop: Option<i64>,
    done: bool,
}

/// Reads a [`Selection`], one record at a time.
pub struct Reader {
    consumer: BaseConsumer,
    bounds: BTreeMap<TopicPartition, Bound>,
    /// Where each partition will read next, as far as records delivered tell.
    next_offsets: BTreeMap<TopicPartition, i64>,
    timeout: Duration,
}

impl Reader {
    /// Resolves partitions and start/stop offsets and assigns them. An unknown topic or partition
    /// is bad input naming it; an unreachable cluster is an error naming the brokers.
    pub fn open(
        kafka: &choreo::KafkaConfig,
        selection: &Selection,
        timeout: Duration,
    ) -> Result<Self, Failure> {
        if selection.topics.is_empty() {
            return Err(Failure::BadInput("no topic to read".into()));
        }
        let consumer = new_consumer(kafka)?;
        let partitions = resolve_partitions(&consumer, kafka, selection, timeout)?;

        let mut ranges = BTreeMap::new();
        let mut ends = BTreeMap::new();
        for (topic, partition) in partitions {
            let (low, high) = consumer
                .fetch_watermarks(&topic, partition, timeout)
                .map_err(|e| {
                    kafka_error(e, &format!("reading the offsets of {topic}/{partition}"))
                })?;
            let start = match selection.start {
                Start::Beginning | Start::Last(_) => low,
                Start::End => high,
                Start::Offset(offset) => offset.clamp(low, high),
                Start::Time(ms) => {
                    offset_for_time(&consumer, &topic, partition, ms, timeout)?.unwrap_or(high)
                }
            };
            let stop = match selection.stop {
                Stop::End => Some(high),
                Stop::Offset(offset) => Some(offset.min(high)),
                Stop::Time(ms) => Some(
                    offset_for_time(&consumer, &topic, partition, ms, timeout)?.unwrap_or(high),
                ),
                Stop::Follow => None,
            };
            ends.insert((topic.clone(), partition), (low, high));
            ranges.insert((topic, partition), (start, stop));
        }
        let consumer = if let Start::Last(n) = selection.start {
            let (consumer, starts) = last_records(consumer, &ends, n.max(0), timeout)?;
            for (key, start) in starts {
                if let Some(range) = ranges.get_mut(&key) {
                    range.0 = start;
                }
            }
            consumer
        } else {
            consumer
        };
        Self::assign(consumer, ranges, timeout)
    }

    /// A reader of `ranges` (start, exclusive stop or `None` to follow) on `consumer`.
    fn assign(
        consumer: BaseConsumer,
        ranges: BTreeMap<TopicPartition, (i64, Option<i64>)>,
        timeout: Duration,
    ) -> Result<Self, Failure> {
        let mut assignment = TopicPartitionList::new();
        let mut bounds = BTreeMap::new();
        let mut next_offsets = BTreeMap::new();
        for ((topic, partition), (start, stop)) in ranges {
            assignment
                .add_partition_offset(&topic, partition, Offset::Offset(start))
                .map_err(|e| Failure::Error(e.into()))?;
            let done = stop.is_some_and(|stop| start >= stop);
            next_offsets.insert((topic.clone(), partition), start);
            bounds.insert((topic, partition), Bound { stop, done });
        }
        consumer
            .assign(&assignment)
            .map_err(|e| kafka_error(e, "assigning partitions"))?;
        Ok(Self {
            consumer,
            bounds,
            next_offsets,
            timeout,
        })
    }
}

/// For each partition, the offset of its n-th record from the end (commit markers take
/// offsets too, so the last n offsets may hold fewer records): scans back from the end,
/// doubling the window until it holds n records or reaches the beginning.
fn last_records(
    mut consumer: BaseConsumer,
    ends: &BTreeMap<TopicPartition, (i64, i64)>,
    n: i64,
    timeout: Duration,
) -> Result<(BaseConsumer, BTreeMap<TopicPartition, i64>), Failure> {
    let mut starts: BTreeMap<TopicPartition, i64> = ends
        .iter()
        .map(|(key, &(_, high))| (key.clone(), high))
        .collect();
    if n == 0 {
        return Ok((consumer, starts));
    }
    let mut window = n;
    let mut pending: Vec<TopicPartition> = ends.keys().cloned().collect();
    while !pending.is_empty() {
        let ranges = pending
            .iter()
            .map(|key| {
                let (low, high) = ends[key];
                (key.clone(), ((high - window).max(low), Some(high)))
            })
            .collect::<BTreeMap<_, _>>();
        let mut offsets: BTreeMap<TopicPartition, Vec<i64>> = BTreeMap::new();
        let mut scan = Reader::assign(consumer, ranges.clone(), timeout)?;
        while let Some(record) = scan.next()? {
            offsets
                .entry((record.topic, record.partition))
                .or_default()
                .push(record.offset);
        }
        consumer = scan.consumer;
        let mut still = Vec::new();
        for (key, (start, _)) in ranges {
            let found = offsets.remove(&key).unwrap_or_default();
            let count = i64::try_from(found.len()).unwrap_or(i64::MAX);
            if count >= n || start <= ends[&key].0 {
                let skip = usize::try_from((count - n).max(0)).unwrap_or(0);
                let start = found.get(skip).copied().unwrap_or(ends[&key].1);
                starts.insert(key, start);
            } else {
                still.push(key);
            }
        }
        pending = still;
        window = window.saturating_mul(2);
    }
    Ok((consumer, starts))
}

impl Reader {
    /// Records still to read (the sum over partitions of stop - position), `None` when following.
    /// Commit markers count, so it is an upper bound.
    pub fn remaining(&self) -> Option<u64> {
        let mut total = 0u64;
        for (key, bound) in &self.bounds {
            let stop = bound.stop?;
            if bound.done {
                continue;
            }
            let next = self.next_offsets.get(key).copied().unwrap_or(stop);
            total += u64::try_from(stop - next).unwrap_or(0);
        }
        Some(total)
    }

    /// The next record in per-partition order; `Ok(None)` when every partition reached its stop
    /// (never when following: it waits).
    #[allow(clippy::should_implement_trait)] // fallible and blocking: not an Iterator
    pub fn next(&mut self) -> Result<Option<Record>, Failure> {
        let mut failing_since: Option<Instant> = None;
        loop {
            if self.all_done() {
                return Ok(None);
            }
            match self.consumer.poll(POLL) {
                Some(Ok(message)) => {
                    failing_since = None;
                    let key = (message.topic().to_owned(), message.partition());
                    let offset = message.offset();
                    let Some(bound) = self.bounds.get_mut(&key) else {
                        continue;
                    };
                    if bound.done || bound.stop.is_some_and(|stop| offset >= stop) {
                        bound.done = true;
                        continue;
                    }
                    if bound.stop.is_some_and(|stop| offset + 1 >= stop) {
                        bound.done = true;
                    }
                    self.next_offsets.insert(key, offset + 1);
                    return Ok(Some(to_record(&message)));
                }
                Some(Err(KafkaError::PartitionEOF(_))) => self.check_positions()?,
                Some(Err(error)) => {
                    // librdkafka retries on its own; give up only when it keeps failing.
                    tracing::warn!(%error, "reading failed; retrying");
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > self.timeout {
                        return Err(kafka_error(error, "reading records"));
                    }
                }
                None => self.check_positions()?,
            }
        }
    }

    fn all_done(&self) -> bool {
        self.bounds.values().all(|b| b.done)
    }

    /// Marks done the partitions whose position reached their stop (past trailing commit markers).
    fn check_positions(&mut self) -> Result<(), Failure> {
        if self.bounds.values().all(|b| b.done || b.stop.is_none()) {
            return Ok(());
        }
        let positions = self
            .consumer
            .position()
            .map_err(|e| kafka_error(e, "reading the consumer's positions"))?;
        for element in positions.elements() {
            let key = (element.topic().to_owned(), element.partition());
            let Offset::Offset(position) = element.offset() else {
                continue;
            };
            if let Some(bound) = self.bounds.get_mut(&key) {
                if bound.stop.is_some_and(|stop| position >= stop) {
                    bound.done = true;
                }
                let next = self.next_offsets.entry(key).or_insert(position);
                *next = (*next).max(position);
            }
        }
        Ok(())
    }
}

/// A consumer that reads committed records only, in a throwaway group it never joins.
fn new_consumer(kafka: &choreo::KafkaConfig) -> Result<BaseConsumer, Failure> {
    let group = format!("{GROUP_PREFIX}{}", uuid::Uuid::now_v7().simple());
    choreo::kafka::consumer_config(kafka, &group, "choreo-cli")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .map_err(|e| Failure::Error(anyhow::anyhow!("cannot create a Kafka consumer: {e}")))
}

/// How many committed records each (topic, partition) holds in [start, stop): offsets minus
/// commit markers and aborted records. Reads them, so keep the ranges short.
pub fn count_records(
    kafka: &choreo::KafkaConfig,
    ranges: &[(TopicPartition, i64, i64)],
    timeout: Duration,
) -> Result<BTreeMap<TopicPartition, i64>, Failure> {
    let mut counts: BTreeMap<TopicPartition, i64> =
        ranges.iter().map(|(key, _, _)| (key.clone(), 0)).collect();
    if ranges.is_empty() {
        return Ok(counts);
    }
    let assigned = ranges
        .iter()
        .map(|(key, start, stop)| (key.clone(), (*start, Some(*stop))))
        .collect();
    let mut reader = Reader::assign(new_consumer(kafka)?, assigned, timeout)?;
    while let Some(record) = reader.next()? {
        *counts.entry((record.topic, record.partition)).or_default() += 1;
    }
    Ok(counts)
}

/// Opens a [`Reader`] on a blocking thread and streams its records through a channel, for async
/// callers. Reading stops when the receiver is dropped (at the next record).
pub async fn stream(
    kafka: &choreo::KafkaConfig,
    selection: Selection,
    timeout: Duration,
) -> Result<tokio::sync::mpsc::Receiver<Result<Record, Failure>>, Failure> {
    let kafka = kafka.clone();
    let mut reader = tokio::task::spawn_blocking(move || Reader::open(&kafka, &selection, timeout))
        .await
        .map_err(|e| Failure::Error(e.into()))??;
    let (sender, receiver) = tokio::sync::mpsc::channel(1024);
    tokio::task::spawn_blocking(move || loop {
        let next = match reader.next() {
            Ok(Some(record)) => Ok(record),
            Ok(None) => return,
            Err(failure) => Err(failure),
        };
        let failed = next.is_err();
        if sender.blocking_send(next).is_err() || failed {
            return;
        }
    });
    Ok(receiver)
}

/// The selected partitions of the selected topics, checked against the cluster's metadata.
fn resolve_partitions(
    consumer: &BaseConsumer,
    kafka: &choreo::KafkaConfig,
    selection: &Selection,
    timeout: Duration,
) -> Result<Vec<TopicPartition>, Failure> {
    let metadata = consumer.fetch_metadata(None, timeout).map_err(|e| {
        Failure::Error(anyhow::anyhow!(
            "no Kafka broker answered at {} within {timeout:?}: {e}",
            kafka.brokers
        ))
    })?;
    let mut partitions = Vec::new();
    for name in &selection.topics {
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| Failure::BadInput(format!("topic `{name}` does not exist")))?;
        let ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        match &selection.partitions {
            None => partitions.extend(ids.iter().map(|&id| (name.clone(), id))),
            Some(wanted) => {
                for &id in wanted {
                    if !ids.contains(&id) {
                        return Err(Failure::BadInput(format!(
                            "topic `{name}` has no partition {id} (it has {})",
                            ids.len()
                        )));
                    }
                    partitions.push((name.clone(), id));
                }
            }
        }
    }
    partitions.sort();
    partitions.dedup();
    Ok(partitions)
}

/// The number of partitions of each of `topics`, or bad input naming one that does not exist.
pub fn partition_counts(
    kafka: &choreo::KafkaConfig,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<usize>, Failure> {
    let consumer: BaseConsumer = choreo::kafka::admin_config(kafka, "choreo-cli")
        .create()
        .map_err(|e| Failure::Error(anyhow::anyhow!("cannot create a Kafka client: {e}")))?;
    let selection = Selection {
        topics: topics.to_vec(),
        partitions: None,
        start: Start::Beginning,
        stop: Stop::End,
    };
    let partitions = resolve_partitions(&consumer, kafka, &selection, timeout)?;
    Ok(topics
        .iter()
        .map(|t| partitions.iter().filter(|(name, _)| name == t).count())
        .collect())
}

/// The first offset at or after `ms`, `None` when no record is that recent.
fn offset_for_time(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    ms: i64,
    timeout: Duration,
) -> Result<Option<i64>, Failure> {
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset(topic, partition, Offset::Offset(ms))
        .map_err(|e| Failure::Error(e.into()))?;
    let found = consumer
        .offsets_for_times(query, timeout)
        .map_err(|e| kafka_error(e, &format!("looking up a time in {topic}/{partition}")))?;
    Ok(found
        .find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(offset) if offset >= 0 => Some(offset),
            _ => None,
        }))
}

fn to_record(message: &impl Message) -> Record {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    Record {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        headers,
        value: message.payload().map(<[u8]>::to_vec),
    }
}

fn kafka_error(error: KafkaError, doing: &str) -> Failure {
    Failure::Error(anyhow::anyhow!("{doing} failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_is_read_as_text_and_the_last_of_a_name_wins() {
        let record = Record {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            timestamp_ms: None,
            key: Some(b"order-1".to_vec()),
            headers: vec![
                ("event_type".into(), Some(b"first".to_vec())),
                ("binary".into(), Some(vec![0xff, 0xfe])),
                ("event_type".into(), Some(b"second".to_vec())),
                ("empty".into(), None),
            ],
            value: None,
        };
        assert_eq!(record.header("event_type"), Some("second"));
        assert_eq!(record.header("binary"), None);
        assert_eq!(record.header("empty"), None);
        assert_eq!(record.header("missing"), None);
        assert_eq!(record.key_str(), Some("order-1"));
    }
}
