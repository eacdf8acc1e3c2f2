//! `choreo replay dump`: reads a range of topics with [`crate::read`] (assigned partitions, no
//! group), writes each record to a dump file ([`super::format`]) and fetches the writer schema of
//! every schema id met from the source registry (`GET /schemas/ids/{id}`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use choreo::avro::wire;

use super::format::{DumpWriter, Header, SchemaEntry, Source, TopicInfo, FORMAT, VERSION};
use super::{blocking, progress, DumpArgs};
use crate::cluster::{registry_config, ClusterArgs};
use crate::failure::Failure;
use crate::read::Reader;

/// What the read loop saw.
struct Read {
    writer: DumpWriter,
    per_topic: BTreeMap<String, u64>,
    /// (topic, schema id) of every framed value.
    schema_ids: BTreeSet<(String, u32)>,
}

pub async fn run(cluster: &ClusterArgs, args: DumpArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let timeout = Duration::from_secs(cluster.timeout);
    let kafka = cluster.kafka()?;
    if args.range.topics.is_empty() {
        return Err(Failure::BadInput(
            "name at least one topic to dump with --topic".into(),
        ));
    }
    let registry_config = registry_config(args.registry.as_deref())?;
    let registry = registry_config.url.clone();
    let writer = DumpWriter::create(&args.output)?;
    let topics = args.range.topics.clone();
    let counts = {
        let (kafka, topics) = (kafka.clone(), topics.clone());
        blocking(move || crate::read::partition_counts(&kafka, &topics, timeout)).await?
    };
    let selection = super::selection(&args.range, topics.clone());
    let range = args.range.clone();
    let read = {
        let kafka = kafka.clone();
        blocking(move || {
            let mut reader = Reader::open(&kafka, &selection, timeout)?;
            read_all(&mut reader, writer, &range)
        })
        .await?
    };

    let http = crate::schemas::registry::http_client(&registry_config, timeout)
        .map_err(|e| Failure::Error(e.into()))?;
    let mut schemas = Vec::new();
    let mut texts: BTreeMap<u32, String> = BTreeMap::new();
    for (topic, id) in &read.schema_ids {
        if !texts.contains_key(id) {
            texts.insert(*id, fetch_schema(&http, &registry, *id).await?);
        }
        let schema = texts[id].clone();
        let mut entry = SchemaEntry {
            id: *id,
            subject: String::new(),
            schema,
        };
        let record = entry
            .record_name()
            .map_err(|e| Failure::Error(anyhow::anyhow!("the source registry's {e}")))?;
        entry.subject = choreo::avro::subject(topic, &record);
        schemas.push(entry);
    }
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        source: Source {
            brokers: kafka.brokers.clone(),
            registry: Some(registry),
        },
        topics: topics
            .iter()
            .zip(counts)
            .map(|(name, partitions)| TopicInfo {
                name: name.clone(),
                partitions,
            })
            .collect(),
        schemas,
        records: 0,
    };
    let records = read.writer.count();
    let bytes = read.writer.finish(header)?;
    let per_topic: Vec<String> = read
        .per_topic
        .iter()
        .map(|(topic, n)| format!("{topic}: {n}"))
        .collect();
    println!(
        "dumped {records} record(s) ({}) to {}: {bytes} bytes, {} schema(s), {:.1} s",
        if per_topic.is_empty() {
            "none".to_owned()
        } else {
            per_topic.join(", ")
        },
        args.output.display(),
        texts.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn read_all(
    reader: &mut Reader,
    mut writer: DumpWriter,
    range: &super::RangeArgs,
) -> Result<Read, Failure> {
    let bar = progress(reader.remaining(), "dump");
    let mut per_topic = BTreeMap::new();
    let mut schema_ids = BTreeSet::new();
    let mut seen = 0u64;
    while let Some(record) = reader.next()? {
        seen += 1;
        if seen.is_multiple_of(256) {
            if let Some(remaining) = reader.remaining() {
                bar.set_length(seen + remaining);
            }
        }
        bar.set_position(seen);
        if !range.wants_key(&record) {
            continue;
        }
        if let Some(Ok((id, _))) = record.value.as_deref().map(wire::split) {
            schema_ids.insert((record.topic.clone(), id));
        }
        *per_topic.entry(record.topic.clone()).or_insert(0) += 1;
        writer.write(&record)?;
    }
    bar.finish_and_clear();
    Ok(Read {
        writer,
        per_topic,
        schema_ids,
    })
}

/// The schema registered under `id`, normalized as `choreo schemas register` writes schemas
/// (so registering it again elsewhere finds the same text).
async fn fetch_schema(http: &reqwest::Client, url: &str, id: u32) -> Result<String, Failure> {
    #[derive(serde::Deserialize)]
    struct Found {
        schema: String,
    }
    let failed =
        |why: String| Failure::Error(anyhow::anyhow!("fetching schema id {id} from {url}: {why}"));
    let response = http
        .get(format!("{url}/schemas/ids/{id}"))
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!(
            "the registry answered {}",
            response.status()
        )));
    }
    let found: Found = response.json().await.map_err(|e| failed(e.to_string()))?;
    choreo::avro::normalize_schema(&found.schema).map_err(|e| failed(e.to_string()))
}
