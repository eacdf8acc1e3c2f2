//! Prometheus metrics of the backbone, one set per service process, served by [`crate::ops`].
//!
//! The relay, the consumer runner, the outbox gauges and the inbox's pruner update them; a
//! service registers its own metrics in the same [`Metrics::registry`].

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// Every metric of the backbone.
pub struct Metrics {
    pub registry: Registry,
    /// Rows waiting in the outbox (sampled by the leading relay).
    pub outbox_backlog: IntGauge,
    /// Age of the oldest waiting row, in seconds.
    pub outbox_oldest_age_seconds: Gauge,
    /// Events the relay published (acknowledged by Kafka).
    pub relay_events: IntCounter,
    /// From an event's insert into the outbox to Kafka's acknowledgement.
    pub relay_commit_to_ack_seconds: Histogram,
    /// 1 while this process's relay leads, else 0.
    pub relay_leader: IntGauge,
    /// Outbox rows the relay parked because they can never be published (see `choreo lag`).
    pub outbox_parked: IntGauge,
    /// Outbox rows waiting behind a parked row of their key.
    pub outbox_held: IntGauge,
    /// Relay batches (or producer initialisations) that failed and were retried after a backoff.
    pub relay_failures: IntCounter,
    /// Transactional producers the relay replaced after a failure.
    pub relay_producer_restarts: IntCounter,
    /// Messages behind the partition's end, per topic and partition, as this member sees them.
    pub consumer_lag: IntGaugeVec,
    /// Time a handler took for one event, by event type.
    pub handler_seconds: HistogramVec,
    /// Events applied, by event type.
    pub consumer_applied: IntCounterVec,
    /// Redelivered events skipped by the inbox.
    pub consumer_duplicates: IntCounter,
    /// Messages sent to a dead-letter topic, by reason.
    pub dead_letters: IntCounterVec,
    /// Seconds a partition has been retrying the same batch (0 while it flows).
    pub consumer_stuck_seconds: GaugeVec,
    /// Events whose `event_type` the handler does not know (a producer ahead of this consumer),
    /// recorded in the inbox and otherwise passed over.
    pub consumer_unknown_events: IntCounterVec,
    /// 1 while the consumer of `group` is a member of its group, else 0.
    pub consumer_member: IntGaugeVec,
    /// Consumer sessions started again (a lost group, a dead partition worker).
    pub consumer_restarts: IntCounterVec,
    /// Handler panics caught (the batch is rolled back and retried).
    pub handler_panics: IntCounter,
    /// Rows in the inbox, counted by its pruner once per cycle.
    pub inbox_rows: IntGauge,
    /// Inbox rows the pruner deleted (older than the retention).
    pub inbox_pruned: IntCounter,
}

/// From a cause to the event it caused, by step of the saga (`from` and `to` are the events'
/// short names, e.g. `OrderPlaced` -> `InventoryReserved`): one process-wide histogram,
/// registered in every [`Metrics`] registry, observed by the outbox as each event is written.
static SAGA_STEP_SECONDS: std::sync::LazyLock<HistogramVec> = std::sync::LazyLock::new(|| {
    HistogramVec::new(
        HistogramOpts::new(
            "saga_step_seconds",
            "From a cause's occurred_at to the occurred_at of the event it caused",
        )
        .buckets(vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        ]),
        &["from", "to"],
    )
    .expect("valid histogram")
});

