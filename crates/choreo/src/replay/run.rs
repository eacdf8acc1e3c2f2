//! The replay runner: reads a dump file's records in a range (its schemas registered in the local
//! registry first, ids rewritten), merges them into one order ([`merge`]) and applies each in a
//! transaction of its own, with the inbox, as the service's consumer would, into a fresh database
//! (set up in `super::database`); then prints a summary ([`render`]) and, when asked, compares
//! the result with another database ([`super::diff`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::format::{DumpReader, Record};
use super::{
    database, diff, progress, registry_config, Outcome, RangeArgs, Replay, ReplayArgs, ReplayError,
};
use crate::avro::{wire, Codec};
use crate::consumer::Incoming;
use crate::envelope::Metadata;
use crate::outbox::Outbox;

/// What a replay did.
#[derive(Debug, Default)]
pub struct Summary {
    pub read: u64,
    pub applied: BTreeMap<String, u64>,
    pub skipped: BTreeMap<&'static str, u64>,
    pub duplicates: u64,
    pub failures: Vec<String>,
}

/// Replays `args.input` through `service`'s handlers into `args.database_url` and writes what it
/// did to `out` (see the module doc).
pub async fn run<R: Replay>(
    service: &super::Service<R>,
    args: ReplayArgs,
    out: &mut (dyn Write + Send),
) -> Result<Summary, ReplayError> {
    let started = Instant::now();
    let timeout = Duration::from_secs(args.timeout);
    let topics = if args.range.topics.is_empty() {
        service.topics.clone()
    } else {
        args.range.topics.clone()
    };
    let registry = registry_config(args.registry.as_deref())?;
    let init_sql = match &args.init_sql {
        Some(path) => Some((
            path.as_path(),
            std::fs::read_to_string(path).map_err(|e| {
                ReplayError::BadInput(format!("cannot read --init-sql {}: {e}", path.display()))
            })?,
        )),
        None => None,
    };
    let source = args.input.display().to_string();
    let records = from_file(&args.input, &args.range, &topics, &registry, timeout).await?;
    let records = merge(records);
    let orders: BTreeSet<String> = records
        .iter()
        .filter_map(|r| r.key_str().map(str::to_owned))
        .collect();

    let pool = database::connect(&args.database_url, args.create, out).await?;
    let init = init_sql.as_ref().map(|(path, sql)| (*path, sql.as_str()));
    database::prepare(&pool, service, args.force, init).await?;
    let codec = Arc::new(Codec::new(&registry).map_err(|e| ReplayError::Failed(e.to_string()))?);
    let handlers = (service.handlers)(codec.clone(), Outbox::new(codec, service.name));
    let summary = apply_all(&pool, &handlers, service.name, &records).await?;
    let published = would_publish(&pool).await?;

    writeln!(
        out,
        "{} replay: {} record(s) of {} order(s) from {source} into {} in {:.1} s",
        service.name,
        summary.read,
        orders.len(),
        database::name(&args.database_url),
        started.elapsed().as_secs_f64()
    )
    .map_err(output_failed)?;
    write!(out, "{}", render(&summary, &published)).map_err(output_failed)?;
    if let Some(other) = &args.diff_against {
        let orders: Vec<String> = orders.into_iter().collect();
        let mut ignore = args.ignore.clone();
        ignore.extend(service.generated_ids.iter().map(|c| (*c).to_owned()));
        diff::run(&pool, other, &orders, &ignore, out).await?;
    }
    Ok(summary)
}

/// Writing the report failed (stdout closed, say).
pub(super) fn output_failed(error: std::io::Error) -> ReplayError {
    ReplayError::Failed(format!("writing the report failed: {error}"))
}

/// The records of a dump file in the range, their schemas registered in `registry` and their
/// values rewritten to its ids (the file's ids are the source registry's).
async fn from_file(
    path: &Path,
    range: &RangeArgs,
    topics: &[String],
    registry: &crate::RegistryConfig,
    timeout: Duration,
) -> Result<Vec<Record>, ReplayError> {
    let (header, all) = DumpReader::open(path)?.read_all()?;
    let mut records: Vec<Record> = all
        .into_iter()
        .filter(|r| range.contains(topics, r))
        .collect();
    let used: BTreeSet<(String, u32)> = records
        .iter()
        .filter_map(|r| Some((r.topic.clone(), wire::split(r.value.as_deref()?).ok()?.0)))
        .collect();
    let same = |topic: &str| topic.to_owned();
    let ids = super::schemas::register(registry, timeout, &header, &used, &same).await?;
    for record in &mut records {
        if let Some(value) = record.value.as_mut() {
            if let Ok((old, _)) = wire::split(value) {
                let new = ids[&(record.topic.clone(), old)];
                value[..wire::HEADER_LEN].copy_from_slice(&wire::header(new));
            }
        }
    }
    Ok(records)
}

/// One order for records of several partitions and topics: each partition in offset order, and
/// across partitions the earliest timestamp first (ties by topic, then partition).
pub fn merge(records: Vec<Record>) -> Vec<Record> {
    let mut queues: BTreeMap<(String, i32), Vec<Record>> = BTreeMap::new();
    for record in records {
        queues
            .entry((record.topic.clone(), record.partition))
            .or_default()
            .push(record);
    }
    let mut queues: Vec<VecDeque<Record>> = queues
        .into_values()
        .map(|mut queue| {
            queue.sort_by_key(|r| r.offset);
            queue.into()
        })
        .collect();
    let mut merged = Vec::new();
    loop {
        let next = queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.front().map(|r| (r.timestamp_ms.unwrap_or(i64::MIN), i)))
            .min();
        let Some((_, index)) = next else {
            return merged;
        };
        merged.extend(queues[index].pop_front());
    }
}

