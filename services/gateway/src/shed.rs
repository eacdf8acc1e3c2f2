//! Load shedding of order placement: when the shop is saturated, a new order is refused at once
//! with 503 and `Retry-After` rather than queued until it times out.
//!
//! Two signals, one pure [`decide`]: a bound on placements in flight in the gateway
//! (`GATEWAY_MAX_IN_FLIGHT`), and the saga backlog, the number of orders placed but not yet
//! confirmed or cancelled, which [`SagaWatch`] reads from the order service's `GET /admission`
//! twice a second and compares with `GATEWAY_MAX_OPEN_SAGAS`. By Little's law the open sagas
//! are the rate times the saga latency, so bounding them bounds the latency once the shop runs
//! at its capacity; a count, unlike the oldest saga's age, is not tripped by a few orders that
//! wait for a deadline or a slow provider. A backlog that cannot be read sheds nothing (fail open: a broken poll must not close the shop; the order
//! service's own breaker and timeout still protect it). Reads, cancels and everything but
//! `POST /orders` are never shed here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use choreo::metrics::Metrics;
use prometheus::{Gauge, IntCounterVec, IntGauge, Opts};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::error::overloaded;
use crate::AppState;

/// How often the saga backlog is read.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// Why a new order is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// Already `GATEWAY_MAX_IN_FLIGHT` placements in hand.
    InFlight,
    /// More sagas are open than `GATEWAY_MAX_OPEN_SAGAS`.
    SagaBacklog,
}

impl Shed {
    /// The `reason` label of `gateway_shed_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Shed::InFlight => "in_flight",
            Shed::SagaBacklog => "saga_backlog",
        }
    }

    /// What the refusal's `Retry-After` says: a slot frees up within a second; a backlog takes
    /// a few seconds to drain.
    pub fn retry_after(self) -> Duration {
        match self {
            Shed::InFlight => Duration::from_secs(1),
            Shed::SagaBacklog => Duration::from_secs(2),
        }
    }
}

/// Whether a new order goes in: `slot_free` says a placement slot was free, `open_sagas` is the
/// number of open sagas when known (`None` while it cannot be read: never shed then).
pub fn decide(slot_free: bool, open_sagas: Option<u64>, max_open: u64) -> Result<(), Shed> {
    if open_sagas.is_some_and(|open| open >= max_open) {
        return Err(Shed::SagaBacklog);
    }
    if !slot_free {
        return Err(Shed::InFlight);
    }
    Ok(())
}

/// The metrics of shedding, in the backbone's registry.
#[derive(Clone)]
pub struct ShedMetrics {
    /// Orders refused, by reason.
    pub shed: IntCounterVec,
    /// Placements in flight in the gateway.
    pub in_flight: IntGauge,
    /// Open sagas, as last read.
    pub open_sagas: IntGauge,
    /// The age of the oldest open saga, as last read.
    pub oldest_open_saga_seconds: Gauge,
}

impl ShedMetrics {
    pub fn register(metrics: &Metrics) -> prometheus::Result<Self> {
        let this = Self {
            shed: IntCounterVec::new(
                Opts::new(
                    "gateway_shed_total",
                    "New orders refused with 503 to shed load",
                ),
                &["reason"],
            )?,
            in_flight: IntGauge::new("gateway_in_flight", "Order placements in flight")?,
            open_sagas: IntGauge::new(
                "gateway_open_sagas",
                "Orders placed and not yet settled, as last read from the order service",
            )?,
            oldest_open_saga_seconds: Gauge::new(
                "gateway_oldest_open_saga_seconds",
                "Age of the oldest open saga, as last read from the order service",
            )?,
        };
        metrics.registry.register(Box::new(this.shed.clone()))?;
        metrics
            .registry
            .register(Box::new(this.in_flight.clone()))?;
        metrics
            .registry
            .register(Box::new(this.open_sagas.clone()))?;
        metrics
            .registry
            .register(Box::new(this.oldest_open_saga_seconds.clone()))?;
        Ok(this)
    }
}

/// No reading of the saga backlog.
const UNKNOWN: u64 = u64::MAX;

/// What decides whether a new order goes in: its slots and the last saga reading.
pub struct Admission {
    slots: Arc<Semaphore>,
    max_open: u64,
    /// Open sagas, or [`UNKNOWN`].
    open_sagas: AtomicU64,
    metrics: ShedMetrics,
}

/// A placement slot, given back (and the gauge lowered) when the request ends or is dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    in_flight: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

impl Admission {
    pub fn new(max_in_flight: u32, max_open: u64, metrics: ShedMetrics) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_in_flight as usize)),
            max_open,
            open_sagas: AtomicU64::new(UNKNOWN),
            metrics,
        }
    }

    /// The open sagas, when the last poll could read them.
    pub fn open_sagas(&self) -> Option<u64> {
        match self.open_sagas.load(Ordering::Relaxed) {
            UNKNOWN => None,
            open => Some(open),
        }
    }

    /// Records a poll's reading (`None`: the poll failed).
    pub fn set_backlog(&self, backlog: Option<Backlog>) {
        let open = backlog.map_or(UNKNOWN, |b| b.open_sagas.min(UNKNOWN - 1));
        self.open_sagas.store(open, Ordering::Relaxed);
        if let Some(backlog) = backlog {
            self.metrics
                .open_sagas
                .set(i64::try_from(backlog.open_sagas).unwrap_or(i64::MAX));
            self.metrics
                .oldest_open_saga_seconds
                .set(backlog.oldest_open_secs);
        }
    }

    /// A slot for a new order, or why there is none.
    pub fn admit(&self) -> Result<Slot, Shed> {
        let permit = self.slots.clone().try_acquire_owned().ok();
        let admitted = decide(permit.is_some(), self.open_sagas(), self.max_open)
            .and_then(|()| permit.ok_or(Shed::InFlight));
        match admitted {
            Ok(permit) => {
                self.metrics.in_flight.inc();
                Ok(Slot {
                    _permit: permit,
                    in_flight: self.metrics.in_flight.clone(),
                })
            }
            Err(shed) => {
                self.metrics.shed.with_label_values(&[shed.reason()]).inc();
                Err(shed)
            }
        }
    }
}

