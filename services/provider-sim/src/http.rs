//! The HTTP edge: routes, the shared state behind a mutex, latency and injected faults, the
//! clock of pending charges; every handler's error is a problem (RFC 9457, see
//! [`choreo::problem`]). The decisions are in [`crate::decide`], the bookkeeping in
//! [`crate::ledger`], the run-time faults in [`crate::faults`].
//!
//! Every `/v1` call is worked on in a task of its own, so a call that the client gave up on
//! (its timeout passed while the call waited out an injected latency) is still done, as a
//! processor that received a request does it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use choreo::problem::Problem;
use choreo::service::auth::{guard, Credentials};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::decide::{decide, Decision, Rules};
use crate::faults::Faults;
use crate::ledger::{
    Charge, ChargeAnswer, ChargePage, Ledger, LedgerError, NewCharge, RefundAnswer, Stats,
};
use crate::request::{ChargeRequest, RefundRequest};
use crate::rng::Rng;

/// The most charges one `GET /v1/charges` page holds.
pub const MAX_PAGE: usize = 1_000;

/// What the handlers share: the configuration, the faults in force and the books.
#[derive(Clone)]
pub struct AppState {
    config: Arc<Config>,
    rules: Arc<Rules>,
    books: Arc<Mutex<Books>>,
    faults: Arc<Mutex<Faults>>,
    shutdown: CancellationToken,
}

struct Books {
    ledger: Ledger,
    rng: Rng,
}

/// Whether a call's answer is held back by the `answer_after_ms` fault (charges only: a
/// lookup must still be able to tell what happened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Late,
    OnTime,
}

impl AppState {
    /// Fresh, empty books and the configured faults; answers still waiting out their latency are cut short
    /// with a 503 when `shutdown` is cancelled.
    pub fn new(config: Config, shutdown: CancellationToken) -> Self {
        let rng = config.seed.map_or_else(Rng::from_entropy, Rng::new);
        let faults = config.faults();
        Self {
            rules: Arc::new(config.rules()),
            config: Arc::new(config),
            books: Arc::new(Mutex::new(Books {
                ledger: Ledger::default(),
                rng,
            })),
            faults: Arc::new(Mutex::new(faults)),
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

    fn faults(&self) -> Faults {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
        tracing::info!(?faults, "faults set");
    }

    /// Runs one `/v1` call under the faults in force: waits their latency, fails at their rate,
    /// else does `work` on the books; all in a task of its own, so a client that gives up does
    /// not stop it. Then waits the configured latency (and a late answer's delay) and answers.
    async fn call<T: Send + 'static>(
        &self,
        answer: Answer,
        work: impl FnOnce(&AppState, &mut Books) -> Result<T, Problem> + Send + 'static,
    ) -> Result<T, Problem> {
        let faults = self.faults();
        let late = match (answer, faults.answer_after_ms) {
            (Answer::Late, Some(ms)) => Duration::from_millis(ms),
            _ => Duration::ZERO,
        };
        let app = self.clone();
        let task = tokio::spawn(async move {
            if !faults.latency().is_zero() {
                tokio::time::sleep(faults.latency()).await;
            }
            let mut books = app.books();
            let delay = app.config.latency(books.rng.next_f64());
            if faults.failure_rate > 0.0 && faults.fails(books.rng.next_f64()) {
                books.ledger.record_failure();
                return (Err(unavailable()), delay);
            }
            let done = work(&app, &mut books);
            if done.is_ok() && !late.is_zero() {
                books.ledger.record_late_answer();
            }
            (done, delay)
        });
        let (done, delay) = tokio::select! {
            joined = task => joined.map_err(|_| unavailable())?,
            () = self.shutdown.cancelled() => return Err(unavailable()),
        };
        self.wait(delay + late).await?;
        done
    }

    /// Decides and records a charge, or answers the current state of the charge made under its
    /// idempotency key.
    fn charge(&self, books: &mut Books, req: &ChargeRequest) -> Result<ChargeAnswer, Problem> {
        let draw = books.rng.next_f64();
        let new = match decide(&self.rules, req, draw) {
            Decision::Unavailable => {
                books.ledger.record_failure();
                return Err(unavailable());
            }
            Decision::Captured => NewCharge::Captured,
            Decision::Declined { code } => NewCharge::Declined { code },
            Decision::Pending => NewCharge::Pending {
                until: Instant::now() + self.config.pending_for(),
            },
        };
        match books.ledger.replay_charge(req) {
            Some(current) => current.map_err(Problem::from),
            None => Ok(books.ledger.record_charge(req, new)),
        }
    }

    /// Waits out the simulated latency, or less when shutting down.
    async fn wait(&self, delay: Duration) -> Result<(), Problem> {
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            () = self.shutdown.cancelled() => Err(unavailable()),
        }
    }
}

