//! The reconciliation loop: every `every`, it pages through the provider's ledger and compares
//! each charge with the payment made under its idempotency key (the payment id), by the pure
//! [`verdict`]. A capture our payment does not hold (it ended failed or voided: an answer that
//! was lost, a request that landed after we voided) is recorded as a late capture in a
//! transaction of its own, which makes it owed back: the worker refunds it through the normal
//! refund path, with PaymentRefunded through the outbox. Differences no rule fixes are logged and
//! counted for a person. Every mismatch is counted in `shop_payment_mismatches_total`.
//!
//! It remembers how far the ledger agrees (the longest prefix of charges that need no second
//! look) and starts each pass there; after a restart it reads the whole ledger once. Two
//! replicas may both reconcile: a fix locks the payment and decides again on what it finds.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use choreo::outbox::Outbox;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::reconcile::{verdict, Ours, ProviderCharge, ProviderStatus, Verdict};
use crate::domain::{decide, ChargeResult, Input};
use crate::metrics::PaymentMetrics;
use crate::provider::{LedgerCharge, ProviderClient};
use crate::store;
use crate::worker::WorkerError;

/// How often and how much the loop reads.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// The wait between two passes.
    pub every: Duration,
    /// Charges per ledger page.
    pub page: usize,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(30),
            page: 200,
        }
    }
}

/// What one pass found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Charges read from the ledger.
    pub read: usize,
    /// Captures recorded as owed back.
    pub refunds_owed: usize,
    /// Differences reported for a person (each counted once per process).
    pub reported: usize,
    /// Charges still settling on one side.
    pub unsettled: usize,
}

