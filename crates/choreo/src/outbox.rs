//! The transactional outbox: events are written in the caller's transaction, beside the state
//! change they announce, and published later by the [relay](crate::relay). Either both the change
//! and its events commit, or neither does. After the commit the writer rings the relay's
//! [doorbell](crate::doorbell) ([`Outbox::commit`]; the consumer runner does it after each batch)
//! so the relay does not wait for its next poll.
//!
//! Events of one key are written under a transaction-scoped lock on that key, so two
//! transactions writing events of one key commit in the order of their outbox ids, and the relay's
//! id order is each key's commit order.
//!
//! A row the relay can never publish (a topic that does not exist, a value larger than Kafka
//! accepts) is [parked](park) in `choreo_outbox_parked` with the reason, and the later rows of
//! its (topic, key) wait in the outbox behind it, in order, while other keys flow. Operators see
//! parked rows in the `choreo_outbox_parked` / `choreo_outbox_held` gauges and in `choreo lag`,
//! and after fixing the cause (creating the topic, raising its size limit) [`unpark`] the key:
//! its rows go back under their original ids, so they are published before the ones that waited.
//! [`discard_parked`] gives one up instead. In SQL, as `psql` would run it:
//!
//! ```sql
//! with moved as (delete from choreo_outbox_parked where topic = 'shop.orders.v1' and key = '42'
//!                returning id, topic, key, value, headers, created_at)
//! insert into choreo_outbox (id, topic, key, value, headers, created_at)
//! overriding system value select * from moved;
//! ```

use std::sync::Arc;

use sqlx::PgConnection;

use crate::avro::{Codec, CodecError, Event};
use crate::doorbell::Doorbell;
use crate::envelope::{Cause, Metadata};

/// Why an event could not be added.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Encode(#[from] CodecError),
    #[error("writing to the outbox failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// The channel a relay listens on for rings forwarded from other processes.
pub const CHANNEL: &str = "choreo_outbox";

/// Adds typed events to the outbox of one service.
#[derive(Clone)]
pub struct Outbox {
    codec: Arc<Codec>,
    producer: String,
    doorbell: Doorbell,
}

impl Outbox {
    /// An outbox for `producer` (the service name written in every event's `producer` header).
    pub fn new(codec: Arc<Codec>, producer: &str) -> Self {
        Self {
            codec,
            producer: producer.to_owned(),
            doorbell: Doorbell::for_writes(CHANNEL),
        }
    }

    /// The relay's doorbell: rung after a transaction that added events commits, so the relay
    /// publishes them at once rather than at its next poll ([`Outbox::commit`] does both).
    pub fn doorbell(&self) -> &Doorbell {
        &self.doorbell
    }

    /// Commits `tx` and rings the relay's doorbell.
    pub async fn commit(
        &self,
        tx: sqlx::Transaction<'_, sqlx::Postgres>,
    ) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.doorbell.ring();
        Ok(())
    }

    /// Metadata for a new event of type `E` in saga `correlation_id`, from this service.
    pub fn metadata<E: Event>(&self, correlation_id: &str) -> Metadata {
        Metadata::new(E::NAME, correlation_id, &self.producer)
    }

    /// Encodes `event` and adds it, keyed by `key`, to `E::TOPIC` inside the caller's transaction.
    /// `metadata.event_type` and `producer` are set from `E` and this outbox. Returns the written
    /// event as a [`Cause`] (its id, and the `traceparent` it carries), for a writer that keeps
    /// it with a row so that work done later names it and continues its trace.
    pub async fn add<E: Event>(
        &self,
        tx: &mut PgConnection,
        key: &str,
        event: &E,
        mut metadata: Metadata,
    ) -> Result<Cause, OutboxError> {
        use tracing::Instrument;
        let value = self.codec.encode(event).await?;
        metadata.event_type = E::NAME.to_owned();
        metadata.producer.clone_from(&self.producer);
        // The event's creation span: its context is the `traceparent` the event carries, in the
        // trace of the work that wrote it (or of the cause it names, for work with no span).
        // Not made while spans are not exported: the row keeps the traceparent it was given.
        if crate::telemetry::enabled() {
            let span = tracing::info_span!(
                "outbox write",
                otel.name = %format!("create {}", E::TOPIC),
                otel.kind = "producer",
                messaging.system = "kafka",
                messaging.operation.type = "create",
                messaging.destination.name = E::TOPIC,
                messaging.kafka.message.key = key,
                messaging.message.id = %metadata.event_id,
                choreo.event_type = E::NAME,
                choreo.causation_id = metadata.causation_id.map(|c| c.to_string()),
            );
            crate::telemetry::set_parent(&span, metadata.traceparent.as_deref());
            if let Some(traceparent) = span.in_scope(crate::telemetry::current_traceparent) {
                metadata.traceparent = Some(traceparent);
            }
            add_encoded(tx, E::TOPIC, key, &value, &metadata)
                .instrument(span)
                .await?;
        } else {
            add_encoded(tx, E::TOPIC, key, &value, &metadata).await?;
        }
        crate::metrics::observe_saga_step(&metadata);
        self.doorbell.mark();
        Ok(Cause::from(&metadata))
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
    let headers = serde_json::to_value(metadata.to_headers()).expect("headers are plain strings");
    // One round trip: the key's lock is taken (the CTE is evaluated first, as the insert reads
    // from it) before the row gets its id.
    sqlx::query_scalar!(
        "with locked as (select pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 0)))
         insert into choreo_outbox (topic, key, value, headers)
         select $1, $2, $3, $4 from locked returning id",
        topic,
        key,
        value,
        headers,
    )
    .fetch_one(&mut *tx)
    .await
}

