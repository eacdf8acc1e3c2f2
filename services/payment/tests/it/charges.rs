//! Charges: captured, declined, retried (unavailable or pending) then given up once the provider
//! confirms no capture exists, never twice.

use payment::domain::Status;
use shop_events::{PaymentFailureReason, ShopEvent};

use crate::helpers::*;

#[tokio::test]
async fn a_reserved_order_is_captured_and_announced() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    let order_id = app.reserved_order("cus_alice").await;
    assert_eq!(app.payment(&order_id).await.status, Status::Pending);

    app.start_worker(worker_config(), app.provider());
    let payment = app.wait_for(&order_id, Status::Captured).await;

    assert_eq!(payment.attempts, 1);
    let charge_id = payment.provider_reference.clone().expect("a charge id");
    match app.events().await.as_slice() {
        [ShopEvent::PaymentCaptured(e)] => {
            assert_eq!(e.order_id, order_id);
            assert_eq!(e.payment_id, payment.payment_id.to_string());
            assert_eq!((e.amount_minor, e.currency.as_str()), (AMOUNT, "EUR"));
            assert_eq!(e.provider_reference, charge_id);
        }
        other => panic!("expected one PaymentCaptured, got {other:?}"),
    }
    app.finish().await;
}

#[tokio::test]
async fn a_declined_card_fails_the_payment_with_the_providers_code() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    let order_id = app.reserved_order("cus_decline_bob").await;

    app.start_worker(worker_config(), app.provider());
    app.wait_for(&order_id, Status::Failed).await;

    match app.events().await.as_slice() {
        [ShopEvent::PaymentFailed(e)] => {
            assert_eq!(e.reason, PaymentFailureReason::Declined);
            assert_eq!(e.detail.as_deref(), Some("card_declined"));
        }
        other => panic!("expected one PaymentFailed, got {other:?}"),
    }
    app.finish().await;
}

#[tokio::test]
async fn a_provider_that_stays_down_is_retried_then_given_up() {
    let mut app = spawn_app(provider_sim::Config {
        failure_rate: 1.0,
        ..provider_sim::Config::for_tests()
    })
    .await;
    let order_id = app.reserved_order("cus_dave").await;

    app.start_worker(worker_config(), app.provider());
    let payment = app.wait_for(&order_id, Status::Failed).await;

    assert!(payment.attempts > 1, "tried {} times", payment.attempts);
    assert_eq!(payment.provider_reference, None);
    match app.events().await.as_slice() {
        [ShopEvent::PaymentFailed(e)] => {
            assert_eq!(e.reason, PaymentFailureReason::ProviderUnavailable)
        }
        other => panic!("expected one PaymentFailed, got {other:?}"),
    }
    app.finish().await;
}

#[tokio::test]
async fn a_charge_that_stays_pending_is_asked_again_then_given_up() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    let order_id = app.reserved_order("cus_pending_dan").await;

    app.start_worker(worker_config(), app.provider());
    let payment = app.wait_for(&order_id, Status::Failed).await;

    assert!(payment.attempts > 1, "asked {} times", payment.attempts);
    assert_eq!(payment.provider_reference, None);
    match app.events().await.as_slice() {
        [ShopEvent::PaymentFailed(e)] => {
            assert_eq!(e.reason, PaymentFailureReason::ProviderUnavailable);
            assert!(e.detail.as_deref().unwrap_or_default().contains("pending"));
        }
        other => panic!("expected one PaymentFailed, got {other:?}"),
    }
    let stats = app.provider_stats().await;
    assert_eq!(
        (&stats["charges_pending"], &stats["charges_voided"]),
        (&0.into(), &1.into()),
        "one charge, asked again by key, voided when given up"
    );
    assert_eq!(stats["charges_captured"], 0);
    assert_eq!(stats["injected_failures"], 0);
    app.finish().await;
}

#[tokio::test]
async fn a_redelivered_reservation_creates_no_second_payment() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    let order_id = app.reserved_order("cus_erin").await;
    app.feed(&order_id, &inventory_reserved(&order_id)).await;
    assert_eq!(app.payments(&order_id).await.len(), 1);

    app.start_worker(worker_config(), app.provider());
    app.wait_for(&order_id, Status::Captured).await;
    app.feed(&order_id, &inventory_reserved(&order_id)).await;

    assert_eq!(app.payments(&order_id).await.len(), 1);
    assert!(matches!(
        app.events().await.as_slice(),
        [ShopEvent::PaymentCaptured(_)]
    ));
    assert_eq!(app.provider_stats().await["charges_captured"], 1);
    app.finish().await;
}

#[tokio::test]
async fn a_reservation_seen_before_its_order_waits_for_the_customer() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    let order_id = new_order_id();
    app.feed(&order_id, &inventory_reserved(&order_id)).await;
    app.start_worker(worker_config(), app.provider());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(app.payment(&order_id).await.status, Status::Pending);

    app.feed(&order_id, &order_placed(&order_id, "cus_frank"))
        .await;
    let payment = app.wait_for(&order_id, Status::Captured).await;

    assert_eq!(payment.customer_id.as_deref(), Some("cus_frank"));
    app.finish().await;
}
