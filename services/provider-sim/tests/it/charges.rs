use std::time::{Duration, Instant};

use crate::helpers::spawn_sim;
use provider_sim::Config;

#[tokio::test]
async fn an_ordinary_charge_is_captured() {
    let sim = spawn_sim(Config::for_tests()).await;
    let (status, body) = sim.charge("k1", "cus_1", 1250).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "captured");
    assert!(body["charge_id"].as_str().unwrap().starts_with("ch_"));
    assert!(body.get("decline_code").is_none());

    let (status, shown) = sim
        .get(&format!(
            "/v1/charges/{}",
            body["charge_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(shown["amount_minor"], 1250);
    assert_eq!(shown["currency"], "EUR");
    assert_eq!(shown["refunds"], serde_json::json!([]));
}

#[tokio::test]
async fn decline_customers_are_declined_with_card_declined() {
    let sim = spawn_sim(Config::for_tests()).await;
    let (status, body) = sim.charge("k1", "cus_decline_42", 100).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "declined");
    assert_eq!(body["decline_code"], "card_declined");
}

#[tokio::test]
async fn amounts_above_the_limit_are_declined_with_amount_limit() {
    let sim = spawn_sim(Config {
        decline_above_minor: Some(10_000),
        ..Config::for_tests()
    })
    .await;
    let (_, over) = sim.charge("k1", "cus_1", 10_001).await;
    assert_eq!(over["status"], "declined");
    assert_eq!(over["decline_code"], "amount_limit");
    let (_, at) = sim.charge("k2", "cus_1", 10_000).await;
    assert_eq!(at["status"], "captured");
}

#[tokio::test]
async fn a_retry_with_the_same_key_returns_the_same_charge() {
    let sim = spawn_sim(Config::for_tests()).await;
    let (_, first) = sim.charge("k1", "cus_1", 500).await;
    let (status, again) = sim.charge("k1", "cus_1", 500).await;
    assert_eq!(status, 200);
    assert_eq!(first, again);
    let (_, stats) = sim.get("/stats").await;
    assert_eq!(stats["charges_captured"], 1);
    assert_eq!(stats["amount_captured_minor"], 500);
}

#[tokio::test]
async fn a_key_reused_with_another_amount_conflicts() {
    let sim = spawn_sim(Config::for_tests()).await;
    sim.charge("k1", "cus_1", 500).await;
    let (status, body) = sim.charge("k1", "cus_1", 600).await;
    assert_eq!(status, 409);
    assert!(body["detail"].as_str().unwrap().contains("idempotency key"));
}

#[tokio::test]
async fn failure_rate_one_answers_503_and_records_nothing() {
    let sim = spawn_sim(Config {
        failure_rate: 1.0,
        ..Config::for_tests()
    })
    .await;
    let (status, body) = sim.charge("k1", "cus_1", 500).await;
    assert_eq!(status, 503);
    assert_eq!(body["detail"], "provider unavailable");
    let (_, stats) = sim.get("/stats").await;
    assert_eq!(stats["injected_failures"], 1);
    assert_eq!(stats["charges_captured"], 0);
    assert_eq!(stats["charges_declined"], 0);
}

#[tokio::test]
async fn flaky_customers_fail_sometimes_and_succeed_sometimes() {
    let sim = spawn_sim(Config::for_tests()).await;
    let mut statuses = Vec::new();
    for i in 0..40 {
        statuses.push(sim.charge(&format!("k{i}"), "cus_flaky_1", 100).await.0);
    }
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
}

#[tokio::test]
async fn a_pending_charge_answers_pending_at_once_and_declined_after_its_time() {
    let sim = spawn_sim(Config {
        pending_ms: 500,
        ..Config::for_tests()
    })
    .await;
    let started = Instant::now();
    let (status, first) = sim.charge("k1", "cus_pending_1", 100).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "pending");
    assert!(first.get("decline_code").is_none());
    let charge_id = first["charge_id"].as_str().unwrap().to_owned();

    let (_, again) = sim.charge("k1", "cus_pending_1", 100).await;
    let (_, shown) = sim.get(&format!("/v1/charges/{charge_id}")).await;
    let (_, stats) = sim.get("/stats").await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "too slow to see the charge pending"
    );
    assert_eq!(again, first, "asked again, it is still pending");
    assert_eq!(shown["status"], "pending");
    assert_eq!(stats["charges_pending"], 1);
    assert_eq!(stats["charges_declined"], 0);

    let expired = sim
        .charge_until("k1", "cus_pending_1", 100, "declined")
        .await;
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(expired["charge_id"], charge_id.as_str());
    assert_eq!(expired["decline_code"], "authentication_timeout");
    let (_, shown) = sim.get(&format!("/v1/charges/{charge_id}")).await;
    assert_eq!(shown["status"], "declined");
    assert_eq!(shown["decline_code"], "authentication_timeout");
    let (_, stats) = sim.get("/stats").await;
    assert_eq!(
        (&stats["charges_pending"], &stats["charges_declined"]),
        (&0.into(), &1.into())
    );
    assert_eq!(stats["charges_captured"], 0);
}

#[tokio::test]
async fn bad_input_is_a_400_with_a_json_error() {
    let sim = spawn_sim(Config::for_tests()).await;
    for body in [
        "not json",
        r#"{"idempotency_key":"k"}"#,
        r#"{"idempotency_key":"k","order_id":"o","customer_id":"c","amount_minor":0,"currency":"EUR"}"#,
        r#"{"idempotency_key":"k","order_id":"o","customer_id":"c","amount_minor":5,"currency":"euro"}"#,
        r#"{"idempotency_key":"","order_id":"o","customer_id":"c","amount_minor":5,"currency":"EUR"}"#,
    ] {
        let (status, answer) = sim.post_raw("/v1/charges", body).await;
        assert_eq!(status, 400, "{body}");
        assert!(answer["detail"].is_string(), "{answer}");
    }
    let (status, answer) = sim.post_raw("/v1/refunds", r#"{"charge_id":"ch_1"}"#).await;
    assert_eq!(status, 400);
    assert!(answer["detail"].is_string());
}

#[tokio::test]
async fn an_unknown_charge_is_a_404() {
    let sim = spawn_sim(Config::for_tests()).await;
    let (status, body) = sim.get("/v1/charges/ch_nope").await;
    assert_eq!(status, 404);
    assert!(body["detail"].is_string());
}
