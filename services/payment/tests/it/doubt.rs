//! Outcomes the worker did not see: a charge captured but answered after the client's timeout,
//! a provider that stays down, an order cancelled while its charge is in doubt. Each is settled
//! by asking the provider (lookup, void) and never guessed.

use std::time::Duration;

use payment::domain::Status;
use payment::worker::WorkerConfig;
use serde_json::json;
use shop_events::{PaymentFailureReason, RefundReason, ShopEvent};

use crate::helpers::*;

#[tokio::test]
async fn a_charge_answered_after_the_client_timeout_is_captured_once_and_confirmed() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    app.sim.set_faults(json!({"answer_after_ms": 1_500})).await;
    let order_id = app.reserved_order("cus_kim").await;

    app.start_worker(worker_config(), app.impatient_provider(300));
    let payment = app.wait_for(&order_id, Status::Captured).await;

    let charge_id = payment.provider_reference.clone().expect("a charge id");
    match app.events().await.as_slice() {
        [ShopEvent::PaymentCaptured(e)] => assert_eq!(e.provider_reference, charge_id),
        other => panic!("expected one PaymentCaptured, got {other:?}"),
    }
    let stats = app.provider_stats().await;
    assert_eq!(stats["charges_captured"], 1, "exactly one charge: {stats}");
    assert_eq!(stats["captured_minor"], AMOUNT);
    assert!(stats["late_answers"].as_u64().unwrap() >= 1, "{stats}");
    app.finish().await;
}

#[tokio::test]
async fn a_late_capture_of_an_order_cancelled_while_it_was_in_doubt_is_refunded() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    app.sim.set_faults(json!({"answer_after_ms": 1_500})).await;
    let order_id = app.reserved_order("cus_lou").await;

    app.start_worker(worker_config(), app.impatient_provider(500));
    app.wait_for(&order_id, Status::Charging).await;
    app.feed(&order_id, &order_cancelled(&order_id)).await;
    let payment = app.wait_for(&order_id, Status::Refunded).await;

    assert_eq!(payment.refunded_minor, AMOUNT);
    match app.events().await.as_slice() {
        [ShopEvent::PaymentCaptured(captured), ShopEvent::PaymentRefunded(refunded)] => {
            assert_eq!(refunded.payment_id, captured.payment_id);
            assert_eq!(refunded.reason, RefundReason::OrderCancelled);
        }
        other => panic!("expected PaymentCaptured then PaymentRefunded, got {other:?}"),
    }
    let stats = app.provider_stats().await;
    assert_eq!(stats["captured_minor"], AMOUNT);
    assert_eq!(stats["refunded_minor"], AMOUNT, "the money went back");
    app.finish().await;
}

#[tokio::test]
async fn a_payment_whose_provider_stays_down_stays_in_doubt_until_the_provider_says_no_capture_exists(
) {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    app.sim.set_faults(json!({"failure_rate": 1.0})).await;
    let order_id = app.reserved_order("cus_max").await;

    // Gives up after one second, but only once the provider answers.
    app.start_worker(worker_config(), app.provider());
    let doubtful = app
        .wait_until(&order_id, "asked past its give-up time", |p| {
            p.attempts >= 3
                && chrono::Utc::now() - p.created_at > chrono::Duration::milliseconds(1_500)
        })
        .await;
    assert_eq!(doubtful.status, Status::InDoubt);
    assert!(app.events().await.is_empty(), "nothing announced by guess");

    app.sim.clear_faults().await;
    let payment = app.wait_for(&order_id, Status::Failed).await;

    assert_eq!(payment.provider_reference, None);
    match app.events().await.as_slice() {
        [ShopEvent::PaymentFailed(e)] => {
            assert_eq!(e.reason, PaymentFailureReason::ProviderUnavailable);
            assert!(
                e.detail.as_deref().unwrap_or_default().contains("voided"),
                "{e:?}"
            );
        }
        other => panic!("expected one PaymentFailed, got {other:?}"),
    }
    let stats = app.provider_stats().await;
    assert_eq!(stats["charges_voided"], 1, "the key is taken: {stats}");
    assert_eq!(stats["charges_captured"], 0);
    app.finish().await;
}

#[tokio::test]
async fn a_cancelled_payment_whose_worker_was_lost_after_the_capture_is_refunded() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    let order_id = app.reserved_order("cus_ned").await;
    // A worker charged it, then died before recording the answer; its lease ran out.
    let payment_id = app.lose_the_worker_of(&order_id).await;
    app.sim
        .charge(&payment_id.to_string(), &order_id, "cus_ned")
        .await;
    app.feed(&order_id, &order_cancelled(&order_id)).await;

    let patient = WorkerConfig {
        give_up_after: Duration::from_secs(60),
        ..worker_config()
    };
    app.start_worker(patient, app.provider());
    app.wait_for(&order_id, Status::Refunded).await;

    assert!(matches!(
        app.events().await.as_slice(),
        [ShopEvent::PaymentCaptured(_), ShopEvent::PaymentRefunded(_)]
    ));
    let stats = app.provider_stats().await;
    assert_eq!(stats["charges_captured"], 1);
    assert_eq!(stats["refunded_minor"], AMOUNT);
    app.finish().await;
}

#[tokio::test]
async fn a_cancelled_payment_whose_worker_was_lost_before_sending_is_voided_without_a_charge() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    let order_id = app.reserved_order("cus_ola").await;
    // A worker claimed it and died before its request left; its lease ran out.
    app.lose_the_worker_of(&order_id).await;
    app.feed(&order_id, &order_cancelled(&order_id)).await;

    app.start_worker(worker_config(), app.provider());
    let payment = app.wait_for(&order_id, Status::Voided).await;

    assert_eq!(payment.provider_reference, None);
    match app.events().await.as_slice() {
        [ShopEvent::PaymentFailed(e)] => {
            assert_eq!(e.reason, PaymentFailureReason::OrderCancelled)
        }
        other => panic!("expected one PaymentFailed, got {other:?}"),
    }
    let stats = app.provider_stats().await;
    assert_eq!(stats["charges_captured"], 0, "never charged: {stats}");
    assert_eq!(stats["charges_voided"], 1, "its key is taken");
    app.finish().await;
}