/// Middleware of `POST /orders`: holds a slot for the request, or answers 503 at once.
pub async fn shed(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match state.admission.admit() {
        Ok(_slot) => next.run(request).await,
        Err(shed) => {
            tracing::debug!(reason = shed.reason(), "order shed");
            overloaded(shed.retry_after()).into_response()
        }
    }
}

/// What the gateway reads of the order service's `GET /admission`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Backlog {
    pub open_sagas: u64,
    pub oldest_open_secs: f64,
}

/// Reads the saga backlog from the order service every [`POLL_EVERY`] into an [`Admission`].
pub struct SagaWatch {
    pub admission: Arc<Admission>,
    pub client: reqwest::Client,
    /// The order service's base URL.
    pub order_url: String,
    /// How long one poll may take.
    pub timeout: Duration,
}

impl SagaWatch {
    async fn poll(&self, url: &str) -> anyhow::Result<Backlog> {
        let reading: Backlog = self
            .client
            .get(url)
            .timeout(self.timeout)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(reading)
    }

    /// Polls until `token` is cancelled. A failed poll forgets the reading (so nothing is shed
    /// on its basis) and is logged once until a poll succeeds again.
    pub async fn run(self, token: CancellationToken) {
        let url = format!("{}/admission", self.order_url.trim_end_matches('/'));
        let mut every = tokio::time::interval(POLL_EVERY);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                _ = every.tick() => {}
            }
            match self.poll(&url).await {
                Ok(backlog) => {
                    if failing {
                        tracing::info!("the saga backlog can be read again");
                        failing = false;
                    }
                    self.admission.set_backlog(Some(backlog));
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(
                            %url, error = format!("{error:#}"),
                            "cannot read the saga backlog; not shedding on it until it answers"
                        );
                        failing = true;
                    }
                    self.admission.set_backlog(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_OPEN: u64 = 300;

    #[test]
    fn an_order_goes_in_while_a_slot_is_free_and_the_sagas_keep_up() {
        assert_eq!(decide(true, Some(0), MAX_OPEN), Ok(()));
        assert_eq!(decide(true, Some(MAX_OPEN - 1), MAX_OPEN), Ok(()));
    }

    #[test]
    fn no_free_slot_sheds_for_in_flight() {
        assert_eq!(decide(false, Some(0), MAX_OPEN), Err(Shed::InFlight));
        assert_eq!(decide(false, None, MAX_OPEN), Err(Shed::InFlight));
    }

    #[test]
    fn a_full_saga_backlog_sheds_and_a_smaller_one_resumes() {
        assert_eq!(
            decide(true, Some(MAX_OPEN), MAX_OPEN),
            Err(Shed::SagaBacklog)
        );
        assert_eq!(
            decide(false, Some(10_000), MAX_OPEN),
            Err(Shed::SagaBacklog)
        );
        assert_eq!(decide(true, Some(12), MAX_OPEN), Ok(()));
    }

    #[test]
    fn an_unknown_backlog_sheds_nothing() {
        assert_eq!(decide(true, None, MAX_OPEN), Ok(()));
    }

    #[test]
    fn a_shed_order_is_told_when_to_retry() {
        assert_eq!(Shed::InFlight.retry_after(), Duration::from_secs(1));
        assert_eq!(Shed::SagaBacklog.retry_after(), Duration::from_secs(2));
    }

    fn admission(max: u32) -> (Admission, ShedMetrics) {
        let metrics = ShedMetrics::register(&Metrics::new("gateway")).unwrap();
        (Admission::new(max, MAX_OPEN, metrics.clone()), metrics)
    }

    #[test]
    fn slots_are_given_back_when_a_request_ends() {
        let (admission, metrics) = admission(1);
        let slot = admission.admit().unwrap();
        assert_eq!(metrics.in_flight.get(), 1);
        assert!(matches!(admission.admit(), Err(Shed::InFlight)));
        drop(slot);
        assert_eq!(metrics.in_flight.get(), 0);
        assert!(admission.admit().is_ok());
        assert_eq!(metrics.shed.with_label_values(&["in_flight"]).get(), 1);
    }

    #[test]
    fn a_failed_poll_forgets_the_backlog() {
        let (admission, metrics) = admission(4);
        admission.set_backlog(Some(Backlog {
            open_sagas: 900,
            oldest_open_secs: 9.0,
        }));
        assert!(matches!(admission.admit(), Err(Shed::SagaBacklog)));
        assert_eq!(metrics.open_sagas.get(), 900);
        assert_eq!(metrics.oldest_open_saga_seconds.get(), 9.0);
        admission.set_backlog(None);
        assert!(admission.admit().is_ok());
        assert_eq!(metrics.shed.with_label_values(&["saga_backlog"]).get(), 1);
    }
}
