//! Faults set at run time through `/admin/faults`: late answers, bursts of 503s, latency, and
//! back to normal.

use std::time::Duration;

use crate::helpers::{charge_body, spawn_sim, TestSim};
use provider_sim::Config;
use serde_json::{json, Value};

/// A client that gives up after `ms`.
fn impatient(ms: u64) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(ms))
        .build()
        .unwrap()
}

/// Polls `/stats` until `field` is `value` (for at most 5 s).
async fn stats_until(sim: &TestSim, field: &str, value: Value) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, stats) = sim.get("/stats").await;
        if stats[field] == value {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{field} still {} after 5 s, not {value}",
            stats[field]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn faults_take_the_operator_token_when_one_is_set() {
    let sim = spawn_sim(Config {
        operator_token: Some("op-token".to_owned().into()),
        ..Config::for_tests()
    })
    .await;
    let (status, _) = sim
        .put("/admin/faults", &json!({"failure_rate": 1.0}))
        .await;
    assert_eq!(status, 401);
    let response = sim
        .http
        .put(format!("{}/admin/faults", sim.base))
        .bearer_auth("op-token")
        .json(&json!({"failure_rate": 0.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, _) = sim.get("/stats").await;
    assert_eq!(status, 200, "the provider's own API stays as it was");
}

#[tokio::test]
async fn faults_are_set_shown_and_cleared() {
    let sim = spawn_sim(Config::for_tests()).await;
    let (status, set) = sim
        .put(
            "/admin/faults",
            &json!({"latency_ms": 5, "failure_rate": 0.25, "answer_after_ms": 3000}),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        set,
        json!({"latency_ms": 5, "failure_rate": 0.25, "answer_after_ms": 3000})
    );
    assert_eq!(sim.get("/admin/faults").await.1, set);

    let (status, replaced) = sim
        .put("/admin/faults", &json!({"failure_rate": 0.5}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        replaced,
        json!({"latency_ms": 0, "failure_rate": 0.5, "answer_after_ms": null}),
        "a PUT replaces the faults whole"
    );

    let (status, cleared) = sim.delete("/admin/faults").await;
    assert_eq!(status, 200);
    assert_eq!(
        cleared,
        json!({"latency_ms": 0, "failure_rate": 0.0, "answer_after_ms": null})
    );
    for bad in [
        json!({"failure_rate": 2}),
        json!({"latncy_ms": 1}),
        json!([]),
    ] {
        let (status, body) = sim.put("/admin/faults", &bad).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["detail"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn a_late_answer_captures_at_once_and_answers_after_the_clients_timeout() {
    let sim = spawn_sim(Config::for_tests()).await;
    sim.put("/admin/faults", &json!({"answer_after_ms": 600}))
        .await;

    let lost = impatient(150)
        .post(format!("{}/v1/charges", sim.base))
        .json(&charge_body("k1", "cus_1", 900))
        .send()
        .await;
    assert!(lost.is_err_and(|e| e.is_timeout()));

    let found = sim.lookup("k1").await.expect("captured before the answer");
    assert_eq!(found["status"], "captured");
    let (_, stats) = sim.get("/stats").await;
    assert_eq!(stats["captured_minor"], 900);
    assert_eq!(stats["late_answers"], 1);

    sim.delete("/admin/faults").await;
    let (status, answer) = sim.charge("k1", "cus_1", 900).await;
    assert_eq!(status, 200);
    assert_eq!(answer["charge_id"], found["charge_id"]);
}

#[tokio::test]
async fn a_failure_burst_answers_503_to_every_call_until_it_is_cleared() {
    let sim = spawn_sim(Config::for_tests()).await;
    let (_, captured) = sim.charge("k0", "cus_1", 100).await;
    sim.put("/admin/faults", &json!({"failure_rate": 1.0}))
        .await;

    assert_eq!(sim.charge("k1", "cus_1", 100).await.0, 503);
    let refund = sim
        .refund("r1", captured["charge_id"].as_str().unwrap(), 100)
        .await;
    assert_eq!(refund.0, 503);
    assert_eq!(sim.get("/v1/charges?idempotency_key=k0").await.0, 503);
    assert_eq!(sim.void("k1", "cus_1", 100).await.0, 503);
    let (_, stats) = sim.get("/stats").await;
    assert_eq!(stats["injected_failures"], 4);
    assert_eq!(stats["charges_captured"], 1, "a failed call does nothing");

    sim.delete("/admin/faults").await;
    assert_eq!(sim.charge("k1", "cus_1", 100).await.0, 200);
}

#[tokio::test]
async fn a_call_delayed_by_latency_is_still_done_when_its_client_gave_up() {
    let sim = spawn_sim(Config::for_tests()).await;
    sim.put("/admin/faults", &json!({"latency_ms": 400})).await;

    let gave_up = impatient(100)
        .post(format!("{}/v1/charges", sim.base))
        .json(&charge_body("k1", "cus_1", 300))
        .send()
        .await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()));
    let (_, stats) = sim.get("/stats").await;
    assert_eq!(stats["charges_captured"], 0, "not worked on yet");

    stats_until(&sim, "charges_captured", json!(1)).await;
    sim.delete("/admin/faults").await;
    assert_eq!(sim.lookup("k1").await.unwrap()["status"], "captured");
}
