//! The shop's HTTP gateway, the only public entry: it authenticates clients (bearer JWTs),
//! rate-limits them, validates what they send, and forwards to the order, payment and shipping
//! services, each behind a timeout and a circuit breaker. It sheds new orders with 503 while the
//! shop is saturated ([`shed`]). It owns no shop state; its own database holds only the
//! idempotency keys of `POST /orders`, pruned after their retention ([`idempotency`]).
//!
//! [`Application::build`] binds the listener (port 0 in tests) and [`Application::run_until`]
//! serves, with the background loops (the saga-backlog poll, the idempotency pruner), until the
//! shutdown token is cancelled. `main.rs` only reads the config and calls them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::{get, post};
use axum::{middleware, Router};
use choreo::metrics::Metrics;
use choreo::ops::Readiness;
use choreo::resilience::BreakerConfig;
use secrecy::ExposeSecret;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod idempotency;
pub mod json;
pub mod limit;
pub mod observe;
pub mod openapi;
pub mod routes;
pub mod shed;
pub mod upstream;

pub use config::Config;

use auth::JwtKeys;
use choreo::prune::Pruner;
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
    pub fn new(config: &Config, pool: PgPool, metrics: &Metrics) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.upstream_timeout())
            .build()
            .context("build the HTTP client")?;
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
            keys: Arc::new(JwtKeys::new(&config.jwt_secret)),
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

/// The whole HTTP surface: the public API (rate-limited), `/openapi.json`, and the operations
/// endpoints (`/metrics`, `/healthz`, `/readyz`), with request ids and per-request spans.
pub fn router(state: AppState, metrics: Arc<Metrics>, readiness: Readiness) -> Router {
    let http_metrics = HttpMetrics::register(&metrics).expect("gateway metric names are unique");
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
        .merge(choreo::ops::router(metrics, readiness))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(observe::request_span))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The gateway, bound and ready to serve.
pub struct Application {
    listener: TcpListener,
    router: Router,
    port: u16,
    pruner: Pruner,
    sagas: SagaWatch,
}

impl Application {
    /// Connects to the database, applies the migrations, builds the router and binds the
    /// listener on `config.http_addr` (port 0 picks a free one).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let url = config.database_url()?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url.expose_secret())
            .await
            .context("connect to the gateway's database")?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .context("apply the gateway's migrations")?;
        let metrics = Arc::new(Metrics::new("gateway"));
        let state = AppState::new(&config, pool.clone(), &metrics)?;
        let pruner = idempotency::pruner(pool.clone(), config.idempotency_retention, &metrics)
            .context("register the idempotency pruner's metrics")?;
        let sagas = SagaWatch {
            admission: state.admission.clone(),
            client: reqwest::Client::new(),
            order_url: config.order_url.clone(),
            timeout: config.upstream_timeout(),
        };
        let readiness = Readiness {
            database: Some(pool),
            consumers: vec![],
        };
        let listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("bind {}", config.http_addr))?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            listener,
            router: router(state, metrics, readiness),
            port,
            pruner,
            sagas,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves, and runs the background loops, until `shutdown` is cancelled; then lets
    /// requests in hand finish and waits for the loops to stop.
    pub async fn run_until(self, shutdown: CancellationToken) -> std::io::Result<()> {
        tracing::info!(port = self.port, "gateway listening");
        let background = shutdown.child_token();
        let mut loops = tokio::task::JoinSet::new();
        loops.spawn(self.sagas.run(background.clone()));
        let pruner = self.pruner;
        let token = background.clone();
        loops.spawn(async move {
            let _ = pruner.run(token).await;
        });
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
        background.cancel();
        while loops.join_next().await.is_some() {}
        served
    }
}
