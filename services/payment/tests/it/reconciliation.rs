//! Reconciliation: the provider's ledger against the payments table. A capture the table does
//! not hold is refunded through the normal refund path; a capture under a key that is no
//! payment is reported, never touched.

use payment::domain::Status;
use shop_events::{PaymentFailureReason, ShopEvent};

use crate::helpers::*;

#[tokio::test]
async fn a_capture_whose_answer_was_lost_is_refunded_when_the_order_was_cancelled() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    let order_id = app.reserved_order("cus_olga").await;
    app.feed(&order_id, &order_cancelled(&order_id)).await;
    let payment = app.payment(&order_id).await;
    assert_eq!(payment.status, Status::Voided);
    // The provider captured under the payment's key, and we never saw it: a request that
    // landed after the payment was voided (as an earlier version voided payments in doubt).
    let captured = app
        .sim
        .charge(&payment.payment_id.to_string(), &order_id, "cus_olga")
        .await;
    assert_eq!(captured["status"], "captured");

    let mut reconciler = app.reconciler();
    let report = reconciler.pass().await.expect("a pass");
    assert_eq!(report.refunds_owed, 1, "{report:?}");
    app.start_worker(worker_config(), app.provider());
    let payment = app.wait_for(&order_id, Status::Refunded).await;

    assert_eq!(
        payment.provider_reference,
        captured["charge_id"].as_str().map(Into::into)
    );
    assert_eq!(payment.refunded_minor, AMOUNT);
    match app.events().await.as_slice() {
        [ShopEvent::PaymentFailed(failed), ShopEvent::PaymentRefunded(refunded)] => {
            assert_eq!(failed.reason, PaymentFailureReason::OrderCancelled);
            assert_eq!(refunded.amount_minor, AMOUNT);
        }
        other => panic!("expected PaymentFailed then PaymentRefunded, got {other:?}"),
    }
    let stats = app.provider_stats().await;
    assert_eq!(stats["captured_minor"], stats["refunded_minor"]);
    assert_eq!(
        app.metrics.mismatches("capture_not_recorded", "refunded"),
        1
    );

    // The books agree now: a second pass finds nothing.
    let again = reconciler.pass().await.expect("a pass");
    assert_eq!((again.refunds_owed, again.reported), (0, 0), "{again:?}");
    app.finish().await;
}

#[tokio::test]
async fn reconciliation_leaves_agreeing_and_unsettled_payments_alone_and_reports_strangers() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    let mut orders = Vec::new();
    for customer in ["cus_pia", "cus_quin", "cus_decline_rob"] {
        orders.push(app.reserved_order(customer).await);
    }
    app.start_worker(worker_config(), app.provider());
    app.wait_for(&orders[0], Status::Captured).await;
    app.wait_for(&orders[1], Status::Captured).await;
    app.wait_for(&orders[2], Status::Failed).await;
    let stranger = uuid::Uuid::now_v7().to_string();
    app.sim.charge(&stranger, "elsewhere", "cus_sam").await;

    let mut reconciler = app.reconciler();
    let report = reconciler.pass().await.expect("a pass");
    assert_eq!(report.read, 4);
    assert_eq!((report.refunds_owed, report.reported), (0, 1), "{report:?}");
    assert_eq!(app.metrics.mismatches("unknown_charge", "reported"), 1);
    let again = reconciler.pass().await.expect("a pass");
    assert_eq!(
        (again.read, again.reported),
        (0, 0),
        "the ledger agreed up to its end"
    );

    let stats = app.provider_stats().await;
    assert_eq!(stats["refunded_minor"], 0, "nothing refunded: {stats}");
    assert_eq!(app.payment(&orders[0]).await.status, Status::Captured);
    app.finish().await;
}
