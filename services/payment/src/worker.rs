//! The worker: claims due payments (pending charges, payments in doubt, refunds owed), calls the
//! provider for each outside any transaction, then records the answer in a transaction of its
//! own with the events it causes. Up to `concurrency` calls are in flight.
//!
//! A charge whose outcome it did not see (a timeout, a 5xx, an answer of pending, a worker lost
//! mid-call) is in doubt, and is settled only by asking: the worker looks the charge up by its
//! idempotency key and records what the provider holds (captured, declined, voided). When the
//! provider holds none and the order still wants one, it charges again under the same key; when
//! the order was cancelled or the payment waited too long (`give_up_after`), it voids by key, so
//! the payment fails or is voided only once the provider said that no capture exists (or a
//! capture it could not void is refunded). A payment is never failed by a timer alone.
//!
//! Safe against crashes: the idempotency key of a charge is its payment id and that of a refund
//! `refund-<payment id>`, so a payment taken over after a lost worker is charged or refunded once.
//! It wakes on its [doorbell](choreo::doorbell), rung by the consumer after each batch that may
//! have queued a payment, and also polls (for retries that come due); on shutdown it stops
//! claiming and waits a bounded time for the calls in hand.
//!
//! Each payment's call runs in a `charge` (or `refund`) span continuing the trace of the event
//! kept with the payment ([`Payment::kept_cause`]: the InventoryReserved that created it, the
//! OrderCancelled that asked for the refund), and the events it writes name that event as
//! their cause; a payment that kept none (made before causes were kept) is worked all the same.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use choreo::doorbell::Doorbell;
use choreo::envelope::Cause;
use choreo::outbox::{Outbox, OutboxError};
use choreo::resilience::Backoff;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::domain::{
    decide, follow_up, gives_up, ChargeResult, Effect, FollowUp, Input, RefundResult, Status,
};
use crate::metrics::PaymentMetrics;
use crate::provider::{
    ChargeRequest, Outcome, ProviderClient, ProviderConfig, RefundOutcome, RefundRequest,
};
use crate::store::{self, Payment, Release};

/// The channel of the worker's doorbell. Every replica's worker claims payments, so rings stay
/// in their process and are never forwarded.
pub const CHANNEL: &str = "payment_work";

/// How the worker claims and retries payments.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Provider calls in flight at once.
    pub concurrency: usize,
    /// How often to look for due payments (retries come due) when no ring wakes the worker.
    pub poll: Duration,
    /// A charge still unsettled (no answer, or pending) this long after the payment was created
    /// is voided at the provider, and fails once the provider confirms no capture exists.
    pub give_up_after: Duration,
    /// The wait before a payment is tried again (equal jitter: half fixed, half random).
    pub retry: Backoff,
    /// How long a claimed payment is the worker's; it must outlive the slowest provider call.
    pub lease: Duration,
    /// How long shutdown waits for the calls in hand.
    pub grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            poll: Duration::from_millis(1000),
            give_up_after: Duration::from_secs(120),
            retry: Backoff {
                first: Duration::from_millis(500),
                max: Duration::from_secs(10),
            },
            lease: Duration::from_secs(30),
            grace: Duration::from_secs(15),
        }
    }
}

impl WorkerConfig {
    /// A lease longer than the slowest settling `provider` allows (a lookup then a charge or a
    /// void, every attempt timing out, every backoff at its longest), with a margin.
    pub fn lease_for(provider: &ProviderConfig) -> Duration {
        let attempts = provider.attempts.max(1);
        (provider.timeout + provider.backoff.max) * attempts * 2 + Duration::from_secs(2)
    }

    /// The wait before attempt `attempts + 1`.
    fn retry_in(&self, attempts: i32) -> Duration {
        let n = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0);
        self.retry.bound(n) / 2 + self.retry.delay(n) / 2
    }
}

/// Why an answer could not be recorded (the payment is retried when its lease runs out).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
}

/// Charges and refunds payments; see the module docs.
pub struct Worker {
    pool: PgPool,
    outbox: Outbox,
    provider: Arc<ProviderClient>,
    config: WorkerConfig,
    metrics: PaymentMetrics,
    doorbell: Doorbell,
}

impl Worker {
    pub fn new(
        pool: PgPool,
        outbox: Outbox,
        provider: Arc<ProviderClient>,
        config: WorkerConfig,
        metrics: PaymentMetrics,
        doorbell: Doorbell,
    ) -> Self {
        doorbell.waiting_here(true);
        Self {
            pool,
            outbox,
            provider,
            config,
            metrics,
            doorbell,
        }
    }

