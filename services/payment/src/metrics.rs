//! The payment service's own Prometheus metrics, on the backbone's registry (served on
//! `/metrics` with the `choreo_` prefix and the `service` label):
//!
//! - `shop_payment_mismatches_total{kind, action}`: differences the reconciliation found between
//!   the provider's ledger and the payments table; `action` is `refunded` (a capture we did not
//!   hold, now owed back) or `reported` (for a person; see
//!   [`crate::domain::reconcile::Mismatch`]).
//! - `shop_payment_reconcile_passes_total{result}`: reconciliation passes, `ok` or `failed`.
//! - `shop_payments_in_doubt_total`: charges whose outcome was unknown and had to be asked for.
//! - `shop_payments_settled_total{by}`: payments in doubt settled, by what settled them
//!   (`lookup`, `void`, `charge`).

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// The payment service's counters; clones share them.
#[derive(Clone)]
pub struct PaymentMetrics {
    mismatches: IntCounterVec,
    reconcile_passes: IntCounterVec,
    in_doubt: IntCounter,
    settled: IntCounterVec,
}

impl Default for PaymentMetrics {
    /// Metrics registered nowhere (for tests that do not read them).
    fn default() -> Self {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter")
        };
        Self {
            mismatches: vec(
                "shop_payment_mismatches_total",
                "Differences between the provider's ledger and the payments table",
                &["kind", "action"],
            ),
            reconcile_passes: vec(
                "shop_payment_reconcile_passes_total",
                "Reconciliation passes over the provider's ledger",
                &["result"],
            ),
            in_doubt: IntCounter::new(
                "shop_payments_in_doubt_total",
                "Charges whose outcome was unknown and had to be asked for",
            )
            .expect("valid counter"),
            settled: vec(
                "shop_payments_settled_total",
                "Payments in doubt settled, by what settled them",
                &["by"],
            ),
        }
    }
}

impl PaymentMetrics {
    /// Creates the metrics and registers them in `registry` (the service's `Metrics::registry`).
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self::default();
        registry.register(Box::new(metrics.mismatches.clone()))?;
        registry.register(Box::new(metrics.reconcile_passes.clone()))?;
        registry.register(Box::new(metrics.in_doubt.clone()))?;
        registry.register(Box::new(metrics.settled.clone()))?;
        Ok(metrics)
    }

    /// A mismatch of `kind` was found and `action` taken.
    pub fn mismatch(&self, kind: &str, action: &str) {
        self.mismatches.with_label_values(&[kind, action]).inc();
    }

    /// How many mismatches of `kind` got `action` so far.
    pub fn mismatches(&self, kind: &str, action: &str) -> u64 {
        self.mismatches.with_label_values(&[kind, action]).get()
    }

    pub fn reconcile_pass(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reconcile_passes.with_label_values(&[result]).inc();
    }

    /// A payment became in doubt.
    pub fn in_doubt(&self) {
        self.in_doubt.inc();
    }

    /// A payment in doubt was settled by `by`.
    pub fn settled(&self, by: &str) {
        self.settled.with_label_values(&[by]).inc();
    }
}
