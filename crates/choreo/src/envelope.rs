//! The envelope every event travels in: the Kafka headers that say what it is, where it comes
//! from and what caused it. Values are UTF-8 text so that `kcat -J` shows them as they are.

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

pub const EVENT_ID: &str = "event_id";
pub const EVENT_TYPE: &str = "event_type";
pub const CORRELATION_ID: &str = "correlation_id";
pub const CAUSATION_ID: &str = "causation_id";
pub const TRACEPARENT: &str = "traceparent";
pub const PRODUCER: &str = "producer";
pub const OCCURRED_AT: &str = "occurred_at";

/// What is known about an event besides its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Unique per event, time-ordered (UUIDv7): the inbox key of every consumer.
    pub event_id: Uuid,
    /// The record's full name, e.g. `shop.order.OrderPlaced`.
    pub event_type: String,
    /// The saga the event belongs to (for the shop, the order id).
    pub correlation_id: String,
    /// The event that caused this one; none for an event caused by a request.
    pub causation_id: Option<Uuid>,
    /// The W3C trace context of the work that wrote the event.
    pub traceparent: Option<String>,
    /// The service that wrote it.
    pub producer: String,
    pub occurred_at: DateTime<Utc>,
    /// The cause's type and time, known to the writer only (not a header): the saga step this
    /// event completes, timed by [`crate::metrics::observe_saga_step`] when it is written.
    pub step_from: Option<StepFrom>,
}

/// The event a step of a saga starts from (see [`Metadata::step_from`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepFrom {
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
}

/// What an event written later needs of its cause: kept with a row that waits (a payment for
/// its worker, an order for its deadline or a customer's cancellation) so that the event the
/// work finally writes still names its cause, stays in its saga and continues its trace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cause {
    pub event_id: Uuid,
    pub event_type: String,
    pub correlation_id: String,
    pub occurred_at: DateTime<Utc>,
    pub traceparent: Option<String>,
}

impl From<&Metadata> for Cause {
    fn from(event: &Metadata) -> Self {
        Self {
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            correlation_id: event.correlation_id.clone(),
            occurred_at: event.occurred_at,
            traceparent: event.traceparent.clone(),
        }
    }
}

impl From<&Cause> for Cause {
    fn from(cause: &Cause) -> Self {
        cause.clone()
    }
}

/// A header that is missing or unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header `{name}`: {why}")]
pub struct HeaderError {
    pub name: &'static str,
    pub why: String,
}

impl Metadata {
    /// Metadata for a new event of type `event_type` in saga `correlation_id`, now, continuing
    /// the current span's trace ([`crate::telemetry::current_traceparent`]) while spans are
    /// exported.
    pub fn new(event_type: &str, correlation_id: &str, producer: &str) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event_type.to_owned(),
            correlation_id: correlation_id.to_owned(),
            causation_id: None,
            traceparent: crate::telemetry::current_traceparent(),
            producer: producer.to_owned(),
            occurred_at: Utc::now(),
            step_from: None,
        }
    }

    /// The same, caused by the event `cause` (an incoming event's metadata, or a [`Cause`] kept
    /// in a row), which also passes on its saga and, when no span of this process continues it,
    /// its trace.
    pub fn caused_by(mut self, cause: impl Into<Cause>) -> Self {
        let cause = cause.into();
        self.causation_id = Some(cause.event_id);
        self.correlation_id = cause.correlation_id;
        if self.traceparent.is_none() {
            self.traceparent = cause.traceparent;
        }
        self.step_from = Some(StepFrom {
            event_type: cause.event_type,
            occurred_at: cause.occurred_at,
        });
        self
    }

    /// The headers in the order they are written.
    pub fn to_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (EVENT_ID, self.event_id.to_string()),
            (EVENT_TYPE, self.event_type.clone()),
            (CORRELATION_ID, self.correlation_id.clone()),
        ];
        if let Some(cause) = self.causation_id {
            headers.push((CAUSATION_ID, cause.to_string()));
        }
        if let Some(trace) = &self.traceparent {
            headers.push((TRACEPARENT, trace.clone()));
        }
        headers.push((PRODUCER, self.producer.clone()));
        headers.push((
            OCCURRED_AT,
            self.occurred_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        ));
        headers
    }

    /// Reads the metadata back from headers given as (name, value bytes) pairs.
    pub fn from_headers<'a>(
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> Result<Self, HeaderError> {
        let mut found: Vec<(&str, &str)> = Vec::new();
        for (name, value) in headers {
            if let Some(value) = value {
                let text = std::str::from_utf8(value).map_err(|_| HeaderError {
                    name: known_name(name),
                    why: "is not UTF-8".into(),
                })?;
                found.push((name, text));
            }
        }
        let get = |name: &'static str| {
            found
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
        };
        let required = |name: &'static str| {
            get(name).ok_or(HeaderError {
                name,
                why: "is missing".into(),
            })
        };
        let uuid = |name: &'static str, text: &str| {
            Uuid::parse_str(text).map_err(|e| HeaderError {
                name,
                why: format!("`{text}` is not a UUID: {e}"),
            })
        };
        let occurred = required(OCCURRED_AT)?;
        Ok(Self {
            event_id: uuid(EVENT_ID, required(EVENT_ID)?)?,
            event_type: required(EVENT_TYPE)?.to_owned(),
            correlation_id: required(CORRELATION_ID)?.to_owned(),
            causation_id: get(CAUSATION_ID)
                .map(|c| uuid(CAUSATION_ID, c))
                .transpose()?,
            traceparent: get(TRACEPARENT).map(str::to_owned),
            producer: required(PRODUCER)?.to_owned(),
            step_from: None,
            occurred_at: DateTime::parse_from_rfc3339(occurred)
                .map_err(|e| HeaderError {
                    name: OCCURRED_AT,
                    why: format!("`{occurred}` is not RFC 3339: {e}"),
                })?
                .with_timezone(&Utc),
        })
    }
}

