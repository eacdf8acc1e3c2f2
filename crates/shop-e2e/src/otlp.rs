//! An OTLP/HTTP trace receiver for the tests: it takes the services' exports
//! (`POST /v1/traces`, an `ExportTraceServiceRequest` in protobuf), keeps every span in memory
//! as a [`SpanRecord`] and answers queries for them (`GET /spans`, `GET /stats`, `GET /healthz`).
//! The `otlp-sink` binary serves it; `tests/traces.rs` reads it through [`fetch_spans`].
//!
//! Not here: OTLP/gRPC, JSON bodies, gzip, metrics and logs (the services send none of those),
//! and what a trace means (the parent walks and the text tree are in [`crate::spans`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The attribute that names an event's Kafka key (the order id, for the shop's events).
pub const KEY_ATTRIBUTE: &str = "messaging.kafka.message.key";

/// One span as the sink keeps it: ids in lowercase hex, attributes as strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanRecord {
    pub trace_id: String,
    pub span_id: String,
    /// `None` for a root span.
    pub parent_span_id: Option<String>,
    pub name: String,
    /// `server`, `client`, `producer`, `consumer`, `internal` or `unspecified`.
    pub kind: String,
    /// The resource's `service.name` (`unknown` when it has none).
    pub service: String,
    pub attributes: BTreeMap<String, String>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

impl SpanRecord {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }

    /// The span's length in nanoseconds (0 when the clock went backwards).
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind) {
        Ok(SpanKind::Server) => "server",
        Ok(SpanKind::Client) => "client",
        Ok(SpanKind::Producer) => "producer",
        Ok(SpanKind::Consumer) => "consumer",
        Ok(SpanKind::Internal) => "internal",
        _ => "unspecified",
    }
}

/// An attribute's value as text: strings as they are, numbers and booleans printed, arrays and
/// maps as JSON-ish lists, bytes in hex.
fn value_text(value: Option<&AnyValue>) -> String {
    use any_value::Value as V;
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(V::StringValue(s)) => s.clone(),
        Some(V::BoolValue(b)) => b.to_string(),
        Some(V::IntValue(i)) => i.to_string(),
        Some(V::DoubleValue(d)) => d.to_string(),
        Some(V::BytesValue(b)) => hex(b),
        Some(V::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| value_text(Some(v))).collect();
            format!("[{}]", items.join(","))
        }
        Some(V::KvlistValue(kv)) => {
            let items: Vec<String> = kv
                .values
                .iter()
                .map(|kv| format!("{}={}", kv.key, value_text(kv.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Some(_) => String::new(),
    }
}

fn attributes(pairs: &[KeyValue]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|kv| (kv.key.clone(), value_text(kv.value.as_ref())))
        .collect()
}

/// The spans of an `ExportTraceServiceRequest` body.
pub fn decode(body: &[u8]) -> Result<Vec<SpanRecord>, prost::DecodeError> {
    let request = ExportTraceServiceRequest::decode(body)?;
    let mut spans = Vec::new();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource
            .get("service.name")
            .cloned()
            .unwrap_or_else(|| "unknown".to_owned());
        for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
            spans.push(SpanRecord {
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: (!span.parent_span_id.is_empty())
                    .then(|| hex(&span.parent_span_id)),
                name: span.name.clone(),
                kind: kind_name(span.kind).to_owned(),
                service: service.clone(),
                attributes: attributes(&span.attributes),
                start_unix_nano: span.start_time_unix_nano,
                end_unix_nano: span.end_time_unix_nano,
            });
        }
    }
    Ok(spans)
}

/// What the sink has received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Spans kept.
    pub spans: u64,
    /// Export requests answered 200.
    pub requests: u64,
    /// Requests refused (not protobuf, not an `ExportTraceServiceRequest`).
    pub rejected: u64,
    /// Spans not kept because the store was full.
    pub dropped: u64,
    /// Distinct trace ids kept.
    pub traces: u64,
}

/// The spans received, by trace id, up to a limit.
#[derive(Debug, Default)]
struct Store {
    by_trace: HashMap<String, Vec<SpanRecord>>,
    stats: Stats,
    max_spans: u64,
}

/// The sink's shared state (cheap to clone).
#[derive(Debug, Clone)]
pub struct Sink(Arc<Mutex<Store>>);

impl Sink {
    /// A sink that keeps at most `max_spans` spans and counts the rest as dropped.
    pub fn new(max_spans: u64) -> Self {
        Self(Arc::new(Mutex::new(Store {
            max_spans,
            ..Store::default()
        })))
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `spans` (as many as there is room for).
    pub fn keep(&self, spans: Vec<SpanRecord>) {
        let mut store = self.store();
        store.stats.requests += 1;
        for span in spans {
            if store.stats.spans >= store.max_spans {
                store.stats.dropped += 1;
                continue;
            }
            store.stats.spans += 1;
            store
                .by_trace
                .entry(span.trace_id.clone())
                .or_default()
                .push(span);
        }
        store.stats.traces = store.by_trace.len() as u64;
    }

    pub fn stats(&self) -> Stats {
        self.store().stats
    }

    /// The spans matching `query`, by start time.
    pub fn find(&self, query: &SpanQuery) -> Vec<SpanRecord> {
        let store = self.store();
        let mut found: Vec<SpanRecord> = match &query.trace_id {
            Some(id) => store
                .by_trace
                .get(&id.to_ascii_lowercase())
                .cloned()
                .unwrap_or_default(),
            None => store.by_trace.values().flatten().cloned().collect(),
        };
        if let Some(key) = &query.key {
            found.retain(|s| s.attribute(KEY_ATTRIBUTE) == Some(key.as_str()));
        }
        found.sort_by_key(|s| (s.start_unix_nano, s.end_unix_nano));
        found
    }
}

/// `GET /spans`: `trace_id` (hex) and/or `key` (the `messaging.kafka.message.key` attribute);
/// at least one is required.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SpanQuery {
    pub trace_id: Option<String>,
    pub key: Option<String>,
}

