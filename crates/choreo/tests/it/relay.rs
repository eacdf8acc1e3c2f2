//! The outbox relay against real PostgreSQL and Kafka, with deterministic crash and pause points:
//! order per key, the late-commit gap, a crash between ack and delete absorbed by the inbox, one
//! leader among two relays, and a paused leader fenced when it wakes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use choreo::envelope::Metadata;
use choreo::relay::{FaultPoints, Relay, RelayConfig, RelayError, RelayStats};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

use crate::{create_topic, kafka, unique, TestDb};

/// One event as a consumer saw it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Seen {
    pub key: String,
    pub event_id: String,
    pub value: String,
}

pub(crate) fn relay_config() -> RelayConfig {
    RelayConfig {
        lease: Duration::from_secs(2),
        standby_retry: Duration::from_millis(200),
        poll_interval: Duration::from_millis(200),
        ..RelayConfig::new(&unique("test-relay"))
    }
}

/// Writes one event per (key, value) in its own transaction; returns their metadata in order.
pub(crate) async fn enqueue(db: &TestDb, topic: &str, events: &[(&str, String)]) -> Vec<Metadata> {
    let mut written = Vec::new();
    for (key, value) in events {
        let mut tx = db.pool.begin().await.unwrap();
        let metadata = Metadata::new("test.relay.Probe", key, "relay-test");
        choreo::outbox::add_encoded(&mut tx, topic, key, value.as_bytes(), &metadata)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        written.push(metadata);
    }
    written
}

/// Reads `topic` from the start (read-committed) until `done` holds for what was seen.
pub(crate) async fn read_until(topic: &str, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
    let consumer: StreamConsumer =
        choreo::kafka::consumer_config(&kafka(), &unique("relay-reader"), "relay-test")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&seen) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(remaining, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} records", seen.len()))
            .unwrap();
        let event_id = choreo::kafka::header(&message, "event_id")
            .expect("event_id header")
            .to_owned();
        seen.push(Seen {
            key: String::from_utf8(message.key().unwrap().to_vec()).unwrap(),
            event_id,
            value: String::from_utf8(message.payload().unwrap().to_vec()).unwrap(),
        });
    }
    seen
}

