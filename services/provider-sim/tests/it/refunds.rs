use crate::helpers::spawn_sim;
use provider_sim::Config;

#[tokio::test]
async fn a_captured_charge_is_refunded_in_parts_up_to_its_amount() {
    let sim = spawn_sim(Config::for_tests()).await;
    let (_, charge) = sim.charge("k1", "cus_1", 1000).await;
    let charge_id = charge["charge_id"].as_str().unwrap();

    let (status, first) = sim.refund("r1", charge_id, 600).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "refunded");
    assert!(first["refund_id"].as_str().unwrap().starts_with("re_"));

    let (status, _) = sim.refund("r2", charge_id, 401).await;
    assert_eq!(status, 409);
    let (status, _) = sim.refund("r3", charge_id, 400).await;
    assert_eq!(status, 200);

    let (_, shown) = sim.get(&format!("/v1/charges/{charge_id}")).await;
    assert_eq!(shown["refunded_minor"], 1000);
    assert_eq!(shown["refunds"].as_array().unwrap().len(), 2);
    let (_, stats) = sim.get("/stats").await;
    assert_eq!(stats["refunds"], 2);
    assert_eq!(stats["amount_refunded_minor"], 1000);
}

#[tokio::test]
async fn a_refund_retry_with_the_same_key_returns_the_same_refund() {
    let sim = spawn_sim(Config::for_tests()).await;
    let (_, charge) = sim.charge("k1", "cus_1", 1000).await;
    let charge_id = charge["charge_id"].as_str().unwrap();
    let (_, first) = sim.refund("r1", charge_id, 1000).await;
    let (status, again) = sim.refund("r1", charge_id, 1000).await;
    assert_eq!(status, 200);
    assert_eq!(first, again);
    let (status, _) = sim.refund("r1", charge_id, 999).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn unknown_and_declined_charges_cannot_be_refunded() {
    let sim = spawn_sim(Config::for_tests()).await;
    let (status, body) = sim.refund("r1", "ch_nope", 1).await;
    assert_eq!(status, 404);
    assert!(body["detail"].is_string());

    let (_, declined) = sim.charge("k1", "cus_decline", 100).await;
    let (status, _) = sim
        .refund("r2", declined["charge_id"].as_str().unwrap(), 1)
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn a_pending_charge_cannot_be_refunded() {
    let sim = spawn_sim(Config {
        pending_ms: 60_000,
        ..Config::for_tests()
    })
    .await;
    let (_, pending) = sim.charge("k1", "cus_pending_1", 100).await;
    assert_eq!(pending["status"], "pending");
    let (status, body) = sim
        .refund("r1", pending["charge_id"].as_str().unwrap(), 1)
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("pending"),
        "{body}"
    );
}
