//! `choreo replay load`: produces a dump's records into a cluster. The file is checked whole
//! first (a garbled or cut file produces nothing), the target topics must exist with at least the
//! source's partitions and be empty (unless `--force`), and every schema is registered in the
//! target registry before the first record is sent. One idempotent producer sends the records in
//! file order to their partition number, so each key keeps its order; every delivery is awaited.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use choreo::avro::wire;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};

use super::format::{DumpReader, Header};
use super::{blocking, progress, LoadArgs};
use crate::cluster::{registry_config, ClusterArgs};
use crate::failure::Failure;

/// How many sends may wait for their delivery report at once.
const IN_FLIGHT: usize = 10_000;

/// What a pass over the file found.
struct Scan {
    header: Header,
    /// (source topic, schema id) of every framed value.
    used: BTreeSet<(String, u32)>,
    /// Per source topic, the highest partition a record names.
    max_partition: BTreeMap<String, i32>,
}

pub async fn run(cluster: &ClusterArgs, args: LoadArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let timeout = Duration::from_secs(cluster.timeout);
    let kafka = cluster.kafka()?;
    let scan = scan(&args.file)?;
    let mapping: HashMap<String, String> = args.topic_map.iter().cloned().collect();
    for from in mapping.keys() {
        if !scan.max_partition.contains_key(from) {
            return Err(Failure::BadInput(format!(
                "--topic-map {from}=…: the dump has no records of topic `{from}`"
            )));
        }
    }
    let target = |topic: &str| mapping.get(topic).cloned().unwrap_or_else(|| topic.into());

    // The partitions each target topic needs: as many as its source had.
    let mut needed: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for (topic, max) in &scan.max_partition {
        let from_header = scan
            .header
            .topics
            .iter()
            .find(|t| &t.name == topic)
            .map_or(0, |t| t.partitions);
        let wanted = from_header.max(usize::try_from(*max).unwrap_or(0) + 1);
        needed.insert(target(topic), (topic.clone(), wanted));
    }
    let targets: Vec<String> = needed.keys().cloned().collect();
    let holding = {
        let (kafka, targets) = (kafka.clone(), targets.clone());
        blocking(move || topics_holding_records(&kafka, &targets, timeout)).await?
    };
    for (topic, partitions) in &holding.partitions {
        let (source, wanted) = &needed[topic];
        if partitions < wanted {
            return Err(Failure::BadInput(format!(
                "topic `{topic}` has {partitions} partition(s); the dump's `{source}` had \
                 {wanted}: add partitions first (records keep their partition number)"
            )));
        }
    }
    if !holding.non_empty.is_empty() && !args.force {
        return Err(Failure::Refused(format!(
            "topic(s) {} already hold records; pass --force to add the dump's records anyway",
            holding.non_empty.join(", ")
        )));
    }

    let registry = registry_config(args.registry.as_deref())?;
    let ids =
        choreo::replay::schemas::register(&registry, timeout, &scan.header, &scan.used, &target)
            .await?;

    let producer: FutureProducer = choreo::kafka::producer_config(&kafka, "choreo-replay-load")
        .set("message.timeout.ms", (timeout.as_millis() * 4).to_string())
        .create()
        .map_err(|e| Failure::Error(anyhow::anyhow!("cannot create a Kafka producer: {e}")))?;
    let mut reader = DumpReader::open(&args.file)?;
    let bar = progress(Some(reader.header.records), "load");
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut per_topic: BTreeMap<String, u64> = BTreeMap::new();
    let mut sent = 0u64;
    let mut bytes = 0u64;
    while let Some(mut record) = reader.next_record()? {
        if let Some(rate) = args.rate {
            let due = Duration::from_secs_f64(sent as f64 / f64::from(rate));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        if let Some(value) = record.value.as_mut() {
            if let Ok((old, _)) = wire::split(value) {
                let new = ids[&(record.topic.clone(), old)];
                value[..wire::HEADER_LEN].copy_from_slice(&wire::header(new));
            }
        }
        let topic = target(&record.topic);
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in &record.headers {
            headers = headers.insert(KafkaHeader {
                key,
                value: value.as_deref(),
            });
        }
        let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic)
            .partition(record.partition)
            .headers(headers);
        if let Some(key) = record.key.as_deref() {
            out = out.key(key);
        }
        if let Some(value) = record.value.as_deref() {
            out = out.payload(value);
            bytes += value.len() as u64;
        }
        if let Some(ms) = record.timestamp_ms {
            out = out.timestamp(ms);
        }
        loop {
            match producer.send_result(out) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    out = back;
                    match pending.pop_front() {
                        Some(oldest) => delivered(oldest).await?,
                        None => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                Err((error, _)) => return Err(produce_failed(&error.to_string())),
            }
        }
        if pending.len() >= IN_FLIGHT {
            if let Some(oldest) = pending.pop_front() {
                delivered(oldest).await?;
            }
        }
        sent += 1;
        *per_topic.entry(topic).or_insert(0) += 1;
        bar.set_position(sent);
    }
    while let Some(delivery) = pending.pop_front() {
        delivered(delivery).await?;
    }
    producer
        .flush(timeout)
        .map_err(|e| produce_failed(&e.to_string()))?;
    bar.finish_and_clear();
    let per_topic: Vec<String> = per_topic
        .iter()
        .map(|(topic, n)| format!("{topic}: {n}"))
        .collect();
    println!(
        "loaded {sent} record(s) ({}) from {}: {bytes} value bytes, {} schema(s), {:.1} s",
        if per_topic.is_empty() {
            "none".to_owned()
        } else {
            per_topic.join(", ")
        },
        args.file.display(),
        ids.values().collect::<BTreeSet<_>>().len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Reads the whole file once: it must be well formed and every schema id it uses listed.
fn scan(path: &std::path::Path) -> Result<Scan, Failure> {
    let mut reader = DumpReader::open(path)?;
    let mut used = BTreeSet::new();
    let mut max_partition: BTreeMap<String, i32> = BTreeMap::new();
    while let Some(record) = reader.next_record()? {
        if record.partition < 0 {
            return Err(Failure::BadInput(format!(
                "{}: a record of {} has partition {}",
                path.display(),
                record.topic,
                record.partition
            )));
        }
        if let Some(Ok((id, _))) = record.value.as_deref().map(wire::split) {
            if !reader.header.schemas.iter().any(|s| s.id == id) {
                return Err(Failure::BadInput(format!(
                    "{}: a record of {} (offset {}) uses schema id {id}, which the header does \
                     not list",
                    path.display(),
                    record.topic,
                    record.offset
                )));
            }
            used.insert((record.topic.clone(), id));
        }
        let max = max_partition.entry(record.topic).or_insert(0);
        *max = (*max).max(record.partition);
    }
    Ok(Scan {
        header: reader.header,
        used,
        max_partition,
    })
}

/// The target topics' partition counts and which of them hold records.
struct Holding {
    partitions: BTreeMap<String, usize>,
    non_empty: Vec<String>,
}

fn topics_holding_records(
    kafka: &choreo::KafkaConfig,
    topics: &[String],
    timeout: Duration,
) -> Result<Holding, Failure> {
    let counts = crate::read::partition_counts(kafka, topics, timeout)?;
    let consumer: BaseConsumer = choreo::kafka::admin_config(kafka, "choreo-cli")
        .create()
        .map_err(|e| Failure::Error(anyhow::anyhow!("cannot create a Kafka client: {e}")))?;
    let mut non_empty = Vec::new();
    for (topic, &count) in topics.iter().zip(&counts) {
        for partition in 0..i32::try_from(count).unwrap_or(i32::MAX) {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, timeout)
                .map_err(|e| {
                    Failure::Error(anyhow::anyhow!(
                        "reading the offsets of {topic}/{partition} failed: {e}"
                    ))
                })?;
            if high > low {
                non_empty.push(topic.clone());
                break;
            }
        }
    }
    Ok(Holding {
        partitions: topics.iter().cloned().zip(counts).collect(),
        non_empty,
    })
}

async fn delivered(delivery: DeliveryFuture) -> Result<(), Failure> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(produce_failed(&error.to_string())),
        Err(_) => Err(produce_failed("the producer went away")),
    }
}

fn produce_failed(why: &str) -> Failure {
    Failure::Error(anyhow::anyhow!("producing failed: {why}"))
}
