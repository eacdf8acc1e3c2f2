//! What went over the shop's topics during a run: the end offsets of every partition before and
//! after, and the events in between (key, type, id), read by assigned partitions so that no
//! consumer group is touched.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use choreo::consumer::dlq;
use choreo::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// The shop's topics (every topic a shop event travels on).
pub const SHOP_TOPICS: &[&str] = shop_events::TOPICS;

/// The dead-letter topics of the shop's topics that exist now, as (topic, group, DLQ topic):
/// a consumer creates `<topic>.<group>.dlq` for each topic it reads when it starts, so these
/// also say which groups consume which topic.
pub fn dead_letter_topics(kafka: &KafkaConfig) -> anyhow::Result<Vec<(String, String, String)>> {
    let consumer = consumer(kafka)?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .context("the broker's topics")?;
    let mut found = Vec::new();
    for topic in metadata.topics() {
        let name = topic.name();
        let Some(rest) = name.strip_suffix(".dlq") else {
            continue;
        };
        for shop_topic in SHOP_TOPICS {
            if let Some(group) = rest.strip_prefix(&format!("{shop_topic}.")) {
                found.push(((*shop_topic).to_owned(), group.to_owned(), name.to_owned()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// End offsets per (topic, partition).
#[derive(Debug, Clone, Default)]
pub struct Marks(pub BTreeMap<(String, i32), i64>);

/// One event as read from a topic.
#[derive(Debug, Clone)]
pub struct Seen {
    pub topic: String,
    pub key: String,
    pub event_type: String,
    pub event_id: String,
    /// The `causation_id` header: the event this one answers (none on an OrderPlaced).
    pub causation_id: Option<String>,
    pub occurred_at: Option<String>,
    pub timestamp_ms: Option<i64>,
    /// On a dead-letter topic: why it is there (`dlq.reason: dlq.error`).
    pub dlq_reason: Option<String>,
}

fn consumer(kafka: &KafkaConfig) -> anyhow::Result<BaseConsumer> {
    let config = choreo::kafka::consumer_config(kafka, "shop-e2e-reader", "shop-e2e-reader");
    Ok(config.create()?)
}

/// The end offset of every partition of `topics` now.
pub fn marks(kafka: &KafkaConfig, topics: &[&str]) -> anyhow::Result<Marks> {
    let consumer = consumer(kafka)?;
    let mut marks = Marks::default();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("metadata of {topic}"))?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (_, high) =
                consumer.fetch_watermarks(topic, partition.id(), Duration::from_secs(10))?;
            marks.0.insert(((*topic).to_owned(), partition.id()), high);
        }
    }
    Ok(marks)
}

/// Every event from `from` up to `to`, in partition order.
pub fn read_between(kafka: &KafkaConfig, from: &Marks, to: &Marks) -> anyhow::Result<Vec<Seen>> {
    let consumer = consumer(kafka)?;
    let mut assignment = TopicPartitionList::new();
    let mut pending = BTreeMap::new();
    for ((topic, partition), end) in &to.0 {
        let start = from
            .0
            .get(&(topic.clone(), *partition))
            .copied()
            .unwrap_or(0);
        if *end > start {
            assignment.add_partition_offset(topic, *partition, Offset::Offset(start))?;
            pending.insert((topic.clone(), *partition), *end);
        }
    }
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&assignment)?;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pending.is_empty() {
        if Instant::now() > deadline {
            bail!("reading the topics timed out; still waiting for {pending:?}");
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            // A transaction's commit marker takes an offset no message has: a partition whose
            // position passed its end is done even if its last offset never came.
            for tp in consumer.position()?.elements() {
                let key = (tp.topic().to_owned(), tp.partition());
                if let (Offset::Offset(at), Some(end)) = (tp.offset(), pending.get(&key)) {
                    if at >= *end {
                        pending.remove(&key);
                    }
                }
            }
            continue;
        };
        let message = message?;
        let key = (message.topic().to_owned(), message.partition());
        let Some(end) = pending.get(&key).copied() else {
            continue;
        };
        if message.offset() >= end {
            pending.remove(&key);
            continue;
        }
        let header = |name| {
            choreo::kafka::header(&message, name)
                .unwrap_or_default()
                .to_owned()
        };
        seen.push(Seen {
            topic: key.0.clone(),
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            event_type: header("event_type"),
            event_id: header("event_id"),
            causation_id: choreo::kafka::header(&message, choreo::envelope::CAUSATION_ID)
                .map(str::to_owned),
            occurred_at: choreo::kafka::header(&message, "occurred_at").map(str::to_owned),
            timestamp_ms: message.timestamp().to_millis(),
            dlq_reason: choreo::kafka::header(&message, dlq::REASON).map(|reason| {
                let error = choreo::kafka::header(&message, dlq::ERROR).unwrap_or_default();
                format!("{reason}: {error}")
            }),
        });
        if message.offset() + 1 >= end {
            pending.remove(&key);
        }
    }
    Ok(seen)
}
