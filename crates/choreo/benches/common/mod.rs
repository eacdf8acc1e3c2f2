//! What the benchmarks share: the stack's addresses, fresh topics and fresh databases.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use sqlx::{Connection, PgPool};

pub fn kafka() -> choreo::KafkaConfig {
    choreo::KafkaConfig::from_env().expect("KAFKA_BROKERS (run scripts/stack up)")
}

pub async fn topic(name: &str) -> String {
    let name = format!("bench.{name}.{}", uuid::Uuid::now_v7().simple());
    let admin: AdminClient<DefaultClientContext> = choreo::kafka::admin_config(&kafka(), "bench")
        .create()
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin
        .create_topics(
            &[NewTopic::new(&name, 12, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .unwrap()
    {
        r.unwrap();
    }
    name
}

pub async fn fresh_database() -> (String, PgPool) {
    let admin_url = std::env::var("PG_ADMIN_URL").expect("PG_ADMIN_URL (run scripts/stack up)");
    let name = format!("bench_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = choreo::db::with_database(&admin_url, &name);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .connect(&url)
        .await
        .unwrap();
    choreo::db::migrate(&pool).await.unwrap();
    (url, pool)
}

/// The benches' runtime: two workers, like the machine's two cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A count from environment variable `var`, else `default`.
pub fn count_from_env(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A record ready to send: key, value, headers.
pub type Prepared = (String, Vec<u8>, Vec<(&'static str, String)>);

/// Sends every record to `topic` (waiting when the producer's queue is full), then waits for
/// every acknowledgement.
pub async fn produce_all(producer: &FutureProducer, topic: &str, records: &[Prepared]) {
    let mut deliveries = Vec::with_capacity(records.len());
    for (key, value, headers) in records {
        let owned = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            })
        });
        let mut record = FutureRecord::to(topic)
            .key(key)
            .payload(value)
            .headers(owned);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break deliveries.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((error, _)) => panic!("{error}"),
            }
        }
    }
    for delivery in deliveries {
        delivery.await.expect("delivered").expect("acknowledged");
    }
}

/// Waits until `condition` holds, looking every millisecond.
pub async fn until(condition: impl Fn() -> bool) {
    while !condition() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
