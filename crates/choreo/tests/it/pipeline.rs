//! The whole backbone at once: 10,000 events over 50 keys written through the outbox, published
//! by relays that crash and restart at random, applied by consumers that crash (between their
//! database and offset commits) and restart at random: every event arrives exactly once, each
//! key in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use choreo::avro::Codec;
use choreo::consumer::{Consumer, ConsumerConfig, Faults};
use choreo::envelope::Metadata;
use choreo::relay::{Relay, RelayConfig};
use tokio_util::sync::CancellationToken;

use crate::consumer::{assert_each_key_in_order_once, wait_for, Recorder, Step};
use crate::{create_topic, kafka, registry, unique, TestDb};

const KEYS: usize = 50;
const PER_KEY: i32 = 200;

/// A small seeded generator: the same run every time.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_events_over_fifty_keys_arrive_exactly_once_in_key_order_through_restarts() {
    let source = TestDb::create().await;
    let sink = TestDb::create().await;
    sqlx::raw_sql("create table applied (n bigserial primary key, key text not null, seq int not null, event_id uuid not null)")
        .execute(&sink.pool)
        .await
        .unwrap();
    let topic = create_topic("test.pipeline", 6).await;
    let group = unique("pipeline").replace('.', "-");
    let codec = Arc::new(Codec::new(&registry()).unwrap());
    let random = Arc::new(Mutex::new(XorShift(0x2545_f491_4f6c_dd1d)));

    // Writers: every key's steps in order, 20 events a transaction.
    let mut order = Vec::new();
    for seq in 0..PER_KEY {
        for k in 0..KEYS {
            order.push(Step {
                key: format!("key-{k}"),
                seq,
                note: String::new(),
            });
        }
    }
    for chunk in order.chunks(20) {
        let mut tx = source.pool.begin().await.unwrap();
        for step in chunk {
            let value = codec.encode_for(&topic, step).await.unwrap();
            let metadata = Metadata::new("test.consumer.Step", &step.key, "pipeline");
            choreo::outbox::add_encoded(&mut tx, &topic, &step.key, &value, &metadata)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }

    // Relays: one at a time, each killed after a random number of batches.
    let published = Arc::new(AtomicU64::new(0));
    let relays = {
        let (url, random, published) = (source.url.clone(), random.clone(), published.clone());
        tokio::spawn(async move {
            let config = RelayConfig {
                batch_size: 300,
                ..RelayConfig::new(&unique("pipeline-relay"))
            };
            loop {
                let budget = random.lock().unwrap().below(6);
                let faults = choreo::relay::FaultPoints {
                    after_publish: Some(Arc::new(move |_: &[i64]| budget == 0)),
                    ..Default::default()
                };
                let relay = Relay::new(&url, &kafka(), config.clone()).with_faults(faults);
                let stats = relay.stats();
                let stop = CancellationToken::new();
                let run = tokio::spawn({
                    let stop = stop.clone();
                    async move { relay.run(stop).await }
                });
                tokio::time::sleep(Duration::from_millis(100 + budget * 50)).await;
                stop.cancel();
                let _ = run.await;
                published.fetch_add(stats.published.load(Ordering::Relaxed), Ordering::Relaxed);
                let left: i64 = sqlx::query_scalar("select count(*) from choreo_outbox")
                    .fetch_one(&sqlx::PgPool::connect(&url).await.unwrap())
                    .await
                    .unwrap();
                if left == 0 {
                    return;
                }
            }
        })
    };

    // Consumers: each crashes between its database commit and its offset commit after a random
    // number of batches, or stops gracefully; then the next one starts.
    let crashes = Arc::new(AtomicU64::new(0));
    let consumers = {
        let (pool, random, crashes, codec) = (
            sink.pool.clone(),
            random.clone(),
            crashes.clone(),
            codec.clone(),
        );
        let (topic, group) = (topic.clone(), group.clone());
        tokio::spawn(async move {
            loop {
                let limit = 1 + random.lock().unwrap().below(8);
                let batches = Arc::new(AtomicU64::new(0));
                let faults = Faults {
                    after_db_commit: Some(Arc::new(move || {
                        batches.fetch_add(1, Ordering::SeqCst) + 1 == limit
                    })),
                };
                let config = ConsumerConfig {
                    batch_size: 100,
                    ..ConsumerConfig::new(&group, &[&topic])
                };
                let handler = Recorder::new(codec.clone());
                let consumer =
                    Consumer::new(&kafka(), pool.clone(), handler, config).with_faults(faults);
                let stop = CancellationToken::new();
                let deadline = tokio::spawn({
                    let stop = stop.clone();
                    async move {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        stop.cancel();
                    }
                });
                if consumer.run(stop).await.is_err() {
                    crashes.fetch_add(1, Ordering::Relaxed);
                }
                deadline.abort();
                let applied: i64 = sqlx::query_scalar("select count(*) from applied")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                if applied as usize >= KEYS * PER_KEY as usize {
                    return;
                }
            }
        })
    };

    let total = KEYS * PER_KEY as usize;
    wait_for("every event applied", async || {
        let applied: i64 = sqlx::query_scalar("select count(*) from applied")
            .fetch_one(&sink.pool)
            .await
            .unwrap();
        applied as usize >= total
    })
    .await;
    relays.await.unwrap();
    consumers.await.unwrap();

    let applied: Vec<(String, i32, uuid::Uuid)> =
        sqlx::query_as("select key, seq, event_id from applied order by n")
            .fetch_all(&sink.pool)
            .await
            .unwrap();
    assert_eq!(applied.len(), total, "exactly once");
    assert_each_key_in_order_once(&applied, KEYS, PER_KEY);
    assert!(crashes.load(Ordering::Relaxed) > 0, "consumers did crash");
    assert!(published.load(Ordering::Relaxed) >= total as u64);
    source.drop().await;
    sink.drop().await;
}
