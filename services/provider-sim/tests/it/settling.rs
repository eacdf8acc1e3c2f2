//! What a merchant needs to settle an outcome it did not see: one charge per idempotency key,
//! lookup by key, void by key, the list of all charges, and the money in `/stats`.

use std::time::Duration;

use crate::helpers::{charge_body, spawn_sim};
use provider_sim::Config;

#[tokio::test]
async fn the_same_key_twice_is_one_charge_even_when_the_first_answer_was_lost() {
    let sim = spawn_sim(Config {
        answer_after_ms: Some(500),
        ..Config::for_tests()
    })
    .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let lost = impatient
        .post(format!("{}/v1/charges", sim.base))
        .json(&charge_body("k1", "cus_1", 500))
        .send()
        .await;
    assert!(lost.is_err_and(|e| e.is_timeout()), "the answer comes late");

    let (status, again) = sim.charge("k1", "cus_1", 500).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["status"], "captured");
    let found = sim.lookup("k1").await.expect("a charge under k1");
    assert_eq!(found["charge_id"], again["charge_id"]);
    let (_, stats) = sim.get("/stats").await;
    assert_eq!(stats["charges_captured"], 1, "{stats}");
    assert_eq!(stats["captured_minor"], 500, "{stats}");
}

#[tokio::test]
async fn a_charge_is_found_by_its_idempotency_key_and_an_unused_key_finds_none() {
    let sim = spawn_sim(Config::for_tests()).await;
    let (_, made) = sim.charge("k1", "cus_1", 700).await;
    let found = sim.lookup("k1").await.expect("a charge under k1");
    assert_eq!(found["charge_id"], made["charge_id"]);
    assert_eq!(found["idempotency_key"], "k1");
    assert_eq!(found["status"], "captured");
    assert_eq!(found["amount_minor"], 700);
    assert_eq!(found["refunded_minor"], 0);
    assert_eq!(sim.lookup("k2").await, None);
}

#[tokio::test]
async fn a_void_settles_a_pending_charge_and_cannot_undo_a_capture() {
    let sim = spawn_sim(Config::for_tests()).await;
    let (_, pending) = sim.charge("p1", "cus_pending_1", 100).await;
    assert_eq!(pending["status"], "pending");
    let (status, voided) = sim.void("p1", "cus_pending_1", 100).await;
    assert_eq!(status, 200, "{voided}");
    assert_eq!(voided["charge_id"], pending["charge_id"]);
    assert_eq!(voided["status"], "voided");
    let (_, replayed) = sim.charge("p1", "cus_pending_1", 100).await;
    assert_eq!(replayed["status"], "voided");

    let (_, captured) = sim.charge("c1", "cus_1", 100).await;
    let (status, answer) = sim.void("c1", "cus_1", 100).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer, captured,
        "a capture is not voided; the answer says so"
    );
    let (status, _) = sim.void("c1", "cus_1", 101).await;
    assert_eq!(status, 409, "a key used with another request");

    let (_, stats) = sim.get("/stats").await;
    assert_eq!(
        (&stats["charges_pending"], &stats["charges_voided"]),
        (&0.into(), &1.into())
    );
    assert_eq!(stats["charges_captured"], 1);
}

#[tokio::test]
async fn a_void_under_an_unused_key_keeps_a_later_charge_from_capturing() {
    let sim = spawn_sim(Config::for_tests()).await;
    let (status, voided) = sim.void("k1", "cus_1", 100).await;
    assert_eq!(status, 200, "{voided}");
    assert_eq!(voided["status"], "voided");

    let (status, late) = sim.charge("k1", "cus_1", 100).await;
    assert_eq!(status, 200);
    assert_eq!(late, voided, "the key is taken by the void");
    let (_, stats) = sim.get("/stats").await;
    assert_eq!(stats["charges_captured"], 0);
    assert_eq!(stats["captured_minor"], 0);
}

#[tokio::test]
async fn charges_are_listed_in_creation_order_page_by_page() {
    let sim = spawn_sim(Config::for_tests()).await;
    for i in 0..5 {
        sim.charge(&format!("k{i}"), "cus_1", 100 + i).await;
    }
    let mut keys = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = sim.get(&format!("/v1/charges?after={after}&limit=2")).await;
        assert_eq!(status, 200, "{page}");
        for charge in page["charges"].as_array().unwrap() {
            keys.push(charge["idempotency_key"].as_str().unwrap().to_owned());
            after = charge["seq"].as_u64().unwrap();
        }
        match page["next_after"].as_u64() {
            Some(next) => assert_eq!(next, after),
            None => break,
        }
    }
    assert_eq!(keys, ["k0", "k1", "k2", "k3", "k4"]);

    let (status, _) = sim.get("/v1/charges?limit=0").await;
    assert_eq!(status, 400);
    let (status, body) = sim.get("/v1/charges?after=minus").await;
    assert_eq!(status, 400);
    assert!(body["detail"].is_string(), "{body}");
}

#[tokio::test]
async fn stats_report_the_money_captured_and_refunded() {
    let sim = spawn_sim(Config::for_tests()).await;
    let (_, first) = sim.charge("k1", "cus_1", 1_000).await;
    sim.charge("k2", "cus_1", 250).await;
    sim.charge("k3", "cus_decline", 999).await;
    sim.refund("r1", first["charge_id"].as_str().unwrap(), 400)
        .await;

    let (_, stats) = sim.get("/stats").await;
    assert_eq!(stats["captured_minor"], 1_250, "{stats}");
    assert_eq!(stats["refunded_minor"], 400, "{stats}");
    assert_eq!(stats["amount_captured_minor"], 1_250, "older readers");
    assert_eq!(stats["amount_refunded_minor"], 400, "older readers");
    for field in [
        "charges_declined",
        "charges_voided",
        "late_answers",
        "injected_failures",
    ] {
        assert!(stats[field].is_u64(), "{field} in {stats}");
    }
}