/// Applies each record in a transaction of its own: inbox first (a duplicate is skipped), then
/// the handler. A failure is recorded and the replay goes on.
async fn apply_all(
    pool: &PgPool,
    handlers: &impl Replay,
    consumer: &str,
    records: &[Record],
) -> Result<Summary, ReplayError> {
    let bar = progress(Some(records.len() as u64), "apply");
    let mut summary = Summary::default();
    for record in records {
        bar.inc(1);
        summary.read += 1;
        let place = format!(
            "{}/{}@{} key {}",
            record.topic,
            record.partition,
            record.offset,
            record.key_str().unwrap_or("(none)")
        );
        let event = match incoming(record) {
            Ok(event) => event,
            Err(why) => {
                summary.failures.push(format!("{place}: {why}"));
                continue;
            }
        };
        let mut tx = pool
            .begin()
            .await
            .map_err(|e| ReplayError::Failed(e.to_string()))?;
        let fresh = crate::inbox::record(&mut tx, consumer, event.metadata.event_id)
            .await
            .map_err(|e| ReplayError::Failed(e.to_string()))?;
        if !fresh {
            summary.duplicates += 1;
            continue;
        }
        match handlers.apply(&mut tx, &event).await {
            Ok(outcome) => {
                tx.commit()
                    .await
                    .map_err(|e| ReplayError::Failed(e.to_string()))?;
                match outcome {
                    Outcome::Applied => {
                        *summary
                            .applied
                            .entry(event.metadata.event_type.clone())
                            .or_insert(0) += 1;
                    }
                    Outcome::Skipped(why) => *summary.skipped.entry(why).or_insert(0) += 1,
                }
            }
            Err(why) => summary
                .failures
                .push(format!("{} {place}: {why}", event.metadata.event_type)),
        }
    }
    bar.finish_and_clear();
    Ok(summary)
}

/// The record as the consumer hands it to a handler; why not, when it could not.
fn incoming(record: &Record) -> Result<Incoming, String> {
    let metadata = Metadata::from_headers(
        record
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_deref())),
    )
    .map_err(|e| format!("unreadable headers: {e}"))?;
    let value = record
        .value
        .clone()
        .ok_or_else(|| "no value (a tombstone)".to_owned())?;
    Ok(Incoming {
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        key: record.key_str().unwrap_or_default().to_owned(),
        metadata,
        value,
    })
}

/// The events the replay's outbox holds, per type: what the service would have published.
async fn would_publish(pool: &PgPool) -> Result<BTreeMap<String, i64>, ReplayError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select h->>1, count(*) from choreo_outbox, jsonb_array_elements(headers) h
         where h->>0 = 'event_type' group by 1 order by 1",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| ReplayError::Failed(e.to_string()))?;
    Ok(rows.into_iter().collect())
}

/// The summary's lines after the first.
pub fn render(summary: &Summary, published: &BTreeMap<String, i64>) -> String {
    let mut out = String::new();
    let counts = |map: Vec<(String, String)>| -> String {
        if map.is_empty() {
            return " none\n".into();
        }
        let mut text = String::from("\n");
        for (name, n) in map {
            text.push_str(&format!("    {name}: {n}\n"));
        }
        text
    };
    let pairs =
        |m: &BTreeMap<String, u64>| m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
    out.push_str(&format!("  applied:{}", counts(pairs(&summary.applied))));
    if !summary.skipped.is_empty() {
        let skipped = summary
            .skipped
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_string()))
            .collect();
        out.push_str(&format!("  skipped:{}", counts(skipped)));
    }
    out.push_str(&format!("  duplicates skipped: {}\n", summary.duplicates));
    out.push_str(&format!("  handler failures: {}\n", summary.failures.len()));
    for failure in &summary.failures {
        out.push_str(&format!("    {failure}\n"));
    }
    let published = published
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    out.push_str(&format!(
        "  would publish (outbox, not sent):{}",
        counts(published)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, partition: i32, offset: i64, at: i64) -> Record {
        Record {
            topic: topic.into(),
            partition,
            offset,
            timestamp_ms: Some(at),
            key: None,
            headers: vec![],
            value: None,
        }
    }

    #[test]
    fn partitions_keep_their_order_and_are_merged_by_time() {
        let merged = merge(vec![
            record("a", 0, 1, 30),
            record("a", 0, 0, 40), // a clock that went back: offset order wins
            record("b", 0, 5, 10),
            record("a", 1, 9, 35),
        ]);
        let order: Vec<(&str, i32, i64)> = merged
            .iter()
            .map(|r| (r.topic.as_str(), r.partition, r.offset))
            .collect();
        assert_eq!(order, [("b", 0, 5), ("a", 1, 9), ("a", 0, 0), ("a", 0, 1)]);
    }

    #[test]
    fn the_summary_names_failures_and_what_would_be_published() {
        let summary = Summary {
            read: 3,
            applied: [("shop.order.OrderConfirmed".to_owned(), 2)].into(),
            duplicates: 1,
            failures: vec!["t/0@4 key o-9: rejected: bad".into()],
            ..Summary::default()
        };
        let published = [("shop.shipping.ShipmentScheduled".to_owned(), 2)].into();
        let text = render(&summary, &published);
        assert!(text.contains("shop.order.OrderConfirmed: 2"), "{text}");
        assert!(text.contains("duplicates skipped: 1"), "{text}");
        assert!(text.contains("key o-9: rejected: bad"), "{text}");
        assert!(
            text.contains("shop.shipping.ShipmentScheduled: 2"),
            "{text}"
        );
    }
}