/// Why a pass stopped early (the next pass starts again where the ledger last agreed).
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("reading the provider's ledger: {0}")]
    Provider(String),
    #[error(transparent)]
    Record(#[from] WorkerError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Compares the provider's ledger with the payments table; see the module docs.
pub struct Reconciler {
    pool: PgPool,
    outbox: Outbox,
    provider: Arc<ProviderClient>,
    config: ReconcileConfig,
    metrics: PaymentMetrics,
    /// Every charge up to this one needs no second look.
    agreed_until: u64,
    /// Charges already reported, so a standing difference is counted once.
    reported: HashSet<String>,
}

impl Reconciler {
    pub fn new(
        pool: PgPool,
        outbox: Outbox,
        provider: Arc<ProviderClient>,
        config: ReconcileConfig,
        metrics: PaymentMetrics,
    ) -> Self {
        Self {
            pool,
            outbox,
            provider,
            config,
            metrics,
            agreed_until: 0,
            reported: HashSet::new(),
        }
    }

    /// Reconciles every `every` until `shutdown` is cancelled (a pass in hand is finished).
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), Infallible> {
        tracing::info!(every = ?self.config.every, "payment reconciliation running");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.config.every) => {}
            }
            match self.pass().await {
                Ok(report) => {
                    self.metrics.reconcile_pass(true);
                    if report.refunds_owed + report.reported > 0 {
                        tracing::warn!(?report, "reconciliation found mismatches");
                    } else {
                        tracing::debug!(?report, "reconciliation pass");
                    }
                }
                Err(error) => {
                    self.metrics.reconcile_pass(false);
                    tracing::warn!(%error, "reconciliation pass stopped; the next one starts again");
                }
            }
        }
    }

    /// One pass over the ledger from where it last agreed.
    #[tracing::instrument(skip_all, fields(from = self.agreed_until), err)]
    pub async fn pass(&mut self) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        let mut after = self.agreed_until;
        let mut agreeing = true;
        loop {
            let page = self
                .provider
                .ledger(after, self.config.page)
                .await
                .map_err(PassError::Provider)?;
            report.read += page.charges.len();
            let ours = self.ours(&page.charges).await?;
            for charge in &page.charges {
                let payment_id = Uuid::parse_str(&charge.idempotency_key).ok();
                let mine = payment_id.and_then(|id| ours.get(&id));
                let settled = match verdict(&provider_charge(charge), mine) {
                    Verdict::Agree => true,
                    Verdict::Unsettled => {
                        report.unsettled += 1;
                        false
                    }
                    Verdict::RecordCapture => {
                        let id = payment_id.expect("a payment was found by this id");
                        self.record_capture(id, charge).await?;
                        report.refunds_owed += 1;
                        true
                    }
                    Verdict::Report(kind) => {
                        if self.reported.insert(charge.charge_id.clone()) {
                            report.reported += 1;
                            self.metrics.mismatch(kind.as_str(), "reported");
                            tracing::error!(
                                charge_id = %charge.charge_id,
                                idempotency_key = %charge.idempotency_key,
                                provider_status = %charge.status,
                                amount_minor = charge.amount_minor,
                                our_status = ?mine.and_then(|o| o.state.status),
                                mismatch = kind.as_str(),
                                "the provider's ledger and the payments table differ; a person must look"
                            );
                        }
                        true
                    }
                };
                agreeing &= settled;
                if agreeing {
                    self.agreed_until = charge.seq;
                }
            }
            match page.next_after {
                Some(next) => after = next,
                None => return Ok(report),
            }
        }
    }

    /// Our payments under the keys of `charges`, by id.
    async fn ours(&self, charges: &[LedgerCharge]) -> Result<HashMap<Uuid, Ours>, sqlx::Error> {
        let ids: Vec<Uuid> = charges
            .iter()
            .filter_map(|c| Uuid::parse_str(&c.idempotency_key).ok())
            .collect();
        let found = store::payments_by_id(&self.pool, &ids).await?;
        Ok(found
            .into_iter()
            .map(|p| {
                let ours = Ours {
                    state: p.state(),
                    amount_minor: p.amount_minor,
                };
                (p.payment_id, ours)
            })
            .collect())
    }

    /// Records a capture the payment did not hold, deciding again on the locked payment (a
    /// worker or another replica may have moved it meanwhile).
    async fn record_capture(
        &self,
        payment_id: Uuid,
        charge: &LedgerCharge,
    ) -> Result<(), WorkerError> {
        let mut tx = self.pool.begin().await?;
        let Some(payment) = store::payment(&mut tx, payment_id).await? else {
            return Ok(());
        };
        let ours = Ours {
            state: payment.state(),
            amount_minor: payment.amount_minor,
        };
        if verdict(&provider_charge(charge), Some(&ours)) != Verdict::RecordCapture {
            return Ok(());
        }
        let input = Input::Charge(ChargeResult::Captured {
            charge_id: charge.charge_id.clone(),
        });
        let (state, effects) = decide(&ours.state, input);
        store::save(&mut tx, payment_id, &state, None).await?;
        let cause = payment.kept_cause();
        crate::publish::events(&self.outbox, &mut tx, &payment, &effects, cause).await?;
        self.outbox.commit(tx).await?;
        self.metrics.mismatch("capture_not_recorded", "refunded");
        tracing::warn!(
            order_id = %payment.order_id,
            %payment_id,
            charge_id = %charge.charge_id,
            from = %payment.status,
            to = ?state.status,
            "the provider holds a capture the payment did not: it is refunded"
        );
        Ok(())
    }
}

/// A ledger charge as the domain compares it; an unknown status is taken as pending (looked at
/// again, never acted on).
fn provider_charge(charge: &LedgerCharge) -> ProviderCharge {
    let status = match charge.status.as_str() {
        "captured" => ProviderStatus::Captured,
        "declined" => ProviderStatus::Declined,
        "voided" => ProviderStatus::Voided,
        _ => ProviderStatus::Pending,
    };
    ProviderCharge {
        charge_id: charge.charge_id.clone(),
        status,
        amount_minor: charge.amount_minor,
        refunded_minor: charge.refunded_minor,
    }
}
