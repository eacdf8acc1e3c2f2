//! What the benchmarks share: the stack's addresses, fresh topics and fresh databases.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
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
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .connect(&url)
        .await
        .unwrap();
    choreo::db::migrate(&pool).await.unwrap();
    (url, pool)
}
