//! The consumer runner: a consumer group that applies events to a service's database exactly
//! once, each key in order.
//!
//! Messages of each partition go to a worker of their own, so partitions are applied in
//! parallel and each partition (and so each key) in order. A worker applies a batch in one
//! database transaction: one statement writes the batch's inbox rows ([`crate::inbox`]) and says
//! which events are new; the handler applies each new one, with its outgoing outbox rows.
//! Offsets are committed only after that transaction commits, so a crash between the two
//! redelivers events whose inbox rows say they were applied: they are skipped.
//!
//! A transient failure (database down, serialization failure, deadlock, registry unreachable)
//! rolls the batch back and retries it with backoff, in place. A permanent one (not our wire
//! format, unknown schema, a handler's rejection, unreadable headers, or a transient one that
//! exhausted its retries) rolls the batch back, sends that message to `<topic>.<group>.dlq`
//! with the reason in headers ([`dlq`]) and applies the rest of the batch without it. On
//! shutdown or when a partition is revoked, its worker finishes and commits the batch in hand,
//! then lets go.

mod context;
pub mod dlq;
#[cfg(feature = "testing")]
mod faults;
mod membership;
mod runner;
mod worker;

use std::time::Duration;

#[cfg(feature = "testing")]
pub use faults::Faults;
pub use membership::{in_group, Membership};
pub use runner::{Consumer, ConsumerError, ConsumerStats};

use crate::avro::CodecError;
use crate::envelope::Metadata;

/// How a consumer behaves.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The consumer group; also the inbox's consumer name and part of the DLQ topic names.
    pub group: String,
    pub topics: Vec<String>,
    /// The most messages applied in one database transaction.
    pub batch_size: usize,
    /// First and longest wait between retries of a transiently failing batch.
    pub backoff: (Duration, Duration),
    /// Retries of one batch before its failing message is dead-lettered as `retries_exhausted`.
    pub max_retries: u32,
    /// How long shutdown and revocation wait for batches in hand.
    pub grace: Duration,
    /// A partition retrying one batch longer than this is reported stuck (a warning, the
    /// `consumer_stuck_seconds` gauge, and its committed offset's metadata, which `choreo lag`
    /// shows).
    pub stuck_after: Duration,
    /// A member out of its group longer than this (librdkafka did not join again by itself)
    /// closes its Kafka consumer and starts a new one.
    pub rejoin_after: Duration,
}

impl ConsumerConfig {
    pub fn new(group: &str, topics: &[&str]) -> Self {
        Self {
            group: group.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            batch_size: 500,
            backoff: (Duration::from_millis(50), Duration::from_secs(5)),
            max_retries: 20,
            grace: Duration::from_secs(20),
            stuck_after: Duration::from_secs(30),
            rejoin_after: Duration::from_secs(45),
        }
    }
}

/// One event as a handler sees it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub metadata: Metadata,
    /// The value as it came (Confluent-framed Avro for shop events): decode it with the codec.
    pub value: Vec<u8>,
}

/// Why a handler did not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Try again later; the batch is retried in place.
    #[error("transient: {0}")]
    Transient(String),
    /// The event can never be applied (the handler's decision); it is dead-lettered.
    #[error("rejected: {0}")]
    Rejected(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<crate::outbox::OutboxError> for HandlerError {
    /// An event that cannot be encoded is the handler's codec failing; a failed write is the
    /// database's.
    fn from(error: crate::outbox::OutboxError) -> Self {
        match error {
            crate::outbox::OutboxError::Encode(e) => HandlerError::Codec(e),
            crate::outbox::OutboxError::Database(e) => HandlerError::Database(e),
        }
    }
}

impl HandlerError {
    /// `None` when worth a retry; else the reason recorded in the dead letter.
    pub fn permanent_reason(&self) -> Option<&'static str> {
        match self {
            HandlerError::Transient(_) | HandlerError::Database(_) => None,
            HandlerError::Rejected(_) => Some("rejected"),
            HandlerError::Codec(error) => match error {
                CodecError::RegistryUnavailable { .. } => None,
                CodecError::NotWireFormat(_) => Some("not_wire_format"),
                CodecError::UnknownSchemaId { .. } => Some("unknown_schema"),
                CodecError::SchemaMismatch { .. } => Some("schema_mismatch"),
                CodecError::Malformed { .. } => Some("malformed"),
                CodecError::Rejected { .. } | CodecError::Encode { .. } => Some("encode_failed"),
            },
        }
    }
}