/// Times the saga step `metadata` completes (nothing for an event with no known cause).
pub fn observe_saga_step(metadata: &crate::envelope::Metadata) {
    let Some(from) = &metadata.step_from else {
        return;
    };
    let short = |name: &str| name.rsplit('.').next().unwrap_or(name).to_owned();
    let seconds = (metadata.occurred_at - from.occurred_at)
        .to_std()
        .unwrap_or_default()
        .as_secs_f64();
    SAGA_STEP_SECONDS
        .with_label_values(&[short(&from.event_type), short(&metadata.event_type)])
        .observe(seconds);
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    /// The backbone's metrics, labelled with `service`.
    pub fn new(service: &str) -> Self {
        let registry = Registry::new_custom(
            Some("choreo".into()),
            Some([("service".to_owned(), service.to_owned())].into()),
        )
        .expect("valid registry labels");
        let metrics = Self {
            outbox_backlog: IntGauge::new("outbox_backlog", "Rows waiting in the outbox").unwrap(),
            outbox_oldest_age_seconds: Gauge::new(
                "outbox_oldest_age_seconds",
                "Age of the oldest waiting outbox row",
            )
            .unwrap(),
            relay_events: IntCounter::new("relay_events_total", "Events published by the relay")
                .unwrap(),
            relay_commit_to_ack_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "relay_commit_to_ack_seconds",
                    "From outbox insert to Kafka acknowledgement",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .unwrap(),
            relay_leader: IntGauge::new("relay_leader", "1 while this process's relay leads")
                .unwrap(),
            outbox_parked: IntGauge::new("outbox_parked", "Outbox rows parked as unpublishable")
                .unwrap(),
            outbox_held: IntGauge::new("outbox_held", "Outbox rows waiting behind a parked row")
                .unwrap(),
            relay_failures: IntCounter::new("relay_failures_total", "Relay batches that failed")
                .unwrap(),
            relay_producer_restarts: IntCounter::new(
                "relay_producer_restarts_total",
                "Relay producers replaced after a failure",
            )
            .unwrap(),
            consumer_lag: IntGaugeVec::new(
                Opts::new("consumer_lag", "Messages behind the partition end"),
                &["topic", "partition"],
            )
            .unwrap(),
            handler_seconds: HistogramVec::new(
                HistogramOpts::new("handler_seconds", "Handler time per event")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["event_type"],
            )
            .unwrap(),
            consumer_applied: IntCounterVec::new(
                Opts::new("consumer_applied_total", "Events applied"),
                &["event_type"],
            )
            .unwrap(),
            consumer_duplicates: IntCounter::new(
                "consumer_duplicates_total",
                "Redelivered events skipped by the inbox",
            )
            .unwrap(),
            dead_letters: IntCounterVec::new(
                Opts::new("dead_letters_total", "Messages dead-lettered"),
                &["reason"],
            )
            .unwrap(),
            consumer_stuck_seconds: GaugeVec::new(
                Opts::new(
                    "consumer_stuck_seconds",
                    "Seconds a partition has been retrying one batch (0 while it flows)",
                ),
                &["topic", "partition"],
            )
            .unwrap(),
            consumer_unknown_events: IntCounterVec::new(
                Opts::new(
                    "consumer_unknown_events_total",
                    "Events of a type the handler does not know, passed over",
                ),
                &["event_type"],
            )
            .unwrap(),
            consumer_member: IntGaugeVec::new(
                Opts::new(
                    "consumer_member",
                    "1 while the consumer is a member of its group",
                ),
                &["group"],
            )
            .unwrap(),
            consumer_restarts: IntCounterVec::new(
                Opts::new("consumer_restarts_total", "Consumer sessions started again"),
                &["reason"],
            )
            .unwrap(),
            handler_panics: IntCounter::new("handler_panics_total", "Handler panics caught")
                .unwrap(),
            inbox_rows: IntGauge::new("inbox_rows", "Rows in the inbox (counted once per prune)")
                .unwrap(),
            inbox_pruned: IntCounter::new(
                "inbox_pruned_total",
                "Inbox rows deleted as older than the retention",
            )
            .unwrap(),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.outbox_backlog.clone()),
            Box::new(metrics.outbox_oldest_age_seconds.clone()),
            Box::new(metrics.relay_events.clone()),
            Box::new(metrics.relay_commit_to_ack_seconds.clone()),
            Box::new(metrics.relay_leader.clone()),
            Box::new(metrics.outbox_parked.clone()),
            Box::new(metrics.outbox_held.clone()),
            Box::new(metrics.relay_failures.clone()),
            Box::new(metrics.relay_producer_restarts.clone()),
            Box::new(metrics.consumer_lag.clone()),
            Box::new(metrics.handler_seconds.clone()),
            Box::new(metrics.consumer_applied.clone()),
            Box::new(metrics.consumer_duplicates.clone()),
            Box::new(metrics.dead_letters.clone()),
            Box::new(metrics.consumer_stuck_seconds.clone()),
            Box::new(metrics.consumer_unknown_events.clone()),
            Box::new(metrics.consumer_member.clone()),
            Box::new(metrics.consumer_restarts.clone()),
            Box::new(metrics.handler_panics.clone()),
            Box::new(metrics.inbox_rows.clone()),
            Box::new(metrics.inbox_pruned.clone()),
            Box::new(SAGA_STEP_SECONDS.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("metric names are unique");
        }
        metrics
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_the_service_label() {
        let metrics = Metrics::new("inventory");
        metrics.relay_events.inc_by(3);
        metrics.dead_letters.with_label_values(&["rejected"]).inc();
        let text = metrics.render();
        assert!(
            text.contains(r#"choreo_relay_events_total{service="inventory"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"choreo_dead_letters_total{reason="rejected",service="inventory"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn a_caused_event_times_its_saga_step_by_short_names_and_an_uncaused_one_does_not() {
        use crate::envelope::Metadata;
        let metrics = Metrics::new("order");
        let mut cause = Metadata::new("shop.payment.PaymentCaptured", "o-1", "payment");
        cause.occurred_at -= chrono::Duration::milliseconds(1500);
        let effect = Metadata::new("shop.order.OrderConfirmed", "o-1", "order").caused_by(&cause);
        let step = |text: &str, suffix: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!("choreo_saga_step_seconds_{suffix}"))
                        && l.contains(
                            r#"from="PaymentCaptured",to="OrderConfirmed",service="order""#,
                        )
                })
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        let before = step(&metrics.render(), "count").unwrap_or(0.0);
        let sum_before = step(&metrics.render(), "sum").unwrap_or(0.0);
        observe_saga_step(&effect);
        observe_saga_step(&Metadata::new("shop.order.OrderPlaced", "o-1", "order"));
        let text = metrics.render();
        assert_eq!(step(&text, "count"), Some(before + 1.0), "{text}");
        let added = step(&text, "sum").unwrap() - sum_before;
        assert!((1.4..1.6).contains(&added), "{added} s: {text}");
        assert!(!text.contains(r#"to="OrderPlaced""#), "{text}");
    }
}
