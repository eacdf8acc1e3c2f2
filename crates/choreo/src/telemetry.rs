//! OpenTelemetry for every service: one distributed trace per unit of work, from the customer's
//! request through every Kafka hop, exported over OTLP/HTTP when the standard variables ask.
//!
//! - [`init`] installs the process's subscriber: JSON logs (each line carries `trace_id` and
//!   `span_id` while a traced span is current) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and `OTEL_SDK_DISABLED` is not `true`, the
//!   `tracing-opentelemetry` layer with a batching OTLP exporter. Sampling follows
//!   `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` (default: parent-based, always on); the
//!   service's name is `OTEL_SERVICE_NAME` or the one the binary passes. Off, no span reaches
//!   OpenTelemetry and the hot paths skip their spans ([`enabled`]).
//! - W3C trace context travels with OpenTelemetry's propagator: [`inject_http`]/[`extract_http`]
//!   over HTTP headers, [`KafkaInjector`]/[`KafkaExtractor`] over rdkafka's headers on
//!   the way to and from Kafka, and [`current_traceparent`]/[`set_parent`] for a context kept in
//!   a row (the outbox's headers, a payment waiting for its worker, an order's deadline).
//! - Off, an event's `traceparent` passes through unchanged ([`crate::envelope::Metadata::caused_by`]),
//!   so one service without an exporter does not cut the trace of the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The standard variables a service honours, read here or by the OpenTelemetry SDK and its
/// OTLP exporter (the deployment's structure test allows exactly these besides the service's own).
pub const OTEL_VARS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
];

/// The W3C header name.
pub const TRACEPARENT: &str = "traceparent";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (set once by [`init`]). Hot paths that would make a span per
/// event (the relay's publish) skip it when this is false.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Keeps the exporter alive; dropping it flushes the spans still queued and shuts it down.
#[must_use = "dropping the guard shuts the exporter down"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether this process exports spans.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown() {
                eprintln!("telemetry: flushing spans at shutdown failed: {error}");
            }
            ENABLED.store(false, Ordering::Relaxed);
        }
    }
}

/// What the `OTEL_*` variables ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Export spans at all.
    pub export: bool,
    /// `service.name` of the spans.
    pub service_name: String,
}

impl Settings {
    /// Reads the standard variables through `var` (pure, for tests); `default_name` is the
    /// binary's own name, used when `OTEL_SERVICE_NAME` is unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>, default_name: &str) -> Self {
        let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
        let disabled =
            var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let exporter_none = var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none");
        let endpoint =
            set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        Self {
            export: endpoint && !disabled && !exporter_none,
            service_name: var("OTEL_SERVICE_NAME")
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| default_name.to_owned()),
        }
    }
}

/// Installs the JSON log subscriber (`RUST_LOG` filters, default `info`) and, when asked by the
/// `OTEL_*` variables, the OpenTelemetry layer. Keep the returned guard until the process ends.
/// A second call (tests) leaves the first subscriber in place.
pub fn init(default_name: &str) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let settings = Settings::from_vars(|n| std::env::var(n).ok(), default_name);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let dispatch = Arc::new(OnceLock::new());
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .event_format(WithTraceIds {
            inner: format::format().json().with_current_span(false),
            dispatch: dispatch.clone(),
        });
    let provider = settings.export.then(|| provider(&settings)).flatten();
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("choreo"))
            .with_threads(false)
            .with_location(false)
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(otel)
        .try_init()
        .is_ok();
    if installed {
        tracing::dispatcher::get_default(|d| dispatch.set(d.downgrade()).ok());
    }
    if installed && provider.is_some() {
        ENABLED.store(true, Ordering::Relaxed);
        tracing::info!(service = %settings.service_name, "exporting spans over OTLP");
    }
    Telemetry {
        provider: provider.filter(|_| installed),
    }
}

fn provider(settings: &Settings) -> Option<SdkTracerProvider> {
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("telemetry: no OTLP exporter ({error}); spans are not exported");
            return None;
        }
    };
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Some(provider)
}

