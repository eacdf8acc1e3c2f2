//! The shop's HTTP gateway, the only public entry: it authenticates clients (bearer JWTs),
//! rate-limits them, validates what they send, and forwards to the order, payment and shipping
//! services, each behind a timeout and a circuit breaker. It sheds new orders with 503 while the
//! shop is saturated ([`shed`]). It owns no shop state; its own database holds only the
//! idempotency keys of `POST /orders`, pruned after their retention ([`idempotency`]).
//!
//! It is built on the backbone's frame ([`choreo::service::Frame`]) like every service: the
//! pool and its migrations, the metrics, the listener, the background loops and the bounded
//! stop are the frame's; it has no events, so no codec, outbox, relay or consumer.
//! [`Application::build`] binds the listener (port 0 in tests) and [`Application::run_until`]
//! serves, with the background loops (the saga-backlog poll, the idempotency pruner), until the
//! shutdown token is cancelled. `main.rs` only reads the config and calls them.
//!
//! `/metrics` is served on a listener of its own (`METRICS_ADDR`, loopback by default), not on
//! the public port; `/healthz` and `/readyz` stay on the public port for the probes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::{get, post};
use axum::{middleware, Router};
use choreo::metrics::Metrics;
use choreo::resilience::BreakerConfig;
use choreo::service::{Frame, FrameSettings, ServiceError};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub mod auth;
pub mod config;
pub mod error;
pub mod idempotency;
pub mod json;
pub mod limit;
pub mod observe;
pub mod openapi;
pub mod routes;
pub mod shed;
pub mod upstream;

pub use config::{Config, Secrets};

use auth::JwtKeys;
use idempotency::Store;
use limit::RateLimiter;
use observe::HttpMetrics;
use shed::{Admission, SagaWatch, ShedMetrics};
use upstream::Upstream;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub keys: Arc<JwtKeys>,
    pub limiter: Arc<RateLimiter>,
    pub idempotency: Store,
    pub orders: Arc<Upstream>,
    pub payments: Arc<Upstream>,
    pub shipments: Arc<Upstream>,
    /// Whether a new order goes in (load shedding).
    pub admission: Arc<Admission>,
}

impl AppState {
    /// The shared state; registers the shedding metrics in `metrics`.
    pub fn new(
        config: &Config,
        secrets: &Secrets,
        pool: PgPool,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let client = upstream::client(&secrets.service_token, config.upstream_timeout())?;
        let timeout = config.upstream_timeout();
        let upstream = |service, url: &str| {
            let breaker = BreakerConfig {
                window: config.breaker_window,
                failure_threshold: config.breaker_failures,
                open_for: config.breaker_open_for(),
                ..BreakerConfig::default()
            };
            Arc::new(Upstream::new(
                service,
                url,
                client.clone(),
                timeout,
                breaker,
            ))
        };
        Ok(Self {
            keys: Arc::new(JwtKeys::new(&secrets.jwt_secret, config.token_policy())),
            limiter: Arc::new(RateLimiter::new(config.rate_per_sec, config.rate_burst)),
            // A holder that outlives the upstream timeout by this much has died.
            idempotency: Store::new(pool, timeout + Duration::from_secs(5)),
            orders: upstream("order", &config.order_url),
            payments: upstream("payment", &config.payment_url),
            shipments: upstream("shipping", &config.shipping_url),
            admission: Arc::new(Admission::new(
                config.max_in_flight,
                config.max_open_sagas,
                ShedMetrics::register(metrics).context("register the shedding metrics")?,
            )),
        })
    }
}

/// The whole public HTTP surface: the API (rate-limited), `/openapi.json`, and the probes
/// (`/healthz`, `/readyz`, the frame's `probes`; `/metrics` is served apart), with request ids
/// and per-request spans.
pub fn router(state: AppState, metrics: &Metrics, operations: Router) -> Router {
    let http_metrics = HttpMetrics::register(metrics).expect("gateway metric names are unique");
    let api = Router::new()
        .route(
            "/orders",
            post(routes::orders::place)
                .route_layer(middleware::from_fn_with_state(state.clone(), shed::shed)),
        )
        .route("/orders/{id}", get(routes::orders::get))
        .route("/orders/{id}/cancel", post(routes::orders::cancel))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit::limit))
        .with_state(state);
    Router::new()
        .merge(api)
        .route("/openapi.json", get(openapi::serve))
        .route_layer(middleware::from_fn_with_state(
            http_metrics,
            observe::observe,
        ))
        .merge(operations)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(observe::request_span))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The gateway, bound and ready to serve.
pub struct Application {
    frame: Frame,
    router: Router,
    metrics_port: u16,
}

impl Application {
    /// Connects to the database, applies the migrations, builds the router, binds the listeners
    /// on `config.http_addr` and `config.metrics_addr` (port 0 picks a free one) and adds the
    /// background loops.
    pub async fn build(config: Config, secrets: Secrets) -> anyhow::Result<Self> {
        let settings = FrameSettings {
            name: "gateway".to_owned(),
            database_url: config.database_url()?.expose_secret().to_owned(),
            http_addr: config.http_addr,
            max_connections: 16,
        };
        let mut frame = Frame::connect(settings, &sqlx::migrate!("./migrations"))
            .await
            .context("connect to the gateway's database")?;
        let state = AppState::new(&config, &secrets, frame.pool.clone(), &frame.metrics)?;
        let pruner = idempotency::pruner(
            frame.pool.clone(),
            config.idempotency_retention,
            &frame.metrics,
        )
        .context("register the idempotency pruner's metrics")?;
        let sagas = SagaWatch {
            admission: state.admission.clone(),
            client: state.orders.client().clone(),
            order_url: config.order_url.clone(),
            timeout: config.upstream_timeout(),
        };
        frame.spawn("saga-watch", move |token| async move {
            sagas.run(token).await;
            Ok::<(), std::convert::Infallible>(())
        });
        frame.spawn("idempotency-pruner", move |token| pruner.run(token));
        let metrics_listener = tokio::net::TcpListener::bind(config.metrics_addr)
            .await
            .with_context(|| format!("listen for /metrics on {}", config.metrics_addr))?;
        let metrics_port = metrics_listener.local_addr()?.port();
        let metrics_routes = choreo::ops::metrics_router(frame.metrics.clone());
        frame.spawn("metrics-http", move |token| async move {
            axum::serve(metrics_listener, metrics_routes)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
        });
        // The probes on the public port, `/metrics` on its own listener.
        let probes = frame.probes();
        let router = router(state, &frame.metrics, probes);
        Ok(Self {
            frame,
            router,
            metrics_port,
        })
    }

    /// The public port.
    pub fn port(&self) -> u16 {
        self.frame.local_addr().port()
    }

    /// The port `/metrics` is served on.
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    /// Serves, and runs the background loops, until `shutdown` is cancelled; then lets
    /// requests in hand finish and waits for the loops to stop.
    pub async fn run_until(self, shutdown: CancellationToken) -> Result<(), ServiceError> {
        tracing::info!(port = self.port(), "gateway listening");
        self.frame.run(self.router, shutdown).await
    }
}
