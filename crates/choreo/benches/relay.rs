//! The relay against the local stack, each figure beside a baseline from the same run:
//!
//! 1. draining a backlog of 100,000 outbox rows of ~300 bytes (events/s), beside rdkafka
//!    producing the same bytes straight from memory with the same settings, and plain batched
//!    inserts of the same rows into PostgreSQL;
//! 2. latency from a writer's commit to the event's arrival at a consumer, at 1,000 events/s
//!    (p50/p99 over 10 s); this includes the relay's ack and the consumer's fetch.
//!
//! Run with `cargo bench -p choreo --bench relay` (or `scripts/bench relay`); needs
//! `scripts/stack up`. RELAY_BENCH_ROWS overrides the backlog size.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use choreo::envelope::Metadata;
use choreo::relay::{Relay, RelayConfig};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

mod common;
use common::{count_from_env, fresh_database, kafka, produce_all, runtime, topic, until, Prepared};

const VALUE_LEN: usize = 240; // plus ~60 bytes of key and headers: about 300 bytes an event

fn headers_json(key: &str) -> serde_json::Value {
    serde_json::to_value(Metadata::new("bench.Event", key, "bench").to_headers()).unwrap()
}

/// Inserts `rows` outbox rows in batches of 1,000 with one multi-row insert each.
async fn batched_insert(pool: &PgPool, topic: &str, rows: usize) -> Duration {
    let value = vec![b'x'; VALUE_LEN];
    let start = Instant::now();
    for chunk in (0..rows).collect::<Vec<_>>().chunks(1_000) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("order-{}", i % 500)).collect();
        let headers: Vec<serde_json::Value> = keys.iter().map(|k| headers_json(k)).collect();
        let values: Vec<Vec<u8>> = chunk.iter().map(|_| value.clone()).collect();
        sqlx::query(
            "insert into choreo_outbox (topic, key, value, headers)
             select $1, k, v, h from unnest($2::text[], $3::bytea[], $4::jsonb[]) as t(k, v, h)",
        )
        .bind(topic)
        .bind(&keys)
        .bind(&values)
        .bind(&headers)
        .execute(pool)
        .await
        .unwrap();
    }
    start.elapsed()
}

async fn producer_baseline(rows: usize) -> Duration {
    let topic = topic("baseline").await;
    let producer: FutureProducer = choreo::kafka::producer_config(&kafka(), "bench")
        .set("linger.ms", "2")
        .set("batch.size", "1000000")
        .create()
        .unwrap();
    let value = vec![b'x'; VALUE_LEN];
    let records: Vec<Prepared> = (0..rows)
        .map(|i| {
            let key = format!("order-{}", i % 500);
            let headers = Metadata::new("bench.Event", &key, "bench").to_headers();
            (key, value.clone(), headers)
        })
        .collect();
    let start = Instant::now();
    produce_all(&producer, &topic, &records).await;
    start.elapsed()
}

/// Starts a relay and waits until it leads (its producer is ready).
async fn leading_relay(
    url: &str,
    config: RelayConfig,
    metrics: Option<Arc<choreo::metrics::Metrics>>,
    doorbell: Option<choreo::doorbell::Doorbell>,
) -> (
    Arc<choreo::relay::RelayStats>,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), choreo::relay::RelayError>>,
) {
    let mut relay = Relay::new(url, &kafka(), config);
    if let Some(doorbell) = doorbell {
        relay = relay.with_doorbell(doorbell);
    }
    if let Some(metrics) = metrics {
        relay = relay.with_metrics(metrics);
    }
    let stats = relay.stats();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { relay.run(token).await });
    until(|| stats.is_leader.load(Ordering::Relaxed)).await;
    (stats, shutdown, task)
}

async fn drain(rows: usize) -> (Duration, Duration) {
    let (url, pool) = fresh_database().await;
    let topic = topic("relay").await;
    let insert = batched_insert(&pool, &topic, rows).await;
    let config = RelayConfig {
        batch_size: 5_000,
        ..RelayConfig::new(&format!("bench-{}", uuid::Uuid::now_v7().simple()))
    };
    // Timed from the moment the relay leads (producer ready) to the last delete.
    let (stats, shutdown, task) = leading_relay(&url, config, None, None).await;
    let start = Instant::now();
    until(|| stats.published.load(Ordering::Relaxed) >= rows as u64).await;
    let elapsed = start.elapsed();
    shutdown.cancel();
    task.await.unwrap().unwrap();
    (elapsed, insert)
}

/// Sends one event through the outbox and waits for it, so that the timed run starts with the
/// consumer in its group, its partitions assigned and its fetchers running: otherwise the first
/// events would also wait for the group join and show up as the run's tail latency.
async fn warm_up(
    pool: &PgPool,
    consumer: &StreamConsumer,
    topic: &str,
    doorbell: &choreo::doorbell::Doorbell,
) {
    let metadata = Metadata::new("bench.Event", "warm-up", "bench");
    let mut tx = pool.begin().await.unwrap();
    choreo::outbox::add_encoded(&mut tx, topic, "warm-up", b"warm-up", &metadata)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    doorbell.ring();
    tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("the warm-up event arrives")
        .unwrap();
}

