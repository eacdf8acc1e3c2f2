//! The Kafka side of `choreo lag`: consumer groups, their committed offsets and the partitions'
//! end offsets. Blocking (librdkafka); [`super::run`] calls it on a blocking thread.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::failure::Failure;

/// Lags up to this many offsets are counted in records; larger ones are offset differences.
pub const COUNTED: i64 = 1000;

/// One group's committed position in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    pub end: i64,
    /// Records between the committed offset and the end: counted when at most [`COUNTED`]
    /// offsets, else the offset difference (commit markers included).
    pub lag: i64,
    /// The committed offset's metadata: a consumer runner whose batch keeps failing writes
    /// `stuck since <time>: <error>` there; empty while the partition flows.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// One consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupLag {
    pub group: String,
    /// The coordinator's word for it (Stable, Empty, PreparingRebalance, Dead, ...).
    pub state: String,
    pub members: usize,
    pub partitions: Vec<PartitionLag>,
    pub total_lag: i64,
}

/// The lag of `wanted` groups, or of every group but the CLI's own when empty.
pub fn lag(
    kafka: &choreo::KafkaConfig,
    wanted: &[String],
    timeout: Duration,
) -> Result<Vec<GroupLag>, Failure> {
    let client: BaseConsumer = choreo::kafka::admin_config(kafka, "choreo-lag")
        .create()
        .map_err(|e| Failure::Error(anyhow::anyhow!("cannot create a Kafka client: {e}")))?;
    let metadata = client.fetch_metadata(None, timeout).map_err(|e| {
        Failure::Error(anyhow::anyhow!(
            "no Kafka broker answered at {} within {timeout:?}: {e}",
            kafka.brokers
        ))
    })?;
    let listed = client
        .fetch_group_list(None, timeout)
        .map_err(|e| Failure::Error(anyhow::anyhow!("listing consumer groups failed: {e}")))?;
    let mut groups: Vec<(String, String, usize)> = listed
        .groups()
        .iter()
        .filter(|g| wanted.is_empty() || wanted.iter().any(|w| w == g.name()))
        .filter(|g| !g.name().starts_with(crate::read::GROUP_PREFIX))
        .map(|g| (g.name().to_owned(), g.state().to_owned(), g.members().len()))
        .collect();
    for name in wanted {
        if !groups.iter().any(|(g, _, _)| g == name) {
            groups.push((name.clone(), "unknown".into(), 0));
        }
    }
    groups.sort();

    let mut every_partition = TopicPartitionList::new();
    for topic in metadata.topics() {
        if topic.name().starts_with("__") || topic.error().is_some() {
            continue;
        }
        for partition in topic.partitions() {
            every_partition.add_partition(topic.name(), partition.id());
        }
    }
    groups
        .into_iter()
        .map(|(group, state, members)| {
            let mut partitions = committed(&client, kafka, &group, &every_partition, timeout)?;
            count_short_lags(kafka, &mut partitions, timeout)?;
            let total_lag = partitions.iter().map(|p| p.lag).sum();
            Ok(GroupLag {
                group,
                state,
                members,
                partitions,
                total_lag,
            })
        })
        .collect()
}

/// Replaces offset differences of at most [`COUNTED`] by the records in them: a transaction's
/// commit marker takes an offset, so an idle partition of a transactional topic is one offset
/// behind with nothing to read.
fn count_short_lags(
    kafka: &choreo::KafkaConfig,
    partitions: &mut [PartitionLag],
    timeout: Duration,
) -> Result<(), Failure> {
    let short: Vec<((String, i32), i64, i64)> = partitions
        .iter()
        .filter(|p| p.lag > 0 && p.lag <= COUNTED)
        .map(|p| ((p.topic.clone(), p.partition), p.committed, p.end))
        .collect();
    let counts = crate::read::count_records(kafka, &short, timeout)?;
    for p in partitions {
        if let Some(&count) = counts.get(&(p.topic.clone(), p.partition)) {
            p.lag = count;
        }
    }
    Ok(())
}

/// The partitions `group` has committed offsets for, with their end offsets.
fn committed(
    client: &BaseConsumer,
    kafka: &choreo::KafkaConfig,
    group: &str,
    partitions: &TopicPartitionList,
    timeout: Duration,
) -> Result<Vec<PartitionLag>, Failure> {
    // Committed offsets are asked for in the group's name; this consumer never joins it.
    let consumer: BaseConsumer = choreo::kafka::consumer_config(kafka, group, "choreo-lag")
        .create()
        .map_err(|e| Failure::Error(anyhow::anyhow!("cannot create a Kafka consumer: {e}")))?;
    let offsets = consumer
        .committed_offsets(partitions.clone(), timeout)
        .map_err(|e| {
            Failure::Error(anyhow::anyhow!(
                "reading the committed offsets of group `{group}` failed: {e}"
            ))
        })?;
    let mut lags = Vec::new();
    for element in offsets.elements() {
        let Offset::Offset(committed) = element.offset() else {
            continue;
        };
        let (_, end) = client
            .fetch_watermarks(element.topic(), element.partition(), timeout)
            .map_err(|e| {
                Failure::Error(anyhow::anyhow!(
                    "reading the end offset of {}/{} failed: {e}",
                    element.topic(),
                    element.partition()
                ))
            })?;
        lags.push(PartitionLag {
            topic: element.topic().to_owned(),
            partition: element.partition(),
            committed,
            end,
            lag: (end - committed).max(0),
            note: element.metadata().to_owned(),
        });
    }
    lags.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(lags)
}