/// How many events wait, and the age in seconds of the oldest (0 when none wait).
pub async fn backlog(conn: &mut PgConnection) -> Result<(i64, f64), sqlx::Error> {
    let row = sqlx::query!(
        r#"select count(*) as "waiting!",
                  coalesce(extract(epoch from clock_timestamp() - min(created_at))::float8, 0) as "oldest_secs!"
           from choreo_outbox"#,
    )
    .fetch_one(conn)
    .await?;
    Ok((row.waiting, row.oldest_secs))
}

/// Moves outbox row `id` to `choreo_outbox_parked` with `error`, in one statement; `false` when
/// the row is gone (published or parked by someone else).
pub async fn park(conn: &mut PgConnection, id: i64, error: &str) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query!(
        "with moved as (delete from choreo_outbox where id = $1
                        returning id, topic, key, value, headers, created_at)
         insert into choreo_outbox_parked (id, topic, key, value, headers, created_at, error)
         select id, topic, key, value, headers, created_at, $2 from moved",
        id,
        error,
    )
    .execute(conn)
    .await?;
    Ok(moved.rows_affected() == 1)
}

/// Moves every parked row of (`topic`, `key`) back into the outbox under its original id (so it
/// is published before the rows that waited behind it); returns how many.
pub async fn unpark(conn: &mut PgConnection, topic: &str, key: &str) -> Result<u64, sqlx::Error> {
    let moved = sqlx::query!(
        "with moved as (delete from choreo_outbox_parked where topic = $1 and key = $2
                        returning id, topic, key, value, headers, created_at)
         insert into choreo_outbox (id, topic, key, value, headers, created_at)
         overriding system value select * from moved",
        topic,
        key,
    )
    .execute(conn)
    .await?;
    Ok(moved.rows_affected())
}

/// Gives up parked row `id` for good (its event is never published); the rows of its key that
/// waited behind it flow again. `false` when there was no such row.
pub async fn discard_parked(conn: &mut PgConnection, id: i64) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query!("delete from choreo_outbox_parked where id = $1", id)
        .execute(conn)
        .await?;
    Ok(deleted.rows_affected() == 1)
}

/// Rows parked, and rows waiting in the outbox behind a parked row of their (topic, key).
pub async fn parked_and_held(conn: &mut PgConnection) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query!(
        r#"select (select count(*) from choreo_outbox_parked) as "parked!",
                  (select count(*) from choreo_outbox o where exists
                      (select 1 from choreo_outbox_parked p where p.topic = o.topic and p.key = o.key)) as "held!""#,
    )
    .fetch_one(conn)
    .await?;
    Ok((row.parked, row.held))
}

/// A parked row as an operator sees it (its value left out).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct Parked {
    pub id: i64,
    pub topic: String,
    pub key: String,
    pub error: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub parked_at: chrono::DateTime<chrono::Utc>,
}

/// The oldest `limit` parked rows, in id order.
pub async fn parked(conn: &mut PgConnection, limit: i64) -> Result<Vec<Parked>, sqlx::Error> {
    sqlx::query_as!(
        Parked,
        "select id, topic, key, error, created_at, parked_at from choreo_outbox_parked
         order by id limit $1",
        limit,
    )
    .fetch_all(conn)
    .await
}