/// The W3C `traceparent` of the current span, if it belongs to a trace (none while export is
/// off: the caller then passes on the context it was given).
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the remote context `traceparent` (kept in a row or a header); a
/// missing or malformed one leaves `span` where it is (a new trace, or under the current span).
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    if !enabled() {
        return;
    }
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// Makes `span` a child of the context in the request's headers, if any.
pub fn extract_http(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !enabled() {
        return;
    }
    let context = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&opentelemetry_http::HeaderExtractor(headers))
    });
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// Middleware: each request in a server span named by its route template, a child of the
/// caller's `traceparent` (apply as a `route_layer`, where the matched route is known).
pub async fn serve_http(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    if !enabled() {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let span = server_span(request.method(), &route);
    extract_http(&span, request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

/// A server span for `method route` (the response status recorded later).
pub fn server_span(method: &axum::http::Method, route: &str) -> tracing::Span {
    tracing::info_span!(
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    )
}

/// Renames the current span (e.g. a server span named by its route once routing has run). The
/// OpenTelemetry span may have started already, so this renames it there rather than through the
/// `otel.name` field, which only counts before the start.
pub fn rename_current(name: &str) {
    if enabled() {
        tracing::Span::current()
            .context()
            .span()
            .update_name(name.to_owned());
    }
}

/// A client span for a call to `peer` (`method` and the path template).
pub fn client_span(peer: &str, method: &str, path: &str) -> tracing::Span {
    tracing::info_span!(
        "call",
        otel.name = %format!("{method} {path}"),
        otel.kind = "client",
        http.request.method = method,
        url.template = path,
        server.name = peer,
    )
}

/// Writes the current span's context into an outgoing request's headers.
pub fn inject_http(headers: &mut axum::http::HeaderMap) {
    if !enabled() {
        return;
    }
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut opentelemetry_http::HeaderInjector(headers))
    });
}

/// Reads trace context from a Kafka message's headers (the last value of a repeated key).
pub struct KafkaExtractor<'a, H: Headers>(pub &'a H);

impl<H: Headers> Extractor for KafkaExtractor<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|h| h.key == key)
            .last()
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.key).collect()
    }
}

/// Writes trace context into the headers of a message being produced.
pub struct KafkaInjector(pub OwnedHeaders);

impl Injector for KafkaInjector {
    /// Adds the header; an empty value (a `tracestate` with no entries) is left out.
    fn set(&mut self, key: &str, value: String) {
        if value.is_empty() {
            return;
        }
        let headers = std::mem::replace(&mut self.0, OwnedHeaders::new());
        self.0 = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
}

/// An outbox row's headers as Kafka headers. While spans are exported and a span is current
/// (the relay's publish span), its context replaces the `traceparent` the row was written with,
/// so the consumers' spans are children of the publish; otherwise the row's pass through.
pub fn kafka_headers(pairs: &[(String, String)]) -> OwnedHeaders {
    let context = enabled()
        .then(|| tracing::Span::current().context())
        .filter(|c| c.span().span_context().is_valid());
    let replaced = |key: &str| context.is_some() && (key == TRACEPARENT || key == "tracestate");
    let headers = pairs.iter().filter(|(key, _)| !replaced(key)).fold(
        OwnedHeaders::new_with_capacity(pairs.len() + 1),
        |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        },
    );
    match context {
        Some(context) => {
            let mut injector = KafkaInjector(headers);
            TraceContextPropagator::new().inject_context(&context, &mut injector);
            injector.0
        }
        None => headers,
    }
}