async fn latency_at(rate: u32, seconds: u32) -> Vec<Duration> {
    let (url, pool) = fresh_database().await;
    let topic = topic("latency").await;
    let metrics = Arc::new(choreo::metrics::Metrics::new("bench"));
    let config = RelayConfig::new(&format!("bench-{}", uuid::Uuid::now_v7().simple()));
    // The writers ring the relay after each commit, as a service's outbox does.
    let doorbell = choreo::doorbell::Doorbell::new(choreo::outbox::CHANNEL);
    let (stats, shutdown, task) =
        leading_relay(&url, config, Some(metrics.clone()), Some(doorbell.clone())).await;
    let consumer: StreamConsumer = choreo::kafka::consumer_config(
        &kafka(),
        &format!("bench-{}", uuid::Uuid::now_v7()),
        "bench",
    )
    .set("fetch.wait.max.ms", "5")
    .create()
    .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    warm_up(&pool, &consumer, &topic, &doorbell).await;
    let total = (rate * seconds) as usize;
    let committed: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let writer_committed = committed.clone();
    let writer_topic = topic.clone();
    let writer_bell = doorbell.clone();
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
        let value = vec![b'x'; VALUE_LEN];
        for i in 0..total {
            tick.tick().await;
            let key = format!("order-{}", i % 500);
            let metadata = Metadata::new("bench.Event", &key, "bench");
            let mut tx = pool.begin().await.unwrap();
            choreo::outbox::add_encoded(&mut tx, &writer_topic, &key, &value, &metadata)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            writer_bell.ring();
            writer_committed
                .lock()
                .unwrap()
                .insert(metadata.event_id.to_string(), Instant::now());
        }
    });
    let mut latencies = Vec::with_capacity(total);
    while latencies.len() < total {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("events keep arriving")
            .unwrap();
        let arrived = Instant::now();
        let id = choreo::kafka::header(&message, "event_id")
            .expect("event_id header")
            .to_owned();
        // The writer notes its commit just after commit returns; an event can arrive first.
        let committed_at = loop {
            if let Some(at) = committed.lock().unwrap().get(&id).copied() {
                break at;
            }
            tokio::task::yield_now().await;
        };
        latencies.push(arrived.saturating_duration_since(committed_at));
    }
    writer.await.unwrap();
    let batches = stats.batches.load(Ordering::Relaxed).max(1);
    println!(
        "    ({} batches, {:.1} events and {:.1} ms of Kafka send+commit per batch on average)",
        batches,
        total as f64 / batches as f64,
        stats.publish_micros.load(Ordering::Relaxed) as f64 / batches as f64 / 1e3
    );
    // The relay's own share: outbox insert to Kafka's ack, from its histogram.
    let histogram = metrics.relay_commit_to_ack_seconds.clone();
    let proto = prometheus::core::Collector::collect(&histogram);
    let buckets = proto[0].get_metric()[0].get_histogram();
    let shares: Vec<String> = buckets
        .get_bucket()
        .iter()
        .filter(|b| [0.01, 0.025, 0.05, 0.1, 0.25].contains(&b.upper_bound()))
        .map(|b| {
            format!(
                "<= {} ms: {:.1}%",
                b.upper_bound() * 1e3,
                100.0 * b.cumulative_count() as f64 / buckets.get_sample_count().max(1) as f64
            )
        })
        .collect();
    println!("    relay insert -> ack: {}", shares.join(", "));
    shutdown.cancel();
    task.await.unwrap().unwrap();
    latencies.sort();
    latencies
}

fn main() {
    choreo::config::load_env_file();
    let rows = count_from_env("RELAY_BENCH_ROWS", 100_000);
    runtime().block_on(async {
        println!("relay bench: {rows} events of ~300 bytes, 12 partitions, 500 keys");
        let per_second = |d: Duration| rows as f64 / d.as_secs_f64();
        let produce = producer_baseline(rows).await;
        let (relay, insert) = drain(rows).await;
        println!("  baseline rdkafka produce from memory     {:>9.0} events/s  ({:.2} s)", per_second(produce), produce.as_secs_f64());
        println!("  baseline batched inserts into PostgreSQL {:>9.0} rows/s    ({:.2} s)", per_second(insert), insert.as_secs_f64());
        println!(
            "  relay draining the backlog               {:>9.0} events/s  ({:.2} s, {:.0}% of the produce baseline)",
            per_second(relay),
            relay.as_secs_f64(),
            100.0 * produce.as_secs_f64() / relay.as_secs_f64()
        );
        let latencies = latency_at(1_000, 10).await;
        let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        println!(
            "  commit -> consumer at 1000 events/s      p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} events)",
            pick(0.50).as_secs_f64() * 1e3,
            pick(0.99).as_secs_f64() * 1e3,
            latencies.last().unwrap().as_secs_f64() * 1e3,
            latencies.len()
        );
    });
}
