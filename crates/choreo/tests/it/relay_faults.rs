//! The relay under faults it must survive without help: a row that can never be published is
//! parked while other keys flow and its own key waits in order; a broker that cannot be reached
//! neither holds up shutdown nor, once it is back, keeps the relay from publishing within
//! seconds. (A slow broker and one that goes down: `relay_broker`, against a mock cluster.)

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use choreo::relay::{Relay, RelayConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use tokio_util::sync::CancellationToken;

use crate::relay::{enqueue, outbox_len, read_until, relay_config, spawn, start, wait_for};
use crate::{create_topic, kafka, unique, TestDb};

async fn parked(db: &TestDb) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "select topic, key, convert_from(value, 'UTF8') from choreo_outbox_parked order by id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

async fn waiting(db: &TestDb) -> Vec<(String, String)> {
    sqlx::query_as("select key, convert_from(value, 'UTF8') from choreo_outbox order by id")
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_row_too_large_for_kafka_is_parked_and_other_keys_flow() {
    let db = TestDb::create().await;
    let topic = create_topic("test.relay", 1).await;
    let huge = "x".repeat(1_100_000);
    let events = [
        ("k", "k1".to_owned()),
        ("k", huge.clone()),
        ("k", "k2".to_owned()),
        ("j", "j1".to_owned()),
        ("j", "j2".to_owned()),
    ];
    enqueue(&db, &topic, &events).await;
    let metrics = Arc::new(choreo::metrics::Metrics::new("relay-test"));
    let shutdown = CancellationToken::new();
    let relay = Relay::new(&db.url, &kafka(), relay_config()).with_metrics(metrics.clone());
    let task = spawn(relay, &shutdown);

    // Key j flows past the row that can never be published, and k's earlier row goes first.
    let seen = read_until(&topic, |s| s.iter().any(|e| e.value == "j2")).await;
    let values: Vec<&str> = seen.iter().map(|s| s.value.as_str()).collect();
    assert_eq!(values, ["k1", "j1", "j2"]);

    // The huge row is parked with its reason; k2 waits behind it; an operator sees both.
    wait_for("the gauges", async || {
        metrics.outbox_parked.get() == 1 && metrics.outbox_held.get() == 1
    })
    .await;
    let parked_rows = parked(&db).await;
    assert_eq!(parked_rows.len(), 1);
    assert_eq!(
        (parked_rows[0].0.as_str(), parked_rows[0].1.as_str()),
        (topic.as_str(), "k")
    );
    assert_eq!(parked_rows[0].2, huge);
    assert_eq!(waiting(&db).await, [("k".to_owned(), "k2".to_owned())]);
    let mut conn = db.pool.acquire().await.unwrap();
    let listed = choreo::outbox::parked(&mut conn, 10).await.unwrap();
    assert!(
        listed[0].error.contains("MessageSizeTooLarge"),
        "{listed:?}"
    );

    // Given up, the parked row frees its key: k2 follows.
    assert!(choreo::outbox::discard_parked(&mut conn, listed[0].id)
        .await
        .unwrap());
    let seen = read_until(&topic, |s| s.iter().any(|e| e.value == "k2")).await;
    let values: Vec<&str> = seen.iter().map(|s| s.value.as_str()).collect();
    assert_eq!(values, ["k1", "j1", "j2", "k2"]);
    wait_for("an empty outbox", async || outbox_len(&db).await == 0).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    drop(conn);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_behind_a_parked_row_of_the_same_key_wait_in_order_until_it_is_unparked() {
    let db = TestDb::create().await;
    let present = create_topic("test.relay", 1).await;
    let missing = unique("test.relay.missing");
    enqueue(&db, &missing, &[("a", "m1".into()), ("a", "m2".into())]).await;
    enqueue(&db, &present, &[("b", "p1".into())]).await;
    let config = RelayConfig {
        unknown_topic_grace: Duration::from_millis(500),
        ..relay_config()
    };
    let shutdown = CancellationToken::new();
    let relay = Relay::new(&db.url, &kafka(), config);
    let stats = relay.stats();
    let task = spawn(relay, &shutdown);

    // A topic that does not exist parks the first row of its key; the other key flows.
    read_until(&present, |s| s.iter().any(|e| e.value == "p1")).await;
    wait_for("the row to be parked", async || {
        parked(&db).await.len() == 1
    })
    .await;
    assert_eq!(parked(&db).await[0].2, "m1");
    assert_eq!(waiting(&db).await, [("a".to_owned(), "m2".to_owned())]);
    assert!(
        stats.producers.load(Ordering::Relaxed) >= 2,
        "replaced after failing"
    );

    // The operator creates the topic and un-parks the key: both rows go out, in order.
    let admin: AdminClient<DefaultClientContext> =
        choreo::kafka::admin_config(&kafka(), "relay-test")
            .create()
            .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(&missing, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    created.into_iter().for_each(|r| {
        r.unwrap();
    });
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(
        choreo::outbox::unpark(&mut conn, &missing, "a")
            .await
            .unwrap(),
        1
    );
    let seen = read_until(&missing, |s| s.len() >= 2).await;
    let values: Vec<&str> = seen.iter().map(|s| s.value.as_str()).collect();
    assert_eq!(values, ["m1", "m2"]);
    wait_for("an empty outbox", async || outbox_len(&db).await == 0).await;
    assert!(parked(&db).await.is_empty());
    shutdown.cancel();
    task.await.unwrap().unwrap();
    drop(conn);
    db.drop().await;
}

/// A local port nothing listens on (yet).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_stops_within_its_drain_while_kafka_cannot_be_reached() {
    let db = TestDb::create().await;
    let nowhere = kafka()
        .with_brokers(&format!("127.0.0.1:{}", closed_port()))
        .unwrap();
    enqueue(&db, "test.relay.unreachable", &[("k", "v".into())]).await;
    let config = relay_config();
    let bound = config.shutdown_drain + Duration::from_secs(1);
    let (stats, shutdown, task) = start(Relay::new(&db.url, &nowhere, config));
    wait_for("a leader", async || stats.is_leader.load(Ordering::Relaxed)).await;

    let stopping = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the relay stops")
        .unwrap()
        .unwrap();
    let took = stopping.elapsed();
    assert!(took < bound, "stopped in {took:?}");
    assert_eq!(outbox_len(&db).await, 1, "nothing was lost");
    db.drop().await;
}

/// Forwards connections on `port` to `target` from now on.
async fn open_proxy(port: u16, target: String) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_that_could_not_reach_kafka_publishes_within_seconds_once_it_can() {
    let db = TestDb::create().await;
    let topic = create_topic("test.relay", 1).await;
    let port = closed_port();
    let through_proxy = kafka().with_brokers(&format!("127.0.0.1:{port}")).unwrap();
    enqueue(&db, &topic, &[("k", "v1".into())]).await;
    // Steps that time out after a second: the relay replaces its producer while Kafka is away.
    let config = RelayConfig {
        kafka_timeout: Duration::from_secs(1),
        ..relay_config()
    };
    let (stats, shutdown, task) = start(Relay::new(&db.url, &through_proxy, config));
    wait_for("failures while Kafka is away", async || {
        stats.failures.load(Ordering::Relaxed) >= 3
    })
    .await;
    assert_eq!(outbox_len(&db).await, 1);

    let broker = kafka().brokers.split(',').next().unwrap().to_owned();
    let proxy = open_proxy(port, broker).await;
    let back = Instant::now();
    wait_for("an empty outbox", async || outbox_len(&db).await == 0).await;
    let took = back.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "published {took:?} after Kafka was back"
    );
    let seen = read_until(&topic, |s| !s.is_empty()).await;
    assert_eq!(seen[0].value, "v1");
    shutdown.cancel();
    task.await.unwrap().unwrap();
    proxy.abort();
    db.drop().await;
}