/// The simulator's routes; `/admin/faults` takes the operator token when one is configured.
/// Each request is a server span continuing the caller's trace (the payment worker's call).
pub fn router(state: AppState) -> Router {
    let mut admin = Router::new().route(
        "/admin/faults",
        get(show_faults).put(put_faults).delete(clear_faults),
    );
    if let Some(token) = &state.config.operator_token {
        let credentials = Arc::new(Credentials::operator(token.clone()));
        admin = guard(admin, credentials);
    }
    Router::new()
        .route("/v1/charges", post(create_charge).get(list_charges))
        .route("/v1/charges/void", post(void_charge))
        .route("/v1/charges/{id}", get(show_charge))
        .route("/v1/refunds", post(create_refund))
        .merge(admin)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/stats", get(stats))
        .route_layer(axum::middleware::from_fn(choreo::telemetry::serve_http))
        .with_state(state)
}

async fn create_charge(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<ChargeAnswer>, Problem> {
    let req = ChargeRequest::parse(&body).map_err(Problem::bad_request)?;
    let order_id = req.order_id.clone();
    let answer = app
        .call(Answer::Late, move |app, books| app.charge(books, &req))
        .await;
    match &answer {
        Ok(a) => {
            tracing::info!(%order_id, charge_id = %a.charge_id, status = ?a.status, "charge")
        }
        Err(e) => tracing::info!(%order_id, error = %e, "charge refused"),
    }
    answer.map(Json)
}

/// `POST /v1/charges/void`: the charge request's body; see [`Ledger::void`].
async fn void_charge(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<ChargeAnswer>, Problem> {
    let req = ChargeRequest::parse(&body).map_err(Problem::bad_request)?;
    let key = req.idempotency_key.clone();
    let answer = app
        .call(Answer::OnTime, move |_, books| {
            books.ledger.void(&req).map_err(Problem::from)
        })
        .await;
    match &answer {
        Ok(a) => {
            tracing::info!(idempotency_key = %key, charge_id = %a.charge_id, status = ?a.status, "void")
        }
        Err(e) => tracing::info!(idempotency_key = %key, error = %e, "void refused"),
    }
    answer.map(Json)
}

async fn create_refund(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<RefundAnswer>, Problem> {
    let req = RefundRequest::parse(&body).map_err(Problem::bad_request)?;
    let charge_id = req.charge_id.clone();
    let answer = app
        .call(Answer::OnTime, move |_, books| {
            books.ledger.refund(&req).map_err(Problem::from)
        })
        .await;
    match &answer {
        Ok(a) => tracing::info!(%charge_id, refund_id = %a.refund_id, "refund"),
        Err(e) => tracing::info!(%charge_id, error = %e, "refund refused"),
    }
    answer.map(Json)
}

/// `GET /v1/charges`: the charge made under `idempotency_key` (a page of one, or of none), or
/// the charges made after the `after`-th, `limit` at a time (default 100, at most 1000).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    idempotency_key: Option<String>,
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

async fn list_charges(
    State(app): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ChargePage>, Problem> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}, got {limit}"
        )));
    }
    let page = app
        .call(Answer::OnTime, move |_, books| {
            Ok(match &query.idempotency_key {
                Some(key) => ChargePage {
                    charges: books
                        .ledger
                        .charge_by_key(key)
                        .cloned()
                        .into_iter()
                        .collect(),
                    next_after: None,
                },
                None => books.ledger.page(query.after, limit),
            })
        })
        .await?;
    Ok(Json(page))
}

async fn show_charge(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Charge>, Problem> {
    let books = app.books();
    let charge = books.ledger.charge(&id).cloned();
    charge
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no charge {id}")))
}

async fn show_faults(State(app): State<AppState>) -> Json<Faults> {
    Json(app.faults())
}

async fn put_faults(State(app): State<AppState>, body: Bytes) -> Result<Json<Faults>, Problem> {
    let faults = Faults::parse(&body).map_err(Problem::bad_request)?;
    app.set_faults(faults);
    Ok(Json(app.faults()))
}

async fn clear_faults(State(app): State<AppState>) -> Json<Faults> {
    app.set_faults(Faults::default());
    Json(app.faults())
}

async fn stats(State(app): State<AppState>) -> Json<Stats> {
    Json(app.books().ledger.stats().clone())
}

/// The simulator cannot answer now (an injected outage, or it is stopping): 503.
fn unavailable() -> Problem {
    Problem::unavailable("provider unavailable")
}

impl From<LedgerError> for Problem {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::NotFound(m) => Problem::not_found(m),
            LedgerError::Conflict(m) => Problem::conflict(m),
        }
    }
}
