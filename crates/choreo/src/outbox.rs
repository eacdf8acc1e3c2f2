//! The transactional outbox: events are written in the caller's transaction, beside the state
//! change they announce, and published later by the [relay](crate::relay). Either both the change
//! and its events commit, or neither does.
//!
//! Events of one key are written under a transaction-scoped lock on that key, so two
//! transactions writing events of one key commit in the order of their outbox ids, and the relay's
//! id order is each key's commit order.

use std::sync::Arc;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::avro::{Codec, CodecError, Event};
use crate::envelope::Metadata;

/// Why an event could not be added.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Encode(#[from] CodecError),
    #[error("writing to the outbox failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// Adds typed events to the outbox of one service.
#[derive(Clone)]
pub struct Outbox {
    codec: Arc<Codec>,
    producer: String,
}

impl Outbox {
    /// An outbox for `producer` (the service name written in every event's `producer` header).
    pub fn new(codec: Arc<Codec>, producer: &str) -> Self {
        Self {
            codec,
            producer: producer.to_owned(),
        }
    }

    /// Metadata for a new event of type `E` in saga `correlation_id`, from this service.
    pub fn metadata<E: Event>(&self, correlation_id: &str) -> Metadata {
        Metadata::new(E::NAME, correlation_id, &self.producer)
    }

    /// Encodes `event` and adds it, keyed by `key`, to `E::TOPIC` inside the caller's transaction.
    /// `metadata.event_type` and `producer` are set from `E` and this outbox. Returns the event id.
    pub async fn add<E: Event>(
        &self,
        tx: &mut PgConnection,
        key: &str,
        event: &E,
        mut metadata: Metadata,
    ) -> Result<Uuid, OutboxError> {
        let value = self.codec.encode(event).await?;
        metadata.event_type = E::NAME.to_owned();
        metadata.producer.clone_from(&self.producer);
        add_encoded(tx, E::TOPIC, key, &value, &metadata).await?;
        Ok(metadata.event_id)
    }
}

/// Adds an already encoded value (for tools and tests; services use [`Outbox::add`]).
pub async fn add_encoded(
    tx: &mut PgConnection,
    topic: &str,
    key: &str,
    value: &[u8],
    metadata: &Metadata,
) -> Result<i64, sqlx::Error> {
    sqlx::query("select pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("{topic}\u{1f}{key}"))
        .execute(&mut *tx)
        .await?;
    let headers = serde_json::to_value(metadata.to_headers()).expect("headers are plain strings");
    sqlx::query_scalar("insert into choreo_outbox (topic, key, value, headers) values ($1, $2, $3, $4) returning id")
        .bind(topic)
        .bind(key)
        .bind(value)
        .bind(headers)
        .fetch_one(&mut *tx)
        .await
}

/// How many events wait, and the age in seconds of the oldest (0 when none wait).
pub async fn backlog(conn: &mut PgConnection) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "select count(*), coalesce(extract(epoch from clock_timestamp() - min(created_at))::float8, 0)
         from choreo_outbox",
    )
    .fetch_one(conn)
    .await
}
