//! The frame of one service process: its database (pool and migrations, the backbone's and its
//! own), the codec and outbox, the relay, its consumers (with the pruner that keeps their inbox
//! small, [`crate::prune`]), any background loops it needs, and one HTTP listener serving its
//! routes beside `/metrics`, `/healthz` and `/readyz`. The service's own routes take a bearer
//! credential ([`auth`]: the service or the operator token); the operations endpoints stay open.
//!
//! A service's `main` reads [`ServiceSettings`], calls [`Service::connect`], registers its
//! consumer ([`Service::consume`]) and loops ([`Service::spawn`]), adds its routes
//! ([`Service::serving`], a [`Ready`] service), then runs until
//! the shutdown token is cancelled or a part fails; either way every part is stopped and
//! awaited, so the batch in hand is committed before the process exits. The listener is bound
//! in `connect`, so a test can start a service on port 0 and read [`Service::local_addr`].
//!
//! A process that serves HTTP over its own database but neither publishes nor consumes events
//! (an edge such as an API gateway) uses the [`Frame`] alone: the pool and its migrations, the
//! metrics, the listener with the operations endpoints, background loops and the same bounded
//! stop; [`Service`] is a frame with the codec, outbox, relay and consumers added.
//!
//! Stopping is bounded: every part gets the consumers' grace period to finish its work in hand,
//! and a process whose parts are still not done [`STOP_DEADLINE`] after the stop began (a part
//! stuck on a broker or database that does not answer) exits on its own with status 70, so
//! that SIGTERM always ends the process in time for its supervisor.

pub mod auth;
mod frame;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use frame::{Frame, FrameSettings};

use crate::avro::{Codec, CodecError};
use crate::consumer::{Consumer, ConsumerConfig, ConsumerStats, Handler};
use crate::doorbell::Doorbell;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::prune::{PruneConfig, Pruner};
use crate::relay::{Relay, RelayConfig};
use crate::{ConfigError, KafkaConfig, RegistryConfig};

/// How long a stopping service may take before the process exits without waiting further: the
/// consumers' default grace period (20 s) and ten seconds more.
pub const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// What every service needs to start, from flags or the environment.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// The service's name: its consumer group, its relay's transactional id, its metrics label.
    pub name: String,
    pub database_url: String,
    /// Where the HTTP listener binds (`127.0.0.1:0` for any free port).
    pub http_addr: SocketAddr,
    pub kafka: KafkaConfig,
    pub registry: RegistryConfig,
    /// The most connections in the pool.
    pub max_connections: u32,
    /// How the inbox is pruned when the service consumes (`CHOREO_INBOX_RETENTION`, default 8
    /// days, at least an hour; see [`crate::prune`] for why it must outlast any redelivery).
    pub inbox_pruning: PruneConfig,
    /// The tokens the service's routes accept (`SERVICE_TOKEN[_FILE]`, `OPERATOR_TOKEN[_FILE]`,
    /// both required; see [`auth`]).
    pub credentials: Arc<auth::Credentials>,
}

impl ServiceSettings {
    /// Settings for `name` from the environment: `DATABASE_URL`, or else `DATABASE_URL_<NAME>`
    /// (which `scripts/stack` writes to `.stack/env`), `KAFKA_BROKERS`, `SCHEMA_REGISTRY_URL`,
    /// `CHOREO_INBOX_RETENTION`, and the tokens of [`auth::Credentials::from_env`].
    pub fn from_env(name: &str, http_addr: SocketAddr) -> Result<Self, ConfigError> {
        let per_service = format!("DATABASE_URL_{}", name.to_uppercase());
        let database_url = std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| !url.trim().is_empty())
            .or_else(|| std::env::var(&per_service).ok())
            .ok_or(ConfigError::Missing {
                var: "DATABASE_URL",
            })?;
        Ok(Self {
            name: name.to_owned(),
            database_url,
            http_addr,
            kafka: KafkaConfig::from_env()?,
            registry: RegistryConfig::from_env()?,
            max_connections: 16,
            inbox_pruning: PruneConfig::inbox_from_env()?,
            credentials: Arc::new(auth::Credentials::from_env()?),
        })
    }
}

/// Why a service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("registry: {0}")]
    Codec(#[from] CodecError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{part} failed: {detail}")]
    Part { part: String, detail: String },
}

/// A service being assembled; see the module docs.
pub struct Service {
    pub settings: ServiceSettings,
    pub pool: PgPool,
    pub codec: Arc<Codec>,
    pub outbox: Outbox,
    pub metrics: Arc<Metrics>,
    frame: Frame,
    relay: bool,
    inbox_pruner: bool,
    /// Rung after every consumer batch, beside the relay's.
    after_batches: Vec<Doorbell>,
}

