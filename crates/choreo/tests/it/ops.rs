//! Telemetry: the operations endpoint (health, readiness, Prometheus metrics) and a trace that a
//! consumer continues from the event's `traceparent` into the events it writes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use choreo::consumer::{Consumer, ConsumerConfig, Handler, HandlerError, Incoming};
use choreo::envelope::Metadata;
use choreo::metrics::Metrics;
use choreo::ops::Readiness;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::consumer::wait_for;
use crate::{create_topic, kafka, unique, TestDb};

/// Writes one outbox event per event it applies.
struct Forwarder;

impl Handler for Forwarder {
    async fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &Incoming,
    ) -> Result<(), HandlerError> {
        let metadata =
            Metadata::new("test.ops.Forwarded", &event.key, "ops-test").caused_by(&event.metadata);
        choreo::outbox::add_encoded(tx, "test.ops.out", &event.key, b"forwarded", &metadata)
            .await?;
        Ok(())
    }
}

async fn send(topic: &str, key: &str, traceparent: &str) {
    let producer: FutureProducer = choreo::kafka::producer_config(&kafka(), "ops-test")
        .create()
        .unwrap();
    let mut metadata = Metadata::new("test.ops.In", key, "ops-test");
    metadata.traceparent = Some(traceparent.to_owned());
    let headers = metadata.to_headers();
    let owned = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        })
    });
    producer
        .send(
            FutureRecord::to(topic).key(key).payload("x").headers(owned),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
}

async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{address}{path}"))
        .await
        .expect("the ops endpoint answers");
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_continues_the_producers_trace_into_the_events_it_writes_and_reports_it_all() {
    let db = TestDb::create().await;
    let topic = create_topic("test.ops", 1).await;
    let metrics = Arc::new(Metrics::new("ops-test"));
    let handler = Forwarder;
    let consumer = Consumer::new(
        &kafka(),
        db.pool.clone(),
        handler,
        ConsumerConfig::new(&unique("ops").replace('.', "-"), &[&topic]),
    )
    .with_metrics(metrics.clone());
    let stats = consumer.stats();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let readiness = Readiness {
        database: Some(db.pool.clone()),
        consumers: vec![stats.clone()],
    };
    let server = tokio::spawn(choreo::ops::serve(
        listener,
        metrics.clone(),
        readiness,
        stop.clone(),
    ));

    assert_eq!(get(address, "/healthz").await.0, 200);
    let (status, body) = get(address, "/readyz").await;
    assert_eq!(
        status, 503,
        "not ready before the consumer joined its group: {body}"
    );

    let consumer_task = tokio::spawn({
        let stop = stop.clone();
        async move { consumer.run(stop).await }
    });
    let producer_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    send(&topic, "order-1", producer_trace).await;
    wait_for("the event applied", async || {
        stats.applied.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(get(address, "/readyz").await.0, 200);

    // The written event's traceparent continues the producer's trace (here, with no exporter, it
    // passes through as it came; exporting, it names this process's span in the same trace).
    let written: sqlx::types::Json<Vec<(String, String)>> =
        sqlx::query_scalar("select headers from choreo_outbox")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let traceparent = written
        .0
        .iter()
        .find(|(k, _)| k == "traceparent")
        .map(|(_, v)| v.clone())
        .expect("traceparent written");
    assert_eq!(traceparent, producer_trace);

    let (status, text) = get(address, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.contains(
            r#"choreo_consumer_applied_total{event_type="test.ops.In",service="ops-test"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("choreo_handler_seconds_bucket"), "{text}");

    // A database that stops answering makes the service unready.
    db.pool.close().await;
    assert_eq!(get(address, "/readyz").await.0, 503);
    stop.cancel();
    let _ = consumer_task.await.unwrap();
    server.await.unwrap().unwrap();
    db.drop().await;
}
