//! Integration tests of the backbone against the real stack (Kafka, the schema registry,
//! PostgreSQL): one binary, a module per part. Needs `scripts/stack up` (scripts/test brings it
//! up); addresses come from .stack/env.

mod codec;
mod consumer;
mod ops;
mod pipeline;
mod relay;
mod stack;

fn kafka() -> choreo::KafkaConfig {
    choreo::config::load_env_file();
    choreo::KafkaConfig::from_env().expect("the stack's addresses (run scripts/stack up)")
}

fn registry() -> choreo::RegistryConfig {
    choreo::config::load_env_file();
    choreo::RegistryConfig::from_env().expect("the stack's addresses (run scripts/stack up)")
}

/// A name no other test run uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}.{}", uuid::Uuid::now_v7().simple())
}

/// A database of its own for one test, with the backbone's tables; dropped by [`TestDb::drop`].
struct TestDb {
    name: String,
    url: String,
    pool: sqlx::PgPool,
}

impl TestDb {
    async fn create() -> Self {
        choreo::config::load_env_file();
        let admin_url = std::env::var("PG_ADMIN_URL").expect("PG_ADMIN_URL (run scripts/stack up)");
        let name = format!("test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .expect("admin connection");
        sqlx::query(&format!("create database {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let (base, _) = admin_url.rsplit_once('/').expect("database URL");
        let url = format!("{base}/{name}");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await
            .expect("pool");
        choreo::db::migrate(&pool).await.expect("migrate");
        Self { name, url, pool }
    }

    async fn drop(self) {
        self.pool.close().await;
        choreo::config::load_env_file();
        let admin_url = std::env::var("PG_ADMIN_URL").unwrap();
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .unwrap();
        sqlx::query(&format!(
            "drop database if exists {} with (force)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

/// Creates a topic of its own for one test.
async fn create_topic(prefix: &str, partitions: i32) -> String {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let name = unique(prefix);
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        choreo::kafka::admin_config(&kafka(), "it")
            .create()
            .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(30)));
    for result in admin
        .create_topics(
            &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .unwrap()
    {
        result.expect("topic created");
    }
    name
}