pub(crate) async fn outbox_len(db: &TestDb) -> i64 {
    sqlx::query_scalar("select count(*) from choreo_outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

pub(crate) async fn wait_for(what: &str, condition: impl AsyncFn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `relay` until the returned token is cancelled: its stats, that token, and its task.
pub(crate) fn start(
    relay: Relay,
) -> (
    Arc<RelayStats>,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), RelayError>>,
) {
    let stats = relay.stats();
    let shutdown = CancellationToken::new();
    let task = spawn(relay, &shutdown);
    (stats, shutdown, task)
}

pub(crate) fn spawn(
    relay: Relay,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<Result<(), RelayError>> {
    let token = shutdown.clone();
    tokio::spawn(async move { relay.run(token).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_publishes_every_key_in_commit_order_and_empties_the_outbox() {
    let db = TestDb::create().await;
    let topic = create_topic("test.relay", 3).await;
    let events: Vec<(&str, String)> = (0..200)
        .map(|i| (["a", "b", "c", "d", "e"][i % 5], format!("v{i}")))
        .collect();
    enqueue(&db, &topic, &events).await;

    let shutdown = CancellationToken::new();
    let relay = spawn(Relay::new(&db.url, &kafka(), relay_config()), &shutdown);
    let seen = read_until(&topic, |s| s.len() >= 200).await;
    wait_for("an empty outbox", async || outbox_len(&db).await == 0).await;
    shutdown.cancel();
    relay.await.unwrap().unwrap();

    for key in ["a", "b", "c", "d", "e"] {
        let sent: Vec<&String> = events.iter().filter(|e| e.0 == key).map(|e| &e.1).collect();
        let got: Vec<&String> = seen
            .iter()
            .filter(|s| s.key == key)
            .map(|s| &s.value)
            .collect();
        assert_eq!(got, sent, "key {key}");
    }
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_that_began_first_and_commits_last_is_still_published_in_key_order() {
    let db = TestDb::create().await;
    let topic = create_topic("test.relay", 1).await;
    let shutdown = CancellationToken::new();
    let relay = spawn(Relay::new(&db.url, &kafka(), relay_config()), &shutdown);

    // The early transaction takes the lower id for key k and stays open.
    let mut early = db.pool.begin().await.unwrap();
    let first = Metadata::new("test.relay.Probe", "k", "t");
    choreo::outbox::add_encoded(&mut early, &topic, "k", b"first", &first)
        .await
        .unwrap();

    // Another key commits meanwhile and is published: the relay is not stuck behind the open one.
    enqueue(&db, &topic, &[("other", "unrelated".into())]).await;
    read_until(&topic, |s| s.iter().any(|e| e.key == "other")).await;

    // A second writer of key k waits for the first (it cannot overtake it)...
    let pool = db.pool.clone();
    let late_topic = topic.clone();
    let second = tokio::spawn(async move {
        let mut tx = pool.begin().await.unwrap();
        let metadata = Metadata::new("test.relay.Probe", "k", "t");
        choreo::outbox::add_encoded(&mut tx, &late_topic, "k", b"second", &metadata)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "a second writer of the same key waits for the first to commit"
    );

    // ...and once the early transaction commits, both are published, the early row first.
    early.commit().await.unwrap();
    second.await.unwrap();
    let seen = read_until(&topic, |s| s.iter().filter(|e| e.key == "k").count() == 2).await;
    let k: Vec<&str> = seen
        .iter()
        .filter(|e| e.key == "k")
        .map(|e| e.value.as_str())
        .collect();
    assert_eq!(k, ["first", "second"]);
    wait_for("an empty outbox", async || outbox_len(&db).await == 0).await;
    shutdown.cancel();
    relay.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_killed_after_the_ack_and_before_the_delete_publishes_again_and_the_inbox_applies_once(
) {
    let db = TestDb::create().await;
    let topic = create_topic("test.relay", 1).await;
    let events: Vec<(&str, String)> = (0..20).map(|i| ("k", format!("v{i}"))).collect();
    let written = enqueue(&db, &topic, &events).await;

    // The first relay crashes right after Kafka committed its first batch.
    let crash = FaultPoints {
        after_publish: Some(Arc::new(|_: &[i64]| true)),
        ..FaultPoints::default()
    };
    let crashed = Relay::new(&db.url, &kafka(), relay_config()).with_faults(crash);
    let result = crashed.run(CancellationToken::new()).await;
    assert!(matches!(result, Err(RelayError::Crashed)));
    assert_eq!(outbox_len(&db).await, 20, "nothing was deleted");

    // The next relay publishes the same rows again.
    let shutdown = CancellationToken::new();
    let relay = spawn(Relay::new(&db.url, &kafka(), relay_config()), &shutdown);
    let seen = read_until(&topic, |s| s.len() >= 40).await;
    wait_for("an empty outbox", async || outbox_len(&db).await == 0).await;
    shutdown.cancel();
    relay.await.unwrap().unwrap();

    // A consumer that records each event in its inbox applies every event once.
    let mut applied = Vec::new();
    for event in &seen {
        let mut tx = db.pool.begin().await.unwrap();
        let id = uuid::Uuid::parse_str(&event.event_id).unwrap();
        if choreo::inbox::record(&mut tx, "test-consumer", id)
            .await
            .unwrap()
        {
            applied.push(event.value.clone());
        }
        tx.commit().await.unwrap();
    }
    assert_eq!(
        applied,
        events.iter().map(|e| e.1.clone()).collect::<Vec<_>>()
    );
    let ids: Vec<String> = written.iter().map(|m| m.event_id.to_string()).collect();
    assert!(seen.iter().all(|s| ids.contains(&s.event_id)));
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_relays_one_leads_and_the_standby_takes_over_within_the_lease_when_it_dies() {
    let db = TestDb::create().await;
    let topic = create_topic("test.relay", 1).await;
    let config = relay_config();
    let (first, second) = (
        Relay::new(&db.url, &kafka(), config.clone()),
        Relay::new(&db.url, &kafka(), config),
    );
    let (first_stats, second_stats) = (first.stats(), second.stats());
    let (first_stop, second_stop) = (CancellationToken::new(), CancellationToken::new());
    let first_task = spawn(first, &first_stop);
    wait_for("a leader", async || {
        first_stats.is_leader.load(Ordering::Relaxed)
    })
    .await;
    let second_task = spawn(second, &second_stop);
    enqueue(&db, &topic, &[("k", "before".into())]).await;
    read_until(&topic, |s| s.len() == 1).await;
    assert!(
        !second_stats.is_leader.load(Ordering::Relaxed),
        "one leader at a time"
    );

    // The leader dies: its connection closes and the standby takes over.
    first_task.abort();
    let died = Instant::now();
    wait_for("the standby to lead", async || {
        second_stats.is_leader.load(Ordering::Relaxed)
    })
    .await;
    let takeover = died.elapsed();
    assert!(
        takeover < Duration::from_secs(5),
        "took over in {takeover:?}"
    );
    enqueue(&db, &topic, &[("k", "after".into())]).await;
    let seen = read_until(&topic, |s| s.len() == 2).await;
    assert_eq!(seen[1].value, "after");
    second_stop.cancel();
    second_task.await.unwrap().unwrap();
    drop(first_stop);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_leader_loses_its_lease_and_is_fenced_when_it_resumes() {
    let db = TestDb::create().await;
    let topic = create_topic("test.relay", 1).await;
    let config = relay_config();

    // The zombie pauses in its first batch, after sending and before committing.
    let paused = Arc::new(tokio::sync::Notify::new());
    let resume = Arc::new(tokio::sync::Notify::new());
    let once = Arc::new(AtomicBool::new(true));
    let (paused_hook, resume_hook) = (paused.clone(), resume.clone());
    let pause = FaultPoints {
        before_commit: Some(Arc::new(move || {
            let (paused, resume, first) = (
                paused_hook.clone(),
                resume_hook.clone(),
                once.swap(false, Ordering::SeqCst),
            );
            Box::pin(async move {
                if first {
                    paused.notify_one();
                    resume.notified().await;
                }
            })
        })),
        ..FaultPoints::default()
    };
    let (zombie_stats, zombie_stop, zombie_task) =
        start(Relay::new(&db.url, &kafka(), config.clone()).with_faults(pause));
    let written = enqueue(&db, &topic, &[("k", "one".into()), ("k", "two".into())]).await;
    paused.notified().await;

    // While it sleeps, PostgreSQL ends its silent session and the standby takes the lead.
    let (standby_stats, standby_stop, standby_task) = start(Relay::new(&db.url, &kafka(), config));
    wait_for("the standby to lead", async || {
        standby_stats.is_leader.load(Ordering::Relaxed)
    })
    .await;
    wait_for("an empty outbox", async || outbox_len(&db).await == 0).await;

    // The zombie wakes: its transaction is fenced, it publishes nothing and goes back to standby.
    resume.notify_one();
    wait_for("the zombie to step down", async || {
        !zombie_stats.is_leader.load(Ordering::Relaxed)
    })
    .await;
    enqueue(&db, &topic, &[("k", "sentinel".into())]).await;
    let seen = read_until(&topic, |s| s.iter().any(|e| e.value == "sentinel")).await;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for s in &seen {
        *counts.entry(s.event_id.as_str()).or_default() += 1;
    }
    for metadata in &written {
        assert_eq!(
            counts.get(metadata.event_id.to_string().as_str()),
            Some(&1),
            "published once: {seen:?}"
        );
    }
    let values: Vec<&str> = seen.iter().map(|s| s.value.as_str()).collect();
    assert_eq!(values, ["one", "two", "sentinel"]);
    assert!(standby_stats.is_leader.load(Ordering::Relaxed));
    zombie_stop.cancel();
    standby_stop.cancel();
    zombie_task.await.unwrap().unwrap();
    standby_task.await.unwrap().unwrap();
    db.drop().await;
}
