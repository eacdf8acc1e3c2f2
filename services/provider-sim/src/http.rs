//! The HTTP edge: routes, the shared state behind a mutex, latency, the clock of pending
//! charges, and the one error type every handler answers with (`{"error": "..."}`). The
//! decisions are in [`crate::decide`] and the bookkeeping in [`crate::ledger`].

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::decide::{decide, Decision, Rules};
use crate::ledger::{Charge, ChargeAnswer, Ledger, LedgerError, NewCharge, RefundAnswer, Stats};
use crate::request::{ChargeRequest, RefundRequest};
use crate::rng::Rng;

/// What the handlers share: the configuration and the books.
#[derive(Clone)]
pub struct AppState {
    config: Arc<Config>,
    rules: Arc<Rules>,
    books: Arc<Mutex<Books>>,
    shutdown: CancellationToken,
}

struct Books {
    ledger: Ledger,
    rng: Rng,
}

impl AppState {
    /// Fresh, empty books; answers still waiting out their latency are cut short with a 503
    /// when `shutdown` is cancelled.
    pub fn new(config: Config, shutdown: CancellationToken) -> Self {
        let rng = config.seed.map_or_else(Rng::from_entropy, Rng::new);
        Self {
            rules: Arc::new(config.rules()),
            config: Arc::new(config),
            books: Arc::new(Mutex::new(Books {
                ledger: Ledger::default(),
                rng,
            })),
            shutdown,
        }
    }

    /// The books, locked, with the pending charges whose time is over declined.
    fn books(&self) -> MutexGuard<'_, Books> {
        // Every ledger operation completes before it returns (no await inside), so a poisoned
        // lock holds consistent books.
        let mut books = self.books.lock().unwrap_or_else(|p| p.into_inner());
        books.ledger.expire(Instant::now());
        books
    }

    /// Decides and records a charge, or answers the current state of the charge made under its
    /// idempotency key; returns the answer and how long to wait before giving it.
    fn charge(&self, req: &ChargeRequest) -> (Result<ChargeAnswer, ApiError>, Duration) {
        let mut books = self.books();
        let draw = books.rng.next_f64();
        let delay = self.config.latency(books.rng.next_f64());
        let new = match decide(&self.rules, req, draw) {
            Decision::Unavailable => {
                books.ledger.record_failure();
                return (Err(ApiError::Unavailable), delay);
            }
            Decision::Captured => NewCharge::Captured,
            Decision::Declined { code } => NewCharge::Declined { code },
            Decision::Pending => NewCharge::Pending {
                until: Instant::now() + self.config.pending_for(),
            },
        };
        let answer = match books.ledger.replay_charge(req) {
            Some(current) => current.map_err(ApiError::from),
            None => Ok(books.ledger.record_charge(req, new)),
        };
        (answer, delay)
    }

    fn refund(&self, req: &RefundRequest) -> (Result<RefundAnswer, ApiError>, Duration) {
        let mut books = self.books();
        let delay = self.config.latency(books.rng.next_f64());
        (books.ledger.refund(req).map_err(ApiError::from), delay)
    }

    /// Waits out the simulated latency, or less when shutting down.
    async fn wait(&self, delay: Duration) -> Result<(), ApiError> {
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            () = self.shutdown.cancelled() => Err(ApiError::Unavailable),
        }
    }
}

/// The simulator's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/charges", post(create_charge))
        .route("/v1/charges/{id}", get(show_charge))
        .route("/v1/refunds", post(create_refund))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/stats", get(stats))
        .with_state(state)
}

async fn create_charge(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<ChargeAnswer>, ApiError> {
    let req = ChargeRequest::parse(&body).map_err(ApiError::BadRequest)?;
    let (answer, delay) = app.charge(&req);
    match &answer {
        Ok(a) => {
            tracing::info!(order_id = %req.order_id, charge_id = %a.charge_id, status = ?a.status, "charge")
        }
        Err(e) => tracing::info!(order_id = %req.order_id, error = %e, "charge refused"),
    }
    app.wait(delay).await?;
    answer.map(Json)
}

async fn create_refund(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<RefundAnswer>, ApiError> {
    let req = RefundRequest::parse(&body).map_err(ApiError::BadRequest)?;
    let (answer, delay) = app.refund(&req);
    match &answer {
        Ok(a) => tracing::info!(charge_id = %req.charge_id, refund_id = %a.refund_id, "refund"),
        Err(e) => tracing::info!(charge_id = %req.charge_id, error = %e, "refund refused"),
    }
    app.wait(delay).await?;
    answer.map(Json)
}

async fn show_charge(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Charge>, ApiError> {
    let books = app.books();
    let charge = books.ledger.charge(&id).cloned();
    charge
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no charge {id}")))
}

async fn stats(State(app): State<AppState>) -> Json<Stats> {
    Json(app.books().ledger.stats().clone())
}

/// Every error the API answers with, as `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("provider unavailable")]
    Unavailable,
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::NotFound(m) => ApiError::NotFound(m),
            LedgerError::Conflict(m) => ApiError::Conflict(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}
