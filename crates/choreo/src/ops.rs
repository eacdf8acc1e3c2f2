//! The operations endpoint every service serves: `/metrics` (Prometheus text), `/healthz` (the
//! process answers) and `/readyz` (its database answers and each consumer has joined its group).
//! Bind it to port 0 in tests and read the bound address from the listener.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::consumer::ConsumerStats;
use crate::metrics::Metrics;

/// What `/readyz` checks.
#[derive(Clone, Default)]
pub struct Readiness {
    pub database: Option<PgPool>,
    pub consumers: Vec<Arc<ConsumerStats>>,
}

#[derive(Clone)]
struct Ops {
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

/// The router, for services that mount it beside their own routes.
pub fn router(metrics: Arc<Metrics>, readiness: Readiness) -> Router {
    metrics_router(metrics.clone()).merge(probes(metrics, readiness))
}

/// `/metrics` alone, for a process that serves it apart from its public port (the gateway).
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(Ops {
            metrics,
            readiness: Readiness::default(),
        })
}

/// `/healthz` and `/readyz` alone (the probes), without `/metrics`.
pub fn probes(metrics: Arc<Metrics>, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Ops { metrics, readiness })
}

/// Serves [`router`] on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, readiness))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn render_metrics(
    State(ops): State<Ops>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        ops.metrics.render(),
    )
}

async fn ready(State(ops): State<Ops>) -> (StatusCode, String) {
    if let Some(pool) = &ops.readiness.database {
        let ping = tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query_scalar!("select 1 as ping").fetch_one(pool),
        )
        .await;
        if !matches!(ping, Ok(Ok(_))) {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "database unreachable\n".into(),
            );
        }
    }
    if let Some(waiting) = ops.readiness.consumers.iter().position(|c| !c.is_member()) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("consumer {waiting} is not a member of its group (joining, or lost it)\n"),
        );
    }
    (StatusCode::OK, "ready\n".into())
}
