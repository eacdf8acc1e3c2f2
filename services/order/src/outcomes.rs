//! How sagas end, as Prometheus metrics on the service's backbone registry (served on
//! `/metrics` with the `choreo_` prefix and the `service` label): `shop_orders_total` by
//! outcome (`confirmed`, `cancelled_<reason>`) and `shop_saga_seconds`, from placing an order to
//! its confirmation or cancellation.
//!
//! They are counted when [`crate::saga::Saga`] writes the decision, inside the caller's
//! transaction; a transaction that rolls back and is retried counts twice, which a rate over
//! minutes does not notice. Nothing else lives here.

use chrono::{DateTime, Utc};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

use crate::domain::CancelReason;

/// From placing an order to its outcome: the deadline (30 s by default) bounds nearly all.
const SAGA_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// The saga's outcome counter and latency histogram.
#[derive(Clone)]
pub struct Outcomes {
    orders: IntCounterVec,
    saga_seconds: Histogram,
}

impl Default for Outcomes {
    /// Metrics registered nowhere (for tests that do not read them).
    fn default() -> Self {
        Self {
            orders: IntCounterVec::new(
                Opts::new("shop_orders_total", "Orders that ended, by outcome"),
                &["outcome"],
            )
            .expect("valid counter"),
            saga_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "shop_saga_seconds",
                    "From placing an order to its confirmation or cancellation",
                )
                .buckets(SAGA_BUCKETS.to_vec()),
            )
            .expect("valid histogram"),
        }
    }
}

impl Outcomes {
    /// Creates the metrics and registers them in `registry` (the service's `Metrics::registry`).
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let outcomes = Self::default();
        registry.register(Box::new(outcomes.orders.clone()))?;
        registry.register(Box::new(outcomes.saga_seconds.clone()))?;
        Ok(outcomes)
    }

    /// An order placed at `placed_at` was confirmed at `now`.
    pub fn confirmed(&self, placed_at: DateTime<Utc>, now: DateTime<Utc>) {
        self.ended("confirmed", placed_at, now);
    }

    /// An order placed at `placed_at` was cancelled for `reason` at `now`.
    pub fn cancelled(&self, reason: CancelReason, placed_at: DateTime<Utc>, now: DateTime<Utc>) {
        self.ended(&format!("cancelled_{}", reason.as_str()), placed_at, now);
    }

    fn ended(&self, outcome: &str, placed_at: DateTime<Utc>, now: DateTime<Utc>) {
        self.orders.with_label_values(&[outcome]).inc();
        let seconds = (now - placed_at).num_milliseconds().max(0) as f64 / 1000.0;
        self.saga_seconds.observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use choreo::metrics::Metrics;

    #[test]
    fn outcomes_are_served_with_the_backbone_prefix_and_the_service_label() {
        let metrics = Metrics::new("order");
        let outcomes = Outcomes::register(&metrics.registry).unwrap();
        let placed = Utc::now();
        outcomes.confirmed(placed, placed + chrono::Duration::milliseconds(1500));
        outcomes.cancelled(CancelReason::Timeout, placed, placed);
        let text = metrics.render();
        assert!(
            text.contains(r#"choreo_shop_orders_total{outcome="confirmed",service="order"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"choreo_shop_orders_total{outcome="cancelled_timeout",service="order"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"choreo_shop_saga_seconds_count{service="order"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"choreo_shop_saga_seconds_sum{service="order"} 1.5"#),
            "{text}"
        );
    }

    #[test]
    fn a_clock_step_backwards_is_observed_as_zero() {
        let outcomes = Outcomes::default();
        let placed = Utc::now();
        outcomes.confirmed(placed, placed - chrono::Duration::seconds(3));
        assert_eq!(outcomes.saga_seconds.get_sample_sum(), 0.0);
    }
}
