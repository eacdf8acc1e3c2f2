//! The relay against librdkafka's in-process mock cluster, whose broker can be slowed down,
//! taken down and brought back without touching the shared one: a commit slower than the lease
//! is published once, a broker that comes back is used again within seconds, and one that
//! hangs does not hold up shutdown.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use choreo::relay::{Relay, RelayConfig};
use choreo::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;

use crate::relay::{enqueue, outbox_len, relay_config, start, wait_for};
use crate::{unique, TestDb};

/// A one-broker mock cluster with a topic of one partition.
fn mock_cluster() -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    KafkaConfig,
    String,
) {
    let mock = MockCluster::new(1).expect("mock cluster");
    let topic = unique("test.relay.mock");
    mock.create_topic(&topic, 1, 1).expect("mock topic");
    let kafka = KafkaConfig::parse(&mock.bootstrap_servers()).expect("mock address");
    (mock, kafka, topic)
}

/// The values on `topic` (read-committed), once `count` arrived.
async fn values(kafka: &KafkaConfig, topic: &str, count: usize) -> Vec<String> {
    let consumer: StreamConsumer =
        choreo::kafka::consumer_config(kafka, &unique("relay-mock-reader"), "relay-test")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut seen = Vec::new();
    while seen.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out after {seen:?}"))
            .unwrap();
        seen.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_slower_than_the_lease_is_published_once() {
    let db = TestDb::create().await;
    let (mock, kafka, topic) = mock_cluster();
    let config = RelayConfig {
        lease: Duration::from_secs(1),
        ..relay_config()
    };
    let (stats, shutdown, task) = start(Relay::new(&db.url, &kafka, config));
    wait_for("a producer", async || {
        stats.producers.load(Ordering::Relaxed) == 1
    })
    .await;

    // Every request now takes longer than the lease, and a batch takes three of them.
    mock.broker_round_trip_time(-1, Duration::from_millis(1_200))
        .unwrap();
    enqueue(&db, &topic, &[("k", "one".into()), ("k", "two".into())]).await;
    wait_for("an empty outbox", async || outbox_len(&db).await == 0).await;
    mock.broker_round_trip_time(-1, Duration::ZERO).unwrap();
    enqueue(&db, &topic, &[("k", "sentinel".into())]).await;
    wait_for("an empty outbox", async || outbox_len(&db).await == 0).await;

    assert_eq!(values(&kafka, &topic, 3).await, ["one", "two", "sentinel"]);
    assert_eq!(
        stats.terms.load(Ordering::Relaxed),
        1,
        "it never lost the lease"
    );
    assert_eq!(stats.published.load(Ordering::Relaxed), 3, "each row once");
    shutdown.cancel();
    task.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_that_was_down_is_used_again_within_seconds_of_coming_back() {
    let db = TestDb::create().await;
    let (mock, kafka, topic) = mock_cluster();
    let config = RelayConfig {
        kafka_timeout: Duration::from_secs(2),
        ..relay_config()
    };
    let (stats, shutdown, task) = start(Relay::new(&db.url, &kafka, config));
    enqueue(&db, &topic, &[("k", "before".into())]).await;
    wait_for("an empty outbox", async || outbox_len(&db).await == 0).await;

    // The broker goes away while a batch waits: deliveries time out, producers are replaced.
    mock.broker_down(-1).unwrap();
    enqueue(&db, &topic, &[("k", "during".into())]).await;
    wait_for("failures while the broker is down", async || {
        stats.failures.load(Ordering::Relaxed) >= 2
    })
    .await;
    assert_eq!(outbox_len(&db).await, 1);

    mock.broker_up(-1).unwrap();
    let back = Instant::now();
    wait_for("an empty outbox", async || outbox_len(&db).await == 0).await;
    let took = back.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "published {took:?} after the broker was back"
    );
    assert!(
        stats.producers.load(Ordering::Relaxed) >= 2,
        "the producer was replaced"
    );
    assert_eq!(values(&kafka, &topic, 2).await, ["before", "during"]);
    shutdown.cancel();
    task.await.unwrap().unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_stops_within_its_drain_while_its_batch_hangs_in_kafka() {
    let db = TestDb::create().await;
    let (mock, kafka, topic) = mock_cluster();
    let config = relay_config();
    let bound = config.shutdown_drain + Duration::from_secs(1);
    let (stats, shutdown, task) = start(Relay::new(&db.url, &kafka, config));
    wait_for("a producer", async || {
        stats.producers.load(Ordering::Relaxed) == 1
    })
    .await;

    // The broker answers nothing for a minute; the relay sends a batch into it.
    mock.broker_round_trip_time(-1, Duration::from_secs(60))
        .unwrap();
    enqueue(&db, &topic, &[("k", "stuck".into())]).await;
    wait_for("a batch in flight", async || {
        stats.attempts.load(Ordering::Relaxed) == 1
    })
    .await;

    let stopping = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the relay stops")
        .unwrap()
        .unwrap();
    let took = stopping.elapsed();
    assert!(took < bound, "stopped in {took:?}");
    assert_eq!(
        outbox_len(&db).await,
        1,
        "the row waits for the next leader"
    );
    db.drop().await;
}