fn known_name(name: &str) -> &'static str {
    [
        EVENT_ID,
        EVENT_TYPE,
        CORRELATION_ID,
        CAUSATION_ID,
        TRACEPARENT,
        PRODUCER,
        OCCURRED_AT,
    ]
    .into_iter()
    .find(|known| *known == name)
    .unwrap_or("(other)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(metadata: &Metadata) -> Result<Metadata, HeaderError> {
        let headers = metadata.to_headers();
        Metadata::from_headers(headers.iter().map(|(k, v)| (*k, Some(v.as_bytes()))))
    }

    #[test]
    fn metadata_survives_its_headers() {
        let cause = Metadata::new("shop.order.OrderPlaced", "order-1", "order");
        let mut effect = Metadata::new("shop.inventory.InventoryReserved", "ignored", "inventory");
        effect.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        let effect = effect.caused_by(&cause);
        let read = round_trip(&effect).unwrap();
        // RFC 3339 with milliseconds: sub-millisecond precision is not carried.
        assert_eq!(
            read.occurred_at.timestamp_millis(),
            effect.occurred_at.timestamp_millis()
        );
        assert_eq!(
            Metadata {
                occurred_at: effect.occurred_at,
                step_from: effect.step_from.clone(),
                ..read
            },
            effect
        );
        assert_eq!(effect.correlation_id, "order-1");
        assert_eq!(effect.causation_id, Some(cause.event_id));
        assert_eq!(
            effect.step_from.as_ref().map(|s| s.event_type.as_str()),
            Some("shop.order.OrderPlaced")
        );
    }

    #[test]
    fn a_kept_cause_names_the_same_cause_as_the_event_it_was_kept_from() {
        let mut cause = Metadata::new("shop.inventory.InventoryReserved", "order-7", "inventory");
        cause.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        let kept: Cause =
            serde_json::from_value(serde_json::to_value(Cause::from(&cause)).unwrap()).unwrap();
        let direct =
            Metadata::new("shop.payment.PaymentCaptured", "x", "payment").caused_by(&cause);
        let later = Metadata::new("shop.payment.PaymentCaptured", "x", "payment").caused_by(&kept);
        assert_eq!(later.causation_id, direct.causation_id);
        assert_eq!(later.correlation_id, "order-7");
        assert_eq!(later.traceparent, cause.traceparent);
        assert_eq!(later.step_from, direct.step_from);
    }

    #[test]
    fn event_ids_are_time_ordered() {
        let first = Metadata::new("t", "c", "p");
        let second = Metadata::new("t", "c", "p");
        assert!(first.event_id < second.event_id);
        assert_eq!(first.event_id.get_version_num(), 7);
    }

    #[test]
    fn a_missing_or_bad_header_is_named() {
        let err = Metadata::from_headers([(EVENT_TYPE, Some(&b"x"[..]))]).unwrap_err();
        assert_eq!(err.name, OCCURRED_AT);
        let mut headers = Metadata::new("t", "c", "p").to_headers();
        headers[0].1 = "not-a-uuid".into();
        let err = Metadata::from_headers(headers.iter().map(|(k, v)| (*k, Some(v.as_bytes()))))
            .unwrap_err();
        assert_eq!(err.name, EVENT_ID);
    }
}
