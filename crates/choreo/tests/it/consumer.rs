//! The consumer runner against real Kafka and PostgreSQL: exactly-once application in key order,
//! three kinds of poison in the dead-letter topic while the rest goes on, a consumer killed
//! between its database commit and its offset commit, transient failures retried in place, and
//! a graceful stop that commits what it applied.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use choreo::avro::{Codec, Event};
use choreo::consumer::{dlq, Consumer, ConsumerConfig, Handler, HandlerError, Incoming};
use choreo::envelope::Metadata;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{create_topic, kafka, registry, unique, TestDb};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Step")]
pub(crate) struct Step {
    pub key: String,
    pub seq: i32,
    pub note: String,
}

impl Event for Step {
    const NAME: &'static str = "test.consumer.Step";
    const SCHEMA: &'static str = r#"{"type":"record","name":"Step","namespace":"test.consumer","fields":[
        {"name":"key","type":"string"},{"name":"seq","type":"int"},{"name":"note","type":"string"}]}"#;
    const TOPIC: &'static str = "test.consumer.unused";
}

/// An event type no [`Recorder`] knows: a producer ahead of its consumers.
pub(crate) const FROM_THE_FUTURE: &str = "test.consumer.FromTheFuture";

/// Applies steps into `applied`; rejects note "reject"; fails note "flaky" twice first; panics
/// on "panic" always and on "panic-once" the first time; fails "stuck" transiently while
/// `stuck` is set.
pub(crate) struct Recorder {
    pub codec: Arc<Codec>,
    pub flaky_failures: Mutex<HashMap<i32, u32>>,
    pub panicked: Mutex<std::collections::HashSet<i32>>,
    pub stuck: Arc<AtomicBool>,
}

impl Recorder {
    pub fn new(codec: Arc<Codec>) -> Self {
        Self {
            codec,
            flaky_failures: Mutex::default(),
            panicked: Mutex::default(),
            stuck: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl Handler for Recorder {
    fn knows(&self, event_type: &str) -> bool {
        event_type != FROM_THE_FUTURE
    }

    async fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &Incoming,
    ) -> Result<(), HandlerError> {
        let step: Step = self.codec.decode(&event.value).await?;
        let first_panic =
            step.note == "panic-once" && self.panicked.lock().unwrap().insert(step.seq);
        if step.note == "panic" || first_panic {
            panic!("step {} of {} panics", step.seq, step.key);
        }
        if step.note == "stuck" && self.stuck.load(Ordering::SeqCst) {
            // A database error: retried for as long as it lasts, never dead-lettered.
            return Err(HandlerError::Database(sqlx::Error::Protocol(
                "a row lock that is never released".into(),
            )));
        }
        if step.note == "reject" {
            return Err(HandlerError::Rejected(format!(
                "step {} of {} is not allowed",
                step.seq, step.key
            )));
        }
        if step.note == "flaky" {
            let mut failures = self.flaky_failures.lock().unwrap();
            let count = failures.entry(step.seq).or_default();
            if *count < 2 {
                *count += 1;
                return Err(HandlerError::Transient("the flaky step fails twice".into()));
            }
        }
        sqlx::query("insert into applied (key, seq, event_id) values ($1, $2, $3)")
            .bind(&step.key)
            .bind(step.seq)
            .bind(event.metadata.event_id)
            .execute(tx)
            .await?;
        Ok(())
    }
}

pub(crate) struct Fixture {
    pub db: TestDb,
    pub topic: String,
    pub group: String,
    pub codec: Arc<Codec>,
    producer: FutureProducer,
}

impl Fixture {
    pub async fn new(partitions: i32) -> Self {
        let db = TestDb::create().await;
        sqlx::raw_sql("create table applied (n bigserial primary key, key text not null, seq int not null, event_id uuid not null)")
            .execute(&db.pool)
            .await
            .unwrap();
        Self {
            db,
            topic: create_topic("test.consumer", partitions).await,
            group: unique("test-group").replace('.', "-"),
            codec: Arc::new(Codec::new(&registry()).unwrap()),
            producer: choreo::kafka::producer_config(&kafka(), "consumer-test")
                .create()
                .unwrap(),
        }
    }

    pub fn config(&self) -> ConsumerConfig {
        ConsumerConfig {
            batch_size: 50,
            backoff: (Duration::from_millis(10), Duration::from_millis(100)),
            max_retries: 5,
            grace: Duration::from_secs(10),
            ..ConsumerConfig::new(&self.group, &[&self.topic])
        }
    }

    fn consumer(&self) -> Consumer<Recorder> {
        self.consumer_with(Recorder::new(self.codec.clone()), self.config())
    }

    pub fn consumer_with(&self, handler: Recorder, config: ConsumerConfig) -> Consumer<Recorder> {
        Consumer::new(&kafka(), self.db.pool.clone(), handler, config)
    }

    /// Sends raw bytes with a proper envelope; returns the event id.
    async fn send_raw(&self, key: &str, value: &[u8]) -> uuid::Uuid {
        self.send_typed("test.consumer.Step", key, value).await
    }

    /// Sends `value` as an event of `event_type`; returns the event id.
    pub async fn send_typed(&self, event_type: &str, key: &str, value: &[u8]) -> uuid::Uuid {
        let metadata = Metadata::new(event_type, key, "consumer-test");
        let headers = metadata.to_headers();
        let owned = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            })
        });
        let record = FutureRecord::to(&self.topic)
            .key(key)
            .payload(value)
            .headers(owned);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .expect("delivered");
        metadata.event_id
    }

    pub async fn send(&self, step: &Step) -> uuid::Uuid {
        let value = self.codec.encode_for(&self.topic, step).await.unwrap();
        self.send_raw(&step.key, &value).await
    }

    /// Steps 0..n for each of `keys`, interleaved.
    async fn send_steps(&self, keys: usize, per_key: i32) -> Vec<Step> {
        let mut sent = Vec::new();
        for seq in 0..per_key {
            for k in 0..keys {
                let step = Step {
                    key: format!("key-{k}"),
                    seq,
                    note: String::new(),
                };
                self.send(&step).await;
                sent.push(step);
            }
        }
        sent
    }

    pub async fn applied(&self) -> Vec<(String, i32, uuid::Uuid)> {
        sqlx::query_as("select key, seq, event_id from applied order by n")
            .fetch_all(&self.db.pool)
            .await
            .unwrap()
    }
}