impl Service {
    /// Connects to the database, applies the backbone's migrations and then `migrator` (the
    /// service's own), prepares the codec and outbox, and binds the HTTP listener.
    pub async fn connect(
        settings: ServiceSettings,
        migrator: &sqlx::migrate::Migrator,
    ) -> Result<Self, ServiceError> {
        let frame = Frame::open(
            FrameSettings {
                name: settings.name.clone(),
                database_url: settings.database_url.clone(),
                http_addr: settings.http_addr,
                max_connections: settings.max_connections,
            },
            true,
            migrator,
        )
        .await?;
        let codec = Arc::new(Codec::new(&settings.registry)?);
        let outbox = Outbox::new(codec.clone(), &settings.name);
        Ok(Self {
            pool: frame.pool.clone(),
            metrics: frame.metrics.clone(),
            settings,
            codec,
            outbox,
            frame,
            relay: true,
            after_batches: Vec::new(),
            inbox_pruner: false,
        })
    }

    /// The address the HTTP listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.frame.local_addr()
    }

    /// Runs no relay in this process (e.g. when `choreo relay` runs beside it).
    pub fn without_relay(mut self) -> Self {
        self.relay = false;
        self
    }

    /// Has the consumers added after this call ring `doorbell` after each committed batch
    /// (besides the relay's): for a loop of the service's own that works on rows its handler
    /// writes.
    pub fn ring_after_batches(&mut self, doorbell: Doorbell) {
        self.after_batches.push(doorbell);
    }

    /// Adds a consumer of `topics` in the service's group applying events with `handler`.
    pub fn consume<H: Handler>(&mut self, handler: H, topics: &[&str]) -> Arc<ConsumerStats> {
        self.consume_with(handler, ConsumerConfig::new(&self.settings.name, topics))
    }

    /// [`Service::consume`] with a consumer configuration of the caller's. The first consumer
    /// also starts the inbox's pruner (one per process, whatever the number of consumers).
    pub fn consume_with<H: Handler>(
        &mut self,
        handler: H,
        config: ConsumerConfig,
    ) -> Arc<ConsumerStats> {
        let mut consumer = Consumer::new(&self.settings.kafka, self.pool.clone(), handler, config)
            .with_metrics(self.metrics.clone())
            .with_doorbell(self.outbox.doorbell().clone());
        for bell in &self.after_batches {
            consumer = consumer.with_doorbell(bell.clone());
        }
        let stats = consumer.stats();
        self.frame.consumers.push(stats.clone());
        self.spawn("consumer", move |token| async move {
            consumer.run(token).await.map_err(|e| e.to_string())
        });
        if !self.inbox_pruner {
            self.inbox_pruner = true;
            let pruner = Pruner::inbox(
                self.pool.clone(),
                self.settings.inbox_pruning,
                &self.metrics,
            );
            self.spawn("inbox-pruner", move |token| pruner.run(token));
        }
        stats
    }

    /// Adds a background loop; it must return when `token` is cancelled.
    pub fn spawn<F, E>(
        &mut self,
        part: &str,
        start: impl FnOnce(CancellationToken) -> F + Send + 'static,
    ) where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.frame.spawn(part, start);
    }

    /// Runs every part and serves `routes` (behind the [`auth::guard`], with the open
    /// operations endpoints) until `shutdown` is cancelled or a part fails; then stops the
    /// others and waits for them.
    pub async fn run(
        self,
        routes: Router,
        shutdown: CancellationToken,
    ) -> Result<(), ServiceError> {
        let routes = auth::guard(routes, self.settings.credentials.clone())
            .route_layer(axum::middleware::from_fn(crate::telemetry::serve_http));
        let stop = shutdown.child_token();
        let mut parts: JoinSet<(String, Result<(), String>)> = JoinSet::new();
        if self.relay {
            let relay = Relay::new(
                &self.settings.database_url,
                &self.settings.kafka,
                RelayConfig::new(&self.settings.name),
            )
            .with_metrics(self.metrics.clone())
            .with_doorbell(self.outbox.doorbell().clone());
            let token = stop.clone();
            parts.spawn(async move {
                let result = relay.run(token).await.map_err(|e| e.to_string());
                ("relay".to_owned(), result)
            });
        }
        {
            // Rings for a relay leading in another process go out as a NOTIFY.
            let (bell, url, token) = (
                self.outbox.doorbell().clone(),
                self.settings.database_url.clone(),
                stop.clone(),
            );
            parts.spawn(async move {
                bell.forward(&url, token).await;
                ("doorbell".to_owned(), Ok(()))
            });
        }
        self.frame.run_parts(routes, stop, &mut parts).await
    }
}

/// A service with its routes: connected, bound, every part set up, ready to [`Ready::run`].
/// What a service crate's `build` returns, so that its `main` and its tests start it alike.
pub struct Ready {
    service: Service,
    routes: Router,
}

impl Service {
    /// The service with the routes it serves beside the operations endpoints.
    pub fn serving(self, routes: Router) -> Ready {
        Ready {
            service: self,
            routes,
        }
    }
}

impl Ready {
    /// The address the HTTP listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.service.local_addr()
    }

    /// Runs until `shutdown` is cancelled or a part fails ([`Service::run`]).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServiceError> {
        self.service.run(self.routes, shutdown).await
    }
}

/// Installs the JSON log subscriber every service uses (`RUST_LOG` filters, default `info`) and
/// OpenTelemetry when the `OTEL_*` variables ask for it ([`crate::telemetry::init`]); keep the
/// guard until the process ends, so the last spans are flushed.
pub fn init_tracing(service: &str) -> crate::telemetry::Telemetry {
    crate::telemetry::init(service)
}