/// Applies events; one per service and consumer group.
pub trait Handler: Send + Sync + 'static {
    /// Whether this build knows events of `event_type` at all. An event it does not know (a
    /// producer deployed ahead of this consumer) is recorded in the inbox, counted
    /// (`consumer_unknown_events_total`), logged, and not handed to [`Handler::handle`]. Events it
    /// knows but has nothing to do with are the handler's to pass over quietly.
    fn knows(&self, event_type: &str) -> bool {
        let _ = event_type;
        true
    }

    /// Applies `event` inside `tx` (the batch's transaction): the effect on the service's state
    /// and any outgoing events ([`crate::outbox::Outbox::add`]). An error rolls the batch back.
    fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &Incoming,
    ) -> impl std::future::Future<Output = Result<(), HandlerError>> + Send;

    /// Applies the new events of a batch, in order, inside `tx`. The default hands them to
    /// [`Handler::handle`] one by one, each in a span continuing its producer's trace
    /// ([`traced`]); a handler can override it to write a whole batch's effects in fewer
    /// statements. On failure it names the event that failed, by index.
    fn handle_batch(
        &self,
        tx: &mut sqlx::PgConnection,
        events: &[Incoming],
    ) -> impl std::future::Future<Output = Result<(), BatchFailure>> + Send {
        async move {
            for (index, event) in events.iter().enumerate() {
                traced(event, self.handle(tx, event))
                    .await
                    .map_err(|error| BatchFailure { index, error })?;
            }
            Ok(())
        }
    }
}

/// Which event of a batch failed, and why.
#[derive(Debug)]
pub struct BatchFailure {
    pub index: usize,
    pub error: HandlerError,
}

/// Runs `work` for `event` in its consumer span ("process <topic>", OpenTelemetry's messaging
/// attributes), a child of the event's `traceparent` (the producer's publish span), with the
/// handler's span inside it: events that `work` writes continue the trace.
pub async fn traced<F: std::future::Future>(event: &Incoming, work: F) -> F::Output {
    use tracing::Instrument;
    let metadata = &event.metadata;
    let short = metadata
        .event_type
        .rsplit('.')
        .next()
        .unwrap_or(&metadata.event_type);
    if !crate::telemetry::enabled() {
        // Tracing off: one span for the logs' context, as before OpenTelemetry.
        let handle = tracing::info_span!(
            "handle",
            event_id = %metadata.event_id,
            event_type = %metadata.event_type,
            partition = event.partition,
            offset = event.offset,
        );
        return work.instrument(handle).await;
    }
    let process = tracing::info_span!(
        "process",
        otel.name = %format!("process {}", event.topic),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = %event.topic,
        messaging.destination.partition.id = event.partition,
        messaging.kafka.offset = event.offset,
        messaging.kafka.message.key = %event.key,
        messaging.message.id = %metadata.event_id,
        choreo.event_type = %metadata.event_type,
        choreo.causation_id = metadata.causation_id.map(|c| c.to_string()),
    );
    crate::telemetry::set_parent(&process, metadata.traceparent.as_deref());
    let handle =
        tracing::info_span!(parent: &process, "handle", otel.name = %format!("handle {short}"));
    work.instrument(handle).instrument(process).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_can_never_succeed_is_dead_lettered() {
        assert_eq!(
            HandlerError::Transient("db down".into()).permanent_reason(),
            None
        );
        assert_eq!(
            HandlerError::Database(sqlx::Error::PoolTimedOut).permanent_reason(),
            None
        );
        assert_eq!(
            HandlerError::Rejected("no such sku".into()).permanent_reason(),
            Some("rejected")
        );
        let unknown = HandlerError::Codec(CodecError::UnknownSchemaId { id: 9 });
        assert_eq!(unknown.permanent_reason(), Some("unknown_schema"));
        let down = HandlerError::Codec(CodecError::RegistryUnavailable {
            detail: "refused".into(),
        });
        assert_eq!(down.permanent_reason(), None);
    }
}
