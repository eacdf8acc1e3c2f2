//! Helpers for integration tests against the local stack (feature `testing`): its addresses,
//! names no other run uses, topics and databases of a test's own, events handed to a handler as
//! the consumer runner would, the outbox read back, and the registry client's errors as it makes
//! them. Not for production code.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::RawError;
use sqlx::Connection;

use crate::avro::{Codec, CodecError, Event};
use crate::config::{load_env_file, KafkaConfig, RegistryConfig};
use crate::consumer::{Handler, HandlerError, Incoming};
use crate::envelope::Metadata;

const WAIT: Duration = Duration::from_secs(30);

/// The stack's broker, from the environment or .stack/env.
pub fn kafka() -> KafkaConfig {
    load_env_file();
    KafkaConfig::from_env().expect("the stack's addresses (run scripts/stack up)")
}

/// The stack's schema registry, from the environment or .stack/env.
pub fn registry() -> RegistryConfig {
    load_env_file();
    RegistryConfig::from_env().expect("the stack's addresses (run scripts/stack up)")
}

/// A name no other test run uses: `<prefix>.<uuid v7>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}.{}", uuid::Uuid::now_v7().simple())
}

/// A topic of one test's own, deleted when dropped.
pub struct TestTopic {
    pub name: String,
    admin: AdminClient<DefaultClientContext>,
}

impl TestTopic {
    pub async fn create(prefix: &str, partitions: i32) -> Self {
        let name = create_topic(prefix, partitions).await;
        let admin = crate::kafka::admin_config(&kafka(), "choreo-test")
            .create()
            .expect("admin client");
        Self { name, admin }
    }
}

/// Creates a topic of one test's own and leaves it (its name is unique); see [`TestTopic`] for
/// one that is deleted afterwards.
pub async fn create_topic(prefix: &str, partitions: i32) -> String {
    let name = unique(prefix);
    let admin: AdminClient<DefaultClientContext> =
        crate::kafka::admin_config(&kafka(), "choreo-test")
            .create()
            .expect("admin client");
    let options = AdminOptions::new().operation_timeout(Some(WAIT));
    let results = admin
        .create_topics(
            &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .expect("create topic");
    for result in results {
        result.expect("topic created");
    }
    name
}

impl Drop for TestTopic {
    fn drop(&mut self) {
        // Best effort: the request is sent even if nobody awaits the answer.
        drop(
            self.admin
                .delete_topics(&[&self.name], &AdminOptions::new()),
        );
    }
}

/// A database of one test's own, with the backbone's tables; dropped by [`TestDb::drop`].
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: sqlx::PgPool,
}

fn admin_url() -> String {
    load_env_file();
    std::env::var("PG_ADMIN_URL").expect("PG_ADMIN_URL (run scripts/stack up)")
}

impl TestDb {
    pub async fn create() -> Self {
        let admin_url = admin_url();
        let name = format!("test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("admin connection");
        sqlx::query(&format!("create database {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let url = crate::db::with_database(&admin_url, &name);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await
            .expect("pool");
        crate::db::migrate(&pool).await.expect("migrate");
        Self { name, url, pool }
    }

    pub async fn drop(self) {
        self.pool.close().await;
        let mut admin = sqlx::PgConnection::connect(&admin_url())
            .await
            .expect("admin connection");
        sqlx::query(&format!(
            "drop database if exists {} with (force)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .expect("drop database");
    }
}

/// `event` as the consumer runner would hand it to a handler: on `E::TOPIC`, partition 0, offset
/// 0, keyed and correlated by `key`, produced by `test`, its value encoded with `codec`.
pub async fn incoming<E: Event>(codec: &Codec, key: &str, event: &E) -> Incoming {
    Incoming {
        topic: E::TOPIC.to_owned(),
        partition: 0,
        offset: 0,
        key: key.to_owned(),
        metadata: Metadata::new(E::NAME, key, "test"),
        value: codec.encode(event).await.expect("encode"),
    }
}

/// Hands `incoming` to `handler` in a transaction of its own on `pool`, committed if the handler
/// succeeds (rolled back otherwise), as the consumer runner would for a batch of one.
pub async fn handle(
    pool: &sqlx::PgPool,
    handler: &impl Handler,
    incoming: &Incoming,
) -> Result<(), HandlerError> {
    let mut tx = pool.begin().await.expect("begin");
    handler.handle(&mut tx, incoming).await?;
    tx.commit().await.expect("commit");
    Ok(())
}

/// One row of the outbox (`choreo_outbox`): an event written but not yet published.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub topic: String,
    pub key: String,
    /// The Kafka headers, (name, value) in order.
    #[sqlx(json)]
    pub headers: Vec<(String, String)>,
    /// The value as it will be published (Confluent-framed Avro for shop events).
    pub value: Vec<u8>,
}

impl OutboxRow {
    /// The value of header `name` (the first one, if repeated).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    /// The value decoded as `E` with `codec`.
    pub async fn decode<E: Event>(&self, codec: &Codec) -> Result<E, CodecError> {
        codec.decode::<E>(&self.value).await
    }
}

/// Every row of the outbox of the database behind `pool`, oldest first.
pub async fn outbox_rows(pool: &sqlx::PgPool) -> Vec<OutboxRow> {
    sqlx::query_as("select id, topic, key, headers, value from choreo_outbox order by id")
        .fetch_all(pool)
        .await
        .expect("read the outbox")
}

/// The error schema_registry_converter makes of an HTTP answer with `status` and `body`: the
/// body read as the registry's error (`error_code` 0 when it is not one), retriable for 502/503.
pub fn registry_answer(status: u16, body: &str) -> SRCError {
    let message = format!("HTTP request to schema registry failed with status {status}");
    let raw: RawError = serde_json::from_str(body).unwrap_or_else(|_| {
        serde_json::from_str(
            r#"{"error_code":0,"message":"couldn't parse schema registry error json"}"#,
        )
        .expect("a raw error")
    });
    if matches!(status, 502 | 503) {
        SRCError::retryable_with_cause(raw, &message)
    } else {
        SRCError::non_retryable_with_cause(raw, &message)
    }
}

/// The error schema_registry_converter makes of a call that got no answer (connection refused).
pub fn registry_unreachable() -> SRCError {
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    SRCError::retryable_with_cause(refused, "http call to schema registry failed")
}
