//! The frame every process of the backbone shares, [`Frame`]: the pool with its migrations, the
//! metrics, the bound HTTP listener with the operations endpoints, the background parts, and
//! the run that stops them all within [`STOP_DEADLINE`]. [`super::Service`] adds the events
//! (codec, outbox, relay, consumers) to it; a process without events uses it alone.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{ServiceError, STOP_DEADLINE};
use crate::consumer::ConsumerStats;
use crate::metrics::Metrics;
use crate::ops::Readiness;

/// Exits the process if `stopped` is still false `deadline` after the call: a thread of its own,
/// so a runtime whose workers are all blocked cannot hold it up.
fn exit_unless_stopped_within(deadline: Duration, stopped: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        if !stopped.load(Ordering::SeqCst) {
            tracing::error!(
                deadline_secs = deadline.as_secs(),
                "parts still running after the stop deadline; exiting without them"
            );
            std::process::exit(70);
        }
    });
}

/// Sets its flag when dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

type Task = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type Starter = Box<dyn FnOnce(CancellationToken) -> Task + Send>;

/// What a frame needs to start: see [`Frame::connect`].
#[derive(Debug, Clone)]
pub struct FrameSettings {
    /// The process's name: its metrics label.
    pub name: String,
    pub database_url: String,
    /// Where the HTTP listener binds (`127.0.0.1:0` for any free port).
    pub http_addr: SocketAddr,
    /// The most connections in the pool.
    pub max_connections: u32,
}

/// The frame of a process that serves HTTP over its own database: the pool (its migrations
/// applied), the metrics, the bound listener and the background parts; see the module docs.
pub struct Frame {
    pub pool: PgPool,
    pub metrics: Arc<Metrics>,
    name: String,
    listener: tokio::net::TcpListener,
    parts: Vec<(String, Starter)>,
    /// What `/readyz` waits for besides the database.
    pub(super) consumers: Vec<Arc<ConsumerStats>>,
    /// Whether the caller took the operations endpoints to serve them in its own routes.
    operations_taken: bool,
}

impl Frame {
    /// Connects to the database, applies `migrator` (the process's own migrations, not the
    /// backbone's; as the role of `DATABASE_MIGRATION_URL` when it is set beside the
    /// `DATABASE_URL` in use, see [`crate::db::migration_url`]) and binds the HTTP listener.
    pub async fn connect(
        settings: FrameSettings,
        migrator: &sqlx::migrate::Migrator,
    ) -> Result<Self, ServiceError> {
        Self::open(settings, false, migrator).await
    }

    /// The pool, with the backbone's migrations first when `backbone`, then `migrator`'s.
    pub(super) async fn open(
        settings: FrameSettings,
        backbone: bool,
        migrator: &sqlx::migrate::Migrator,
    ) -> Result<Self, ServiceError> {
        let options = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10));
        // Migrated as the schema's owner when DATABASE_MIGRATION_URL is set, run as DATABASE_URL.
        let pool =
            crate::db::connect_migrated(&settings.database_url, options, |pool| async move {
                if backbone {
                    crate::db::migrate(&pool).await?;
                }
                migrator.run(&pool).await?;
                Ok(())
            })
            .await?;
        let metrics = Arc::new(Metrics::new(&settings.name));
        let listener = tokio::net::TcpListener::bind(settings.http_addr)
            .await
            .map_err(|source| ServiceError::Listen {
                addr: settings.http_addr,
                source,
            })?;
        Ok(Self {
            pool,
            metrics,
            name: settings.name,
            listener,
            parts: Vec::new(),
            consumers: Vec::new(),
            operations_taken: false,
        })
    }

    /// The address the HTTP listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener")
    }

    /// The operations endpoints (`/metrics`, `/healthz`, `/readyz`), for a caller that wraps
    /// them in layers of its own (request ids, traces): [`Frame::run`] then serves the routes
    /// it is given as they are instead of adding these.
    pub fn operations(&mut self) -> Router {
        self.operations_taken = true;
        crate::ops::router(self.metrics.clone(), self.readiness())
    }

    /// The probes (`/healthz`, `/readyz`) without `/metrics`, for a caller that serves its
    /// metrics on a listener of its own ([`crate::ops::metrics_router`]): [`Frame::run`] then
    /// adds no operations endpoints either.
    pub fn probes(&mut self) -> Router {
        self.operations_taken = true;
        crate::ops::probes(self.metrics.clone(), self.readiness())
    }

    fn readiness(&self) -> Readiness {
        Readiness {
            database: Some(self.pool.clone()),
            consumers: self.consumers.clone(),
        }
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
        let starter: Starter = Box::new(move |token| {
            let future = start(token);
            Box::pin(async move { future.await.map_err(|e| e.to_string()) })
        });
        self.parts.push((part.to_owned(), starter));
    }

    /// Runs every part and serves `routes` (with the operations endpoints, and each request's
    /// peer address as `ConnectInfo<SocketAddr>`) until `shutdown` is cancelled or a part
    /// fails; then stops the others and waits for them, at most [`STOP_DEADLINE`].
    pub async fn run(
        self,
        routes: Router,
        shutdown: CancellationToken,
    ) -> Result<(), ServiceError> {
        let stop = shutdown.child_token();
        let mut parts: JoinSet<(String, Result<(), String>)> = JoinSet::new();
        self.run_parts(routes, stop, &mut parts).await
    }

    /// [`Frame::run`] with `parts` already started under `stop`.
    pub(super) async fn run_parts(
        mut self,
        routes: Router,
        stop: CancellationToken,
        parts: &mut JoinSet<(String, Result<(), String>)>,
    ) -> Result<(), ServiceError> {
        for (part, start) in std::mem::take(&mut self.parts) {
            let task = start(stop.clone());
            parts.spawn(async move { (part, task.await) });
        }
        let app = if self.operations_taken {
            routes
        } else {
            routes.merge(crate::ops::router(self.metrics.clone(), self.readiness()))
        };
        let token = stop.clone();
        let listener = self.listener;
        parts.spawn(async move {
            let result = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await
            .map_err(|e| e.to_string());
            ("http".to_owned(), result)
        });
        tracing::info!(service = %self.name, "running");

        let stopped = Arc::new(AtomicBool::new(false));
        // Set when `run` returns or its future is dropped (a test's runtime ending): only a run
        // still stuck in its parts is cut short.
        let _done = SetOnDrop(stopped.clone());
        let watchdog = {
            let (stop, stopped) = (stop.clone(), stopped.clone());
            tokio::spawn(async move {
                stop.cancelled().await;
                exit_unless_stopped_within(STOP_DEADLINE, stopped);
            })
        };
        let mut failure = None;
        while let Some(joined) = parts.join_next().await {
            let (part, result) = match joined {
                Ok(done) => done,
                Err(panic) => ("a task".to_owned(), Err(panic.to_string())),
            };
            match result {
                Ok(()) if stop.is_cancelled() => {}
                Ok(()) => {
                    tracing::error!(%part, "stopped on its own; stopping the service");
                    failure.get_or_insert(ServiceError::Part {
                        part,
                        detail: "stopped unexpectedly".into(),
                    });
                }
                Err(detail) => {
                    tracing::error!(%part, %detail, "failed; stopping the service");
                    failure.get_or_insert(ServiceError::Part { part, detail });
                }
            }
            stop.cancel();
        }
        self.pool.close().await;
        watchdog.abort();
        failure.map_or(Ok(()), Err)
    }
}
