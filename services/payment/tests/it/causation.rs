//! Events written later name their cause and continue its trace: the worker's capture names the
//! InventoryReserved kept with the payment, its refund the OrderCancelled that asked for it, and
//! a payment made before causes were kept still publishes, without one.

use choreo::testing::{outbox_rows, OutboxRow};
use payment::domain::Status;

use crate::helpers::*;

const RESERVED_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CANCELLED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-00f067aa0ba902b7-01")
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn trace_id(traceparent: &str) -> Option<&str> {
    traceparent.split('-').nth(1)
}

/// The outbox's only row of event type `name`.
async fn written(app: &TestApp, name: &str) -> OutboxRow {
    let mut rows: Vec<OutboxRow> = outbox_rows(&app.db.pool)
        .await
        .into_iter()
        .filter(|row| row.header("event_type") == Some(name))
        .collect();
    assert_eq!(rows.len(), 1, "one {name} in the outbox");
    rows.remove(0)
}

/// `row` names `cause` (an event id) and continues the trace `trace`.
fn assert_caused_by(row: &OutboxRow, cause: uuid::Uuid, trace: &str) {
    let cause = cause.to_string();
    assert_eq!(row.header("causation_id"), Some(cause.as_str()));
    assert_eq!(row.header("traceparent").and_then(trace_id), Some(trace));
}

#[tokio::test]
async fn the_workers_capture_names_the_reservation_and_continues_its_trace() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    let order_id = new_order_id();
    app.feed(&order_id, &order_placed(&order_id, "cus_cause_amy"))
        .await;
    let reserved = app
        .feed_traced(
            &order_id,
            &inventory_reserved(&order_id),
            Some(&traceparent(RESERVED_TRACE)),
        )
        .await;
    let kept = app.payment(&order_id).await.cause.expect("a kept cause").0;
    assert_eq!(kept.event_id, reserved.event_id);
    assert_eq!(kept.traceparent, reserved.traceparent);

    app.start_worker(worker_config(), app.provider());
    app.wait_for(&order_id, Status::Captured).await;

    let captured = written(&app, "shop.payment.PaymentCaptured").await;
    assert_caused_by(&captured, reserved.event_id, RESERVED_TRACE);
    assert_eq!(captured.header("correlation_id"), Some(order_id.as_str()));
    app.finish().await;
}

#[tokio::test]
async fn the_workers_refund_names_the_cancellation_and_continues_its_trace() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    let order_id = app.reserved_order("cus_cause_ben").await;
    app.start_worker(worker_config(), app.provider());
    app.wait_for(&order_id, Status::Captured).await;

    let cancelled = app
        .feed_traced(
            &order_id,
            &order_cancelled(&order_id),
            Some(&traceparent(CANCELLED_TRACE)),
        )
        .await;
    let payment = app.wait_for(&order_id, Status::Refunded).await;
    assert_eq!(
        payment.refund_cause.map(|c| c.0.event_id),
        Some(cancelled.event_id)
    );

    let refunded = written(&app, "shop.payment.PaymentRefunded").await;
    assert_caused_by(&refunded, cancelled.event_id, CANCELLED_TRACE);
    app.finish().await;
}

#[tokio::test]
async fn a_payment_that_kept_no_cause_is_still_charged_and_announced_without_one() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    let order_id = app.reserved_order("cus_cause_old_cleo").await;
    // As a row made before causes were kept.
    sqlx::query("update payments set cause = null where order_id = $1")
        .bind(&order_id)
        .execute(&app.db.pool)
        .await
        .unwrap();

    app.start_worker(worker_config(), app.provider());
    app.wait_for(&order_id, Status::Captured).await;

    let captured = written(&app, "shop.payment.PaymentCaptured").await;
    assert_eq!(captured.header("causation_id"), None);
    assert_eq!(captured.header("correlation_id"), Some(order_id.as_str()));
    app.finish().await;
}