/// The receiver's routes, over `sink`.
pub fn router(sink: Sink) -> Router {
    Router::new()
        .route("/v1/traces", post(export))
        .route("/spans", get(spans))
        .route(
            "/stats",
            get(|State(sink): State<Sink>| async move { Json(sink.stats()) }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        // A batch of 512 spans with their attributes is well under this.
        .layer(DefaultBodyLimit::max(32 * 1024 * 1024))
        .with_state(sink)
}

async fn export(State(sink): State<Sink>, headers: HeaderMap, body: Bytes) -> Response {
    let refuse = |status: StatusCode, why: String| {
        sink.store().stats.rejected += 1;
        (status, why).into_response()
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-protobuf") {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("only application/x-protobuf is taken, not {content_type:?}\n"),
        );
    }
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v != "identity")
    {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "compressed bodies are not taken\n".to_owned(),
        );
    }
    match decode(&body) {
        Ok(spans) => {
            sink.keep(spans);
            (
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
                .into_response()
        }
        Err(error) => refuse(
            StatusCode::BAD_REQUEST,
            format!("not an ExportTraceServiceRequest: {error}\n"),
        ),
    }
}

async fn spans(State(sink): State<Sink>, Query(query): Query<SpanQuery>) -> Response {
    if query.trace_id.is_none() && query.key.is_none() {
        return (
            StatusCode::BAD_REQUEST,
            "give trace_id=<32 hex digits> and/or key=<message key>\n",
        )
            .into_response();
    }
    Json(sink.find(&query)).into_response()
}

/// Serves `sink` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sink: Sink,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(sink))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// The spans a sink at `base` (`http://127.0.0.1:4319`) holds for `query`.
pub async fn fetch_spans(
    http: &reqwest::Client,
    base: &str,
    query: &SpanQuery,
) -> anyhow::Result<Vec<SpanRecord>> {
    let params = [("trace_id", &query.trace_id), ("key", &query.key)];
    let url = reqwest::Url::parse_with_params(
        &format!("{}/spans", base.trim_end_matches('/')),
        params
            .iter()
            .filter_map(|(name, value)| Some((*name, value.as_deref()?))),
    )?;
    let response = http.get(url).send().await?.error_for_status()?;
    Ok(response.json().await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn text(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_owned())),
            }),
            ..KeyValue::default()
        }
    }

    fn request() -> ExportTraceServiceRequest {
        let span = |id: u8, parent: Option<u8>, name: &str, kind: SpanKind| Span {
            trace_id: vec![0xab; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.to_owned(),
            kind: kind as i32,
            start_time_unix_nano: 1_000 * u64::from(id),
            end_time_unix_nano: 1_000 * u64::from(id) + 500,
            attributes: vec![
                text(KEY_ATTRIBUTE, "order-1"),
                KeyValue {
                    key: "messaging.kafka.offset".to_owned(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(42)),
                    }),
                    ..KeyValue::default()
                },
            ],
            ..Span::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![text("service.name", "order")],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![
                        span(1, None, "POST /orders", SpanKind::Server),
                        span(2, Some(1), "create shop.orders.v1", SpanKind::Producer),
                    ],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
    }

    #[test]
    fn an_encoded_export_decodes_to_its_spans_with_ids_in_hex() {
        let spans = decode(&request().encode_to_vec()).expect("a valid request");
        assert_eq!(spans.len(), 2);
        let (root, child) = (&spans[0], &spans[1]);
        assert_eq!(root.trace_id, "ab".repeat(16));
        assert_eq!(root.span_id, "0101010101010101");
        assert_eq!(root.parent_span_id, None);
        assert_eq!(root.kind, "server");
        assert_eq!(child.parent_span_id.as_deref(), Some("0101010101010101"));
        assert_eq!(child.name, "create shop.orders.v1");
        assert_eq!(child.kind, "producer");
        assert_eq!(child.service, "order");
        assert_eq!(child.attribute(KEY_ATTRIBUTE), Some("order-1"));
        assert_eq!(child.attribute("messaging.kafka.offset"), Some("42"));
        assert_eq!(
            (child.start_unix_nano, child.duration_nanos()),
            (2_000, 500)
        );
    }

    #[test]
    fn a_body_that_is_not_a_request_is_an_error() {
        assert!(decode(b"\xff\xff\xff not protobuf").is_err());
        assert_eq!(decode(&[]).expect("an empty request"), Vec::new());
    }

    #[test]
    fn the_sink_finds_spans_by_trace_and_key_and_stops_at_its_limit() {
        let sink = Sink::new(3);
        sink.keep(decode(&request().encode_to_vec()).unwrap());
        sink.keep(decode(&request().encode_to_vec()).unwrap());
        let stats = sink.stats();
        assert_eq!((stats.spans, stats.dropped, stats.requests), (3, 1, 2));
        let by_trace = SpanQuery {
            trace_id: Some("AB".repeat(16)),
            key: None,
        };
        assert_eq!(sink.find(&by_trace).len(), 3);
        let other_key = SpanQuery {
            trace_id: None,
            key: Some("order-2".into()),
        };
        assert!(sink.find(&other_key).is_empty());
    }
}