pub(crate) fn spawn(
    consumer: Consumer<Recorder>,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<Result<(), choreo::consumer::ConsumerError>> {
    let stop = stop.clone();
    tokio::spawn(async move { consumer.run(stop).await })
}

pub(crate) async fn wait_for(what: &str, condition: impl AsyncFn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn assert_each_key_in_order_once(
    applied: &[(String, i32, uuid::Uuid)],
    keys: usize,
    per_key: i32,
) {
    for k in 0..keys {
        let key = format!("key-{k}");
        let seqs: Vec<i32> = applied.iter().filter(|a| a.0 == key).map(|a| a.1).collect();
        assert_eq!(
            seqs,
            (0..per_key).collect::<Vec<_>>(),
            "{key} applied once each, in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_kinds_of_poison_go_to_the_dead_letter_topic_while_the_rest_is_applied_in_order() {
    let fx = Fixture::new(3).await;
    let mut sent = fx.send_steps(6, 10).await;
    fx.send_raw("key-0", b"not avro at all").await;
    fx.send_raw("key-1", &[0, 0x7f, 0xff, 0xff, 0x01, 2, b'x'])
        .await;
    fx.send(&Step {
        key: "key-2".into(),
        seq: 99,
        note: "reject".into(),
    })
    .await;
    for k in 0..6 {
        let step = Step {
            key: format!("key-{k}"),
            seq: 10,
            note: String::new(),
        };
        fx.send(&step).await;
        sent.push(step);
    }

    let consumer = fx.consumer();
    let stats = consumer.stats();
    let stop = CancellationToken::new();
    let task = spawn(consumer, &stop);
    wait_for("every good step and three dead letters", async || {
        stats.applied.load(Ordering::Relaxed) == 66
            && stats.dead_lettered.load(Ordering::Relaxed) == 3
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_each_key_in_order_once(&fx.applied().await, 6, 11);

    let letters = read_all(&dlq::topic(&fx.topic, &fx.group), 3).await;
    let mut reasons: Vec<String> = letters.iter().map(|l| l.header(dlq::REASON)).collect();
    reasons.sort();
    assert_eq!(reasons, ["not_wire_format", "rejected", "unknown_schema"]);
    for letter in &letters {
        assert_eq!(letter.header(dlq::ORIGINAL_TOPIC), fx.topic);
        assert!(
            letter.header("event_id").len() == 36,
            "the original headers are kept"
        );
        assert!(!letter.header(dlq::ERROR).is_empty());
        assert!(letter.header(dlq::ORIGINAL_OFFSET).parse::<i64>().is_ok());
    }
    let garbage = letters
        .iter()
        .find(|l| l.header(dlq::REASON) == "not_wire_format")
        .unwrap();
    assert_eq!(
        (garbage.key.as_str(), garbage.value.as_slice()),
        ("key-0", &b"not avro at all"[..])
    );
    fx.db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_killed_after_its_database_commit_and_before_its_offset_commit_applies_nothing_twice(
) {
    let fx = Fixture::new(1).await;
    fx.send_steps(4, 25).await;

    let crash_once = Arc::new(AtomicBool::new(true));
    let faults = choreo::consumer::Faults {
        after_db_commit: Some(Arc::new(move || crash_once.swap(false, Ordering::SeqCst))),
    };
    let crashed = fx.consumer().with_faults(faults);
    let result = crashed.run(CancellationToken::new()).await;
    assert!(
        matches!(result, Err(choreo::consumer::ConsumerError::Crashed)),
        "{result:?}"
    );
    let after_crash = fx.applied().await.len();
    assert!(
        after_crash > 0,
        "the first batch was committed to the database"
    );

    let consumer = fx.consumer();
    let stats = consumer.stats();
    let stop = CancellationToken::new();
    let task = spawn(consumer, &stop);
    wait_for("all steps applied", async || {
        fx.applied().await.len() == 100
    })
    .await;
    wait_for("the redelivered batch skipped", async || {
        stats.duplicates.load(Ordering::Relaxed) as usize == after_crash
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_each_key_in_order_once(&fx.applied().await, 4, 25);
    fx.db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transient_failure_is_retried_in_place_and_the_partition_keeps_its_order() {
    let fx = Fixture::new(1).await;
    for seq in 0..10 {
        let note = if seq == 4 { "flaky" } else { "" };
        fx.send(&Step {
            key: "key-0".into(),
            seq,
            note: note.into(),
        })
        .await;
    }
    let consumer = fx.consumer();
    let stats = consumer.stats();
    let stop = CancellationToken::new();
    let task = spawn(consumer, &stop);
    wait_for("all steps applied", async || {
        stats.applied.load(Ordering::Relaxed) == 10
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_each_key_in_order_once(&fx.applied().await, 1, 10);
    assert!(stats.retries.load(Ordering::Relaxed) >= 2);
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
    fx.db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_stop_commits_what_was_applied_so_the_next_member_starts_after_it() {
    let fx = Fixture::new(2).await;
    fx.send_steps(4, 10).await;
    let first = fx.consumer();
    let first_stats = first.stats();
    let stop = CancellationToken::new();
    let task = spawn(first, &stop);
    wait_for("all steps applied", async || {
        first_stats.applied.load(Ordering::Relaxed) == 40
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();

    fx.send(&Step {
        key: "key-0".into(),
        seq: 10,
        note: String::new(),
    })
    .await;
    let second = fx.consumer();
    let second_stats = second.stats();
    let stop = CancellationToken::new();
    let task = spawn(second, &stop);
    wait_for("the new step applied", async || {
        second_stats.applied.load(Ordering::Relaxed) == 1
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(
        second_stats.duplicates.load(Ordering::Relaxed),
        0,
        "nothing was redelivered"
    );
    assert_eq!(fx.applied().await.len(), 41);
    fx.db.drop().await;
}

pub(crate) struct Letter {
    key: String,
    value: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl Letter {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

pub(crate) async fn read_all(topic: &str, count: usize) -> Vec<Letter> {
    let consumer: StreamConsumer =
        choreo::kafka::consumer_config(&kafka(), &unique("dlq-reader"), "consumer-test")
            .create()
            .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut letters = Vec::new();
    while letters.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("dead letters in time")
            .unwrap();
        letters.push(Letter {
            key: String::from_utf8(message.key().unwrap_or_default().to_vec()).unwrap(),
            value: message.payload().unwrap_or_default().to_vec(),
            headers: message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    letters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_move_between_members_without_losing_or_repeating_an_event() {
    let fx = Fixture::new(6).await;
    let first = fx.consumer();
    let first_stats = first.stats();
    let first_stop = CancellationToken::new();
    let first_task = spawn(first, &first_stop);
    fx.send_steps(12, 10).await;
    wait_for("the first member to apply", async || {
        first_stats.applied.load(Ordering::Relaxed) >= 60
    })
    .await;

    // A second member joins and the partitions are shared out; then events keep coming.
    let second = fx.consumer();
    let second_stats = second.stats();
    let second_stop = CancellationToken::new();
    let second_task = spawn(second, &second_stop);
    wait_for("the second member to hold partitions", async || {
        second_stats.assigned_partitions.load(Ordering::Relaxed) > 0
    })
    .await;
    wait_for("the first member to let them go", async || {
        first_stats.assigned_partitions.load(Ordering::Relaxed) < 6
    })
    .await;
    for seq in 10..20 {
        for k in 0..12 {
            fx.send(&Step {
                key: format!("key-{k}"),
                seq,
                note: String::new(),
            })
            .await;
        }
    }
    wait_for("the second member to apply", async || {
        second_stats.applied.load(Ordering::Relaxed) > 0
    })
    .await;

    // The first leaves: the second takes everything and finishes.
    first_stop.cancel();
    first_task.await.unwrap().unwrap();
    for k in 0..12 {
        fx.send(&Step {
            key: format!("key-{k}"),
            seq: 20,
            note: String::new(),
        })
        .await;
    }
    wait_for("every step applied", async || {
        fx.applied().await.len() == 12 * 21
    })
    .await;
    second_stop.cancel();
    second_task.await.unwrap().unwrap();
    assert_each_key_in_order_once(&fx.applied().await, 12, 21);
    let applied =
        first_stats.applied.load(Ordering::Relaxed) + second_stats.applied.load(Ordering::Relaxed);
    assert_eq!(applied, 12 * 21, "each event applied by exactly one member");
    fx.db.drop().await;
}

/// Writes a batch's steps with one statement; rejects a batch containing a "reject" step by
/// naming that step.
struct BatchRecorder {
    codec: Arc<Codec>,
}

impl Handler for BatchRecorder {
    async fn handle(&self, _: &mut sqlx::PgConnection, _: &Incoming) -> Result<(), HandlerError> {
        unreachable!("batches only")
    }

    async fn handle_batch(
        &self,
        tx: &mut sqlx::PgConnection,
        events: &[Incoming],
    ) -> Result<(), choreo::consumer::BatchFailure> {
        let (mut keys, mut seqs, mut ids) = (Vec::new(), Vec::new(), Vec::new());
        for (index, event) in events.iter().enumerate() {
            let fail = |error: HandlerError| choreo::consumer::BatchFailure { index, error };
            let step: Step = self
                .codec
                .decode(&event.value)
                .await
                .map_err(|e| fail(e.into()))?;
            if step.note == "reject" {
                return Err(fail(HandlerError::Rejected("not this one".into())));
            }
            keys.push(step.key);
            seqs.push(step.seq);
            ids.push(event.metadata.event_id);
        }
        sqlx::query("insert into applied (key, seq, event_id) select * from unnest($1::text[], $2::int[], $3::uuid[])")
            .bind(&keys)
            .bind(&seqs)
            .bind(&ids)
            .execute(tx)
            .await
            .map_err(|e| choreo::consumer::BatchFailure { index: 0, error: e.into() })?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_handler_applies_batches_at_once_and_a_failure_is_pinned_on_its_event() {
    let fx = Fixture::new(1).await;
    let mut sent = Vec::new();
    for seq in 0..30 {
        let step = Step {
            key: "key-0".into(),
            seq,
            note: String::new(),
        };
        fx.send(&step).await;
        sent.push(step);
        if seq == 12 {
            fx.send(&Step {
                key: "key-0".into(),
                seq: 999,
                note: "reject".into(),
            })
            .await;
        }
    }
    let config = ConsumerConfig {
        batch_size: 50,
        ..ConsumerConfig::new(&fx.group, &[&fx.topic])
    };
    let consumer = Consumer::new(
        &kafka(),
        fx.db.pool.clone(),
        BatchRecorder {
            codec: fx.codec.clone(),
        },
        config,
    );
    let stats = consumer.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { consumer.run(stop).await }
    });
    wait_for(
        "every good step applied and the bad one dead-lettered",
        async || {
            stats.applied.load(Ordering::Relaxed) == 30
                && stats.dead_lettered.load(Ordering::Relaxed) == 1
        },
    )
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_each_key_in_order_once(&fx.applied().await, 1, 30);
    let letters = read_all(&dlq::topic(&fx.topic, &fx.group), 1).await;
    assert_eq!(letters[0].header(dlq::REASON), "rejected");
    assert_eq!(
        letters[0].header(dlq::ORIGINAL_OFFSET),
        "13",
        "the rejected step, not its batch"
    );
    fx.db.drop().await;
}
