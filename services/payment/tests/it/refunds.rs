//! Cancellations: before the reservation (voided, never charged), while the charge is pending
//! at the provider (voided there, then here; never captured), during a call that then captures (captured, then
//! refunded), and after the capture (refunded).

use std::time::Duration;

use payment::domain::Status;
use payment::worker::WorkerConfig;
use shop_events::{PaymentFailureReason, RefundReason, ShopEvent};

use crate::helpers::*;

#[tokio::test]
async fn an_order_cancelled_before_its_reservation_is_voided_and_never_charged() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    let order_id = new_order_id();
    app.feed(&order_id, &order_placed(&order_id, "cus_grace"))
        .await;
    app.feed(&order_id, &order_cancelled(&order_id)).await;
    app.feed(&order_id, &inventory_reserved(&order_id)).await;
    assert_eq!(app.payment(&order_id).await.status, Status::Voided);

    app.start_worker(worker_config(), app.provider());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let payment = app.payment(&order_id).await;
    assert_eq!((payment.status, payment.attempts), (Status::Voided, 0));
    match app.events().await.as_slice() {
        [ShopEvent::PaymentFailed(e)] => {
            assert_eq!(e.reason, PaymentFailureReason::OrderCancelled)
        }
        other => panic!("expected one PaymentFailed, got {other:?}"),
    }
    let stats = app.provider_stats().await;
    assert_eq!(
        (&stats["charges_captured"], &stats["charges_declined"]),
        (&0.into(), &0.into())
    );
    app.finish().await;
}

#[tokio::test]
async fn an_order_cancelled_while_its_charge_is_pending_is_voided_and_never_captured() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    let order_id = app.reserved_order("cus_pending_judy").await;

    let patient = WorkerConfig {
        give_up_after: Duration::from_secs(60),
        ..worker_config()
    };
    app.start_worker(patient, app.provider());
    app.wait_until(&order_id, "asked twice", |p| p.attempts >= 2)
        .await;
    app.feed(&order_id, &order_cancelled(&order_id)).await;
    let payment = app.wait_for(&order_id, Status::Voided).await;

    assert_eq!(payment.provider_reference, None);
    match app.events().await.as_slice() {
        [ShopEvent::PaymentFailed(e)] => {
            assert_eq!(e.reason, PaymentFailureReason::OrderCancelled)
        }
        other => panic!("expected one PaymentFailed, got {other:?}"),
    }
    let stats = app.provider_stats().await;
    assert_eq!(
        (&stats["charges_pending"], &stats["charges_voided"]),
        (&0.into(), &1.into()),
        "voided at the provider before it is voided here"
    );
    assert_eq!(stats["charges_captured"], 0);
    app.finish().await;
}

#[tokio::test]
async fn an_order_cancelled_while_it_is_charged_is_captured_then_refunded() {
    // Every answer takes 1.5 s: time to cancel while the call is in flight.
    let mut app = spawn_app(provider_sim::Config {
        latency_ms: 1_500,
        ..provider_sim::Config::for_tests()
    })
    .await;
    let order_id = app.reserved_order("cus_heidi").await;

    app.start_worker(worker_config(), app.provider());
    app.wait_for(&order_id, Status::Charging).await;
    app.feed(&order_id, &order_cancelled(&order_id)).await;
    assert!(app.payment(&order_id).await.cancel_requested);
    let payment = app.wait_for(&order_id, Status::Refunded).await;

    assert_eq!(payment.refunded_minor, AMOUNT);
    match app.events().await.as_slice() {
        [ShopEvent::PaymentCaptured(captured), ShopEvent::PaymentRefunded(refunded)] => {
            assert_eq!(captured.amount_minor, AMOUNT);
            assert_eq!(refunded.amount_minor, AMOUNT);
            assert_eq!(refunded.reason, RefundReason::OrderCancelled);
            assert_eq!(refunded.payment_id, captured.payment_id);
        }
        other => panic!("expected PaymentCaptured then PaymentRefunded, got {other:?}"),
    }
    let stats = app.provider_stats().await;
    assert_eq!(stats["amount_captured_minor"], AMOUNT);
    assert_eq!(stats["amount_refunded_minor"], AMOUNT);
    app.finish().await;
}

#[tokio::test]
async fn a_captured_order_that_is_cancelled_is_refunded() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    let order_id = app.reserved_order("cus_ivan").await;
    app.start_worker(worker_config(), app.provider());
    app.wait_for(&order_id, Status::Captured).await;

    app.feed(&order_id, &order_cancelled(&order_id)).await;
    app.wait_for(&order_id, Status::Refunded).await;

    assert!(matches!(
        app.events().await.as_slice(),
        [ShopEvent::PaymentCaptured(_), ShopEvent::PaymentRefunded(_)]
    ));
    app.finish().await;
}