/// Makes `span` a child of the context in a consumed message's headers.
pub fn extract_kafka<H: Headers>(span: &tracing::Span, headers: &H) {
    if !enabled() {
        return;
    }
    let context = TraceContextPropagator::new().extract(&KafkaExtractor(headers));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// JSON log lines with the `trace_id` and `span_id` of the current span first, when it is in a
/// trace, so logs and traces join on them. `dispatch` is the installed subscriber's.
struct WithTraceIds<F> {
    inner: F,
    dispatch: Arc<OnceLock<tracing::dispatcher::WeakDispatch>>,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        // While an event is dispatched, `dispatcher::get_default` answers with the no-op
        // dispatcher; the span's context is read through the one kept at installation.
        let ids = enabled()
            .then(|| ctx.lookup_current())
            .flatten()
            .zip(
                self.dispatch
                    .get()
                    .and_then(tracing::dispatcher::WeakDispatch::upgrade),
            )
            .and_then(|(span, dispatch)| {
                tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)
            })
            .map(|context| context.span().span_context().clone())
            .filter(|span_context| span_context.is_valid());
        let Some(ids) = ids else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, format::Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",{rest}",
                ids.trace_id(),
                ids.span_id()
            ),
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn export_is_off_unless_an_endpoint_is_set() {
        let off = Settings::from_vars(vars(&[]), "order");
        assert!(!off.export);
        assert_eq!(off.service_name, "order");
        let on = Settings::from_vars(
            vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]),
            "order",
        );
        assert!(on.export);
        let traces_only = Settings::from_vars(
            vars(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://x/v1/traces")]),
            "order",
        );
        assert!(traces_only.export);
    }

    #[test]
    fn the_sdk_switch_and_the_none_exporter_turn_it_off() {
        for off in [
            [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"),
                ("OTEL_SDK_DISABLED", "TRUE"),
            ],
            [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ],
        ] {
            assert!(!Settings::from_vars(vars(&off), "x").export, "{off:?}");
        }
    }

    #[test]
    fn the_service_name_comes_from_the_environment_first() {
        let named = Settings::from_vars(vars(&[("OTEL_SERVICE_NAME", "order-eu")]), "order");
        assert_eq!(named.service_name, "order-eu");
    }

    #[test]
    fn the_kafka_carriers_read_the_last_value_and_write_headers() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "traceparent",
                value: Some("old"),
            })
            .insert(Header {
                key: "traceparent",
                value: Some("new"),
            });
        let read = KafkaExtractor(&headers);
        assert_eq!(read.get("traceparent"), Some("new"));
        assert_eq!(read.get("tracestate"), None);
        let mut write = KafkaInjector(OwnedHeaders::new());
        write.set("traceparent", "x".into());
        assert_eq!(KafkaExtractor(&write.0).get("traceparent"), Some("x"));
        assert_eq!(KafkaExtractor(&write.0).keys(), vec!["traceparent"]);
    }

    #[test]
    fn the_propagator_reads_a_traceparent_from_kafka_headers() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let headers = OwnedHeaders::new().insert(Header {
            key: TRACEPARENT,
            value: Some(header),
        });
        let context = TraceContextPropagator::new().extract(&KafkaExtractor(&headers));
        let span = context.span().span_context().clone();
        assert_eq!(
            span.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(span.span_id().to_string(), "00f067aa0ba902b7");
        assert!(span.is_sampled() && span.is_remote());
    }

    #[test]
    fn without_export_nothing_is_invented_or_replaced() {
        // `init` is not called here: export is off.
        assert_eq!(current_traceparent(), None);
        let row = [
            ("event_id".to_owned(), "e".to_owned()),
            (
                TRACEPARENT.to_owned(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
            ),
        ];
        let headers = kafka_headers(&row);
        assert_eq!(
            KafkaExtractor(&headers).get(TRACEPARENT),
            Some(row[1].1.as_str())
        );
        assert_eq!(
            KafkaExtractor(&headers).keys(),
            vec!["event_id", TRACEPARENT]
        );
    }

    /// A log writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_span_continues_a_kept_context_and_passes_it_on_in_logs_headers_and_events() {
        use opentelemetry_sdk::trace::InMemorySpanExporter;
        const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        ENABLED.store(true, Ordering::Relaxed);
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let logs = Buffer::default();
        let writer = logs.clone();
        let installed = Arc::new(OnceLock::new());
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .event_format(WithTraceIds {
                        inner: format::format().json().with_current_span(false),
                        dispatch: installed.clone(),
                    })
                    .with_writer(move || writer.clone()),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let dispatch = tracing::Dispatch::new(subscriber);
        installed.set(dispatch.downgrade()).unwrap();
        let (traceparent, headers) = tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("work", otel.name = "charge");
            set_parent(&span, Some(PARENT));
            let _entered = span.enter();
            tracing::info!("charged");
            let row = [(TRACEPARENT.to_owned(), PARENT.to_owned())];
            (current_traceparent(), kafka_headers(&row))
        });
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert_eq!(span.name, "charge");
        assert_eq!(
            span.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(span.parent_span_id.to_string(), "00f067aa0ba902b7");
        let own = format!(
            "00-{}-{}-01",
            span.span_context.trace_id(),
            span.span_context.span_id()
        );
        // Events written in the span, and messages sent in it, name the span itself.
        assert_eq!(traceparent.as_deref(), Some(own.as_str()));
        assert_eq!(
            KafkaExtractor(&headers).get(TRACEPARENT),
            Some(own.as_str())
        );
        assert_eq!(KafkaExtractor(&headers).keys(), vec![TRACEPARENT]);
        // Its log lines join on the same ids.
        let line = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let json: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(json["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(json["span_id"], span.span_context.span_id().to_string());
        assert_eq!(json["fields"]["message"], "charged");
    }
}
