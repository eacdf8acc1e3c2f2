//! What the gateway tells operators about each request: a span carrying the request id, the W3C
//! trace context that upstream calls continue, and Prometheus metrics by route and status
//! (registered in the backbone's registry, served on `/metrics`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Request as HttpRequest;
use axum::middleware::Next;
use axum::response::Response;
use choreo::metrics::Metrics;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

use crate::routes::REQUEST_ID;

/// Requests served, by route template and status, and their latency by route.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    seconds: HistogramVec,
}

impl HttpMetrics {
    /// Creates the metrics and registers them in `metrics`' registry.
    pub fn register(metrics: &Metrics) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new("gateway_http_requests_total", "HTTP requests served"),
            &["route", "status"],
        )?;
        let seconds = HistogramVec::new(
            HistogramOpts::new("gateway_http_request_seconds", "HTTP request latency"),
            &["route"],
        )?;
        metrics.registry.register(Box::new(requests.clone()))?;
        metrics.registry.register(Box::new(seconds.clone()))?;
        Ok(Self { requests, seconds })
    }
}

/// Middleware: counts and times each request under its route template (never the raw path, so
/// ids do not blow up the label space), and names the request's span by it.
pub async fn observe(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    choreo::telemetry::rename_current(&format!("{} {route}", request.method()));
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    metrics
        .seconds
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The span of one request, with the request id the request-id layer set: the root of the
/// order's trace, or a child of the client's own `traceparent`. [`observe`] names it by route.
pub fn request_span<B>(request: &HttpRequest<B>) -> tracing::Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!(
        "request",
        otel.name = %request.method(),
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        request_id,
    );
    choreo::telemetry::extract_http(&span, request.headers());
    span
}