    /// Works until `shutdown` is cancelled, then waits up to the grace time for calls in hand.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Infallible> {
        let worker = Arc::new(self);
        let mut in_flight: JoinSet<()> = JoinSet::new();
        tracing::info!(
            concurrency = worker.config.concurrency,
            "payment worker running"
        );
        while !shutdown.is_cancelled() {
            let free = worker.config.concurrency.saturating_sub(in_flight.len());
            if free > 0 {
                match store::claim_due(&worker.pool, free, worker.config.lease).await {
                    Ok(claimed) => {
                        let full = claimed.len() == free;
                        for payment in claimed {
                            let worker = worker.clone();
                            in_flight.spawn(async move { worker.settle(payment).await });
                        }
                        if full {
                            // More may be due: look again as soon as a call is done.
                            continue;
                        }
                    }
                    Err(error) => tracing::warn!(%error, "claiming due payments failed"),
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => report(joined),
                () = tokio::time::sleep(worker.config.poll) => {}
                () = worker.doorbell.rung() => {}
            }
        }
        tracing::info!(in_flight = in_flight.len(), "payment worker stopping");
        let drain = async {
            while let Some(joined) = in_flight.join_next().await {
                report(joined);
            }
        };
        if tokio::time::timeout(worker.config.grace, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                "provider calls still in flight after the grace time; their payments are taken over when their leases run out"
            );
            in_flight.abort_all();
        }
        Ok(())
    }

    /// Calls the provider for one claimed payment and records its answer, in a `charge` (or
    /// `refund`) span that continues the trace of the event kept with the payment
    /// ([`Payment::kept_cause`]), so the provider call and the events written follow the work
    /// that started it.
    async fn settle(&self, payment: Payment) {
        let cause = payment.kept_cause().cloned();
        let span = work_span(&payment);
        choreo::telemetry::set_parent(&span, cause.as_ref().and_then(|c| c.traceparent.as_deref()));
        async {
            let input = match payment.status {
                Status::RefundPending => Input::Refund(self.refund(&payment).await),
                Status::InDoubt => Input::Charge(self.ask(&payment).await),
                _ => Input::Charge(self.charge(&payment).await),
            };
            if let Err(error) = self.record(payment.payment_id, input, cause.as_ref()).await {
                tracing::error!(
                    %error,
                    "recording the provider's answer failed; the payment is tried again when its lease runs out"
                );
            }
        }
        .instrument(span)
        .await;
    }

    /// The charge request of a payment; the same for every call, so its key means one charge.
    fn request(payment: &Payment) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: payment.payment_id.to_string(),
            order_id: payment.order_id.clone(),
            customer_id: payment.customer_id.clone().unwrap_or_default(),
            amount_minor: payment.amount_minor,
            currency: payment.currency.clone(),
        }
    }

    async fn charge(&self, payment: &Payment) -> ChargeResult {
        let outcome = self.provider.charge(&Self::request(payment)).await;
        self.result(payment, outcome, None)
    }

    /// Settles a payment in doubt by asking the provider: a lookup by key, then (see
    /// [`follow_up`]) a void by key or a charge under the same key when the lookup did not
    /// settle it.
    async fn ask(&self, payment: &Payment) -> ChargeResult {
        let give_up = self.waited_too_long(payment);
        let request = Self::request(payment);
        let found = self.provider.lookup(&request.idempotency_key).await;
        let found = self.result(payment, found, None);
        match follow_up(&payment.state(), give_up, &found) {
            None => {
                if is_settled(&found) {
                    self.metrics.settled("lookup");
                }
                found
            }
            Some(FollowUp::Charge) => {
                tracing::info!("no charge under the payment's key: charging again under it");
                let result = self.charge(payment).await;
                if is_settled(&result) {
                    self.metrics.settled("charge");
                }
                result
            }
            Some(FollowUp::Void) => {
                let why = if payment.cancel_requested {
                    "the order was cancelled".to_owned()
                } else {
                    format!(
                        "no capture after {} s ({})",
                        self.config.give_up_after.as_secs(),
                        payment.last_error.as_deref().unwrap_or("no answer")
                    )
                };
                tracing::info!(%why, "voiding the charge at the provider");
                let outcome = self.provider.void(&request).await;
                let result = self.result(payment, outcome, Some(why));
                if is_settled(&result) {
                    self.metrics.settled("void");
                }
                result
            }
        }
    }

    /// The provider's `outcome` for `payment` as the domain takes it; `voided_because` says why
    /// we voided, when we did.
    fn result(
        &self,
        payment: &Payment,
        outcome: Outcome,
        voided_because: Option<String>,
    ) -> ChargeResult {
        match outcome {
            Outcome::Captured { charge_id } => ChargeResult::Captured { charge_id },
            Outcome::Declined { code, .. } => ChargeResult::Declined { code },
            Outcome::Voided { charge_id } => ChargeResult::Voided {
                detail: format!(
                    "{}; charge {charge_id} voided at the provider",
                    voided_because.as_deref().unwrap_or("voided")
                ),
            },
            Outcome::Pending { charge_id } => {
                tracing::debug!(attempts = payment.attempts, %charge_id, "charge pending at the provider");
                ChargeResult::Pending { charge_id }
            }
            Outcome::NotFound => ChargeResult::NotFound,
            Outcome::Unavailable { detail, in_doubt } => {
                let give_up = self.waited_too_long(payment);
                tracing::warn!(attempts = payment.attempts, in_doubt, %detail, "no answer from the provider");
                ChargeResult::Unavailable {
                    detail,
                    in_doubt,
                    give_up,
                }
            }
        }
    }

    /// Whether the payment has waited long enough for its charge.
    fn waited_too_long(&self, payment: &Payment) -> bool {
        let age = (chrono::Utc::now() - payment.created_at)
            .to_std()
            .unwrap_or_default();
        gives_up(age, self.config.give_up_after)
    }

    async fn refund(&self, payment: &Payment) -> RefundResult {
        let Some(charge_id) = payment.provider_reference.clone() else {
            tracing::error!("a refund is owed for a payment without a capture reference");
            return RefundResult::NotYet {
                detail: "no capture reference".into(),
            };
        };
        let request = RefundRequest {
            idempotency_key: format!("refund-{}", payment.payment_id),
            charge_id,
            amount_minor: payment.amount_minor,
        };
        match self.provider.refund(&request).await {
            RefundOutcome::Refunded { refund_id } => RefundResult::Refunded { refund_id },
            RefundOutcome::Rejected { detail } => {
                tracing::error!(attempts = payment.refund_attempts, %detail, "the provider refused a refund that is owed");
                RefundResult::NotYet { detail }
            }
            RefundOutcome::Unavailable { detail } => {
                tracing::warn!(attempts = payment.refund_attempts, %detail, "provider unavailable for a refund that is owed");
                RefundResult::NotYet { detail }
            }
        }
    }

    /// Applies the provider's answer to the payment (locked) and writes its events, caused by
    /// `cause` (the event kept with the payment, if any).
    async fn record(
        &self,
        payment_id: Uuid,
        input: Input,
        cause: Option<&Cause>,
    ) -> Result<(), WorkerError> {
        let mut tx = self.pool.begin().await?;
        let Some(payment) = store::payment(&mut tx, payment_id).await? else {
            return Ok(());
        };
        let (state, effects) = decide(&payment.state(), input);
        let retry = effects.iter().find_map(|effect| match effect {
            Effect::RetryLater { detail } => Some(detail.as_str()),
            _ => None,
        });
        let attempts = if payment.status == Status::RefundPending {
            payment.refund_attempts
        } else {
            payment.attempts
        };
        let release = Release {
            retry_in: retry.map(|_| self.config.retry_in(attempts)),
            error: retry,
        };
        store::save(&mut tx, payment_id, &state, Some(release)).await?;
        crate::publish::events(&self.outbox, &mut tx, &payment, &effects, cause).await?;
        self.outbox.commit(tx).await?;
        if state.status != Some(payment.status) {
            if state.status == Some(Status::InDoubt) {
                self.metrics.in_doubt();
                tracing::warn!(from = %payment.status, error = ?retry, "charge outcome unknown: the provider will be asked");
            } else {
                tracing::info!(from = %payment.status, to = ?state.status, "payment settled");
            }
        }
        Ok(())
    }
}

/// The span of the worker's call for `payment`, named for OpenTelemetry: `refund` for a refund
/// owed, `charge` for a charge (settling one in doubt included).
fn work_span(payment: &Payment) -> tracing::Span {
    match payment.status {
        Status::RefundPending => tracing::info_span!(
            "refund",
            otel.name = "refund",
            order_id = %payment.order_id,
            payment_id = %payment.payment_id,
        ),
        _ => tracing::info_span!(
            "charge",
            otel.name = "charge",
            order_id = %payment.order_id,
            payment_id = %payment.payment_id,
        ),
    }
}

/// Whether a charge result ends the doubt.
fn is_settled(result: &ChargeResult) -> bool {
    matches!(
        result,
        ChargeResult::Captured { .. } | ChargeResult::Declined { .. } | ChargeResult::Voided { .. }
    )
}

fn report(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined {
        tracing::error!(%error, "a provider call task failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_after_each_attempt_up_to_the_maximum() {
        let config = WorkerConfig::default();
        let first = config.retry_in(1);
        assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500));
        let late = config.retry_in(30);
        assert!(late >= Duration::from_secs(5) && late <= Duration::from_secs(10));
    }
}
