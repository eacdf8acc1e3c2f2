//! The consumer runner against the local stack: applying a backlog of 50,000 Avro events of
//! ~300 bytes over 12 partitions, each with its inbox row and one row of effect, in batches;
//! beside, from the same run, rdkafka producing the same bytes from memory and plain batched
//! inserts of the same rows into PostgreSQL.
//!
//! Run with `cargo bench -p choreo --bench consumer` (or `scripts/bench consumer`); needs
//! `scripts/stack up`. CONSUMER_BENCH_EVENTS overrides the count.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use choreo::avro::{Codec, Event};
use choreo::consumer::{BatchFailure, Consumer, ConsumerConfig, Handler, HandlerError, Incoming};
use choreo::envelope::Metadata;
use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

mod common;
use common::{count_from_env, fresh_database, kafka, produce_all, runtime, topic, until, Prepared};

#[derive(Serialize, Deserialize)]
#[serde(rename = "Reading")]
struct Reading {
    key: String,
    seq: i64,
    note: String,
}

impl Event for Reading {
    const NAME: &'static str = "bench.consumer.Reading";
    const SCHEMA: &'static str = r#"{"type":"record","name":"Reading","namespace":"bench.consumer","fields":[
        {"name":"key","type":"string"},{"name":"seq","type":"long"},{"name":"note","type":"string"}]}"#;
    const TOPIC: &'static str = "bench.consumer.unused";
}

struct Apply {
    codec: Arc<Codec>,
}

impl Handler for Apply {
    async fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &Incoming,
    ) -> Result<(), HandlerError> {
        let reading: Reading = self.codec.decode(&event.value).await?;
        sqlx::query("insert into readings (key, seq) values ($1, $2)")
            .bind(&reading.key)
            .bind(reading.seq)
            .execute(tx)
            .await?;
        Ok(())
    }
}

/// The same effect, written for a whole batch with one statement.
struct ApplyBatch {
    codec: Arc<Codec>,
}

impl Handler for ApplyBatch {
    async fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &Incoming,
    ) -> Result<(), HandlerError> {
        Apply {
            codec: self.codec.clone(),
        }
        .handle(tx, event)
        .await
    }

    async fn handle_batch(
        &self,
        tx: &mut sqlx::PgConnection,
        events: &[Incoming],
    ) -> Result<(), BatchFailure> {
        let (mut keys, mut seqs) = (
            Vec::with_capacity(events.len()),
            Vec::with_capacity(events.len()),
        );
        for (index, event) in events.iter().enumerate() {
            let reading: Reading =
                self.codec
                    .decode(&event.value)
                    .await
                    .map_err(|e| BatchFailure {
                        index,
                        error: e.into(),
                    })?;
            keys.push(reading.key);
            seqs.push(reading.seq);
        }
        sqlx::query(
            "insert into readings (key, seq) select * from unnest($1::text[], $2::bigint[])",
        )
        .bind(&keys)
        .bind(&seqs)
        .execute(tx)
        .await
        .map_err(|e| BatchFailure {
            index: 0,
            error: e.into(),
        })?;
        Ok(())
    }
}

/// Applies every event of `topic` with `handler` in a new group; the elapsed time and batches.
async fn consume<H: Handler>(
    topic: &str,
    pool: &sqlx::PgPool,
    handler: H,
    events: usize,
) -> (Duration, u64) {
    let group = format!("bench-{}", uuid::Uuid::now_v7().simple());
    let consumer = Consumer::new(
        &kafka(),
        pool.clone(),
        handler,
        ConsumerConfig::new(&group, &[topic]),
    );
    let stats = consumer.stats();
    let stop = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { consumer.run(stop).await }
    });
    until(|| stats.applied.load(Ordering::Relaxed) >= events as u64).await;
    let elapsed = started.elapsed();
    stop.cancel();
    task.await.unwrap().unwrap();
    (elapsed, stats.batches.load(Ordering::Relaxed))
}

fn main() {
    choreo::config::load_env_file();
    let events = count_from_env("CONSUMER_BENCH_EVENTS", 50_000);
    runtime().block_on(async {
        let registry = choreo::RegistryConfig::from_env().expect("SCHEMA_REGISTRY_URL (run scripts/stack up)");
        let codec = Arc::new(Codec::new(&registry).unwrap());
        let (_, pool) = fresh_database().await;
        sqlx::raw_sql("create table readings (key text not null, seq bigint not null)").execute(&pool).await.unwrap();
        let topic = topic("consumer").await;
        println!("consumer bench: {events} events of ~300 bytes, 12 partitions, 500 keys");

        // Baseline: produce the very bytes the consumer will read, from memory.
        let producer: FutureProducer =
            choreo::kafka::producer_config(&kafka(), "bench").set("linger.ms", "5").create().unwrap();
        let mut prepared: Vec<Prepared> = Vec::with_capacity(events);
        for i in 0..events {
            let key = format!("order-{}", i % 500);
            let reading = Reading { key: key.clone(), seq: i as i64, note: "x".repeat(120) };
            let value = codec.encode_for(&topic, &reading).await.unwrap();
            let headers = Metadata::new(Reading::NAME, &key, "bench").to_headers();
            prepared.push((key, value, headers));
        }
        let started = Instant::now();
        produce_all(&producer, &topic, &prepared).await;
        let produce = started.elapsed();

        // Baseline: the same effect rows as plain batched inserts.
        sqlx::raw_sql("create table baseline (key text not null, seq bigint not null)").execute(&pool).await.unwrap();
        let started = Instant::now();
        for chunk in prepared.chunks(500) {
            let keys: Vec<&str> = chunk.iter().map(|(k, _, _)| k.as_str()).collect();
            let seqs: Vec<i64> = (0..chunk.len() as i64).collect();
            sqlx::query("insert into baseline (key, seq) select * from unnest($1::text[], $2::bigint[])")
                .bind(&keys)
                .bind(&seqs)
                .execute(&pool)
                .await
                .unwrap();
        }
        let insert = started.elapsed();

        // The runner: decode, inbox rows (one statement a batch), effect, offsets after each batch;
        // first with one effect statement per event, then with a handler that writes a batch at once.
        let (apply, batches) = consume(&topic, &pool, Apply { codec: codec.clone() }, events).await;
        let (apply_batch, batch_batches) = consume(&topic, &pool, ApplyBatch { codec }, events).await;

        let rate = |d: Duration| events as f64 / d.as_secs_f64();
        println!("  baseline rdkafka produce from memory      {:>9.0} events/s  ({:.2} s)", rate(produce), produce.as_secs_f64());
        println!("  baseline batched inserts into PostgreSQL  {:>9.0} rows/s    ({:.2} s)", rate(insert), insert.as_secs_f64());
        println!(
            "  consumer apply with inbox, per event      {:>9.0} events/s  ({:.2} s incl. group join, {} batches)",
            rate(apply),
            apply.as_secs_f64(),
            batches
        );
        println!(
            "  consumer apply with inbox, batch handler  {:>9.0} events/s  ({:.2} s incl. group join, {} batches)",
            rate(apply_batch),
            apply_batch.as_secs_f64(),
            batch_batches
        );
    });
}
