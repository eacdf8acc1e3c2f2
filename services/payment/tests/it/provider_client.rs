//! The provider client against the simulator over real HTTP: retries, timeouts, the breaker and
//! idempotency keys, each against a simulator of the test's own.

use std::time::Duration;

use choreo::resilience::{Backoff, BreakerConfig, BreakerState};
use payment::provider::{
    ChargeRequest, Outcome, ProviderClient, ProviderConfig, RefundOutcome, RefundRequest,
};
use provider_sim::Config;

use crate::helpers::{spawn_sim, Sim};

/// Millisecond backoff, and a breaker that opens after 2 failures among the last 4 calls for a
/// minute.
fn fast_config(base_url: &str) -> ProviderConfig {
    ProviderConfig {
        backoff: Backoff {
            first: Duration::from_millis(1),
            max: Duration::from_millis(5),
        },
        breaker: BreakerConfig {
            window: 4,
            failure_threshold: 2,
            open_for: Duration::from_secs(60),
            ..BreakerConfig::default()
        },
        ..ProviderConfig::new(base_url)
    }
}

fn client(sim: &Sim, attempts: u32, timeout: Duration) -> ProviderClient {
    ProviderClient::new(ProviderConfig {
        timeout,
        attempts,
        ..fast_config(&sim.base)
    })
    .expect("client builds")
}

fn charge(key: &str, customer_id: &str, amount_minor: i64) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: key.into(),
        order_id: format!("order-{key}"),
        customer_id: customer_id.into(),
        amount_minor,
        currency: "EUR".into(),
    }
}

#[tokio::test]
async fn the_client_captures_declines_and_refunds() {
    let sim = spawn_sim(Config::for_tests()).await;
    let client = client(&sim, 3, Duration::from_secs(2));

    let Outcome::Captured { charge_id } = client.charge(&charge("k1", "cus_1", 900)).await else {
        panic!("expected a capture");
    };
    let declined = client.charge(&charge("k2", "cus_decline", 900)).await;
    assert!(matches!(declined, Outcome::Declined { ref code, .. } if code == "card_declined"));

    let refund = |key: &str, amount_minor| RefundRequest {
        idempotency_key: key.into(),
        charge_id: charge_id.clone(),
        amount_minor,
    };
    assert!(matches!(
        client.refund(&refund("r1", 900)).await,
        RefundOutcome::Refunded { .. }
    ));
    let too_much = client.refund(&refund("r2", 1)).await;
    assert!(
        matches!(too_much, RefundOutcome::Rejected { ref detail } if detail.starts_with("409"))
    );
    assert_eq!(client.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn flaky_calls_are_retried_until_captured_once() {
    let sim = spawn_sim(Config::for_tests()).await;
    let client = ProviderClient::new(ProviderConfig {
        attempts: 10,
        // Half the calls fail: the default 10 failures among 20 would open now and then; only
        // a run of 64 failures opens this one.
        breaker: BreakerConfig {
            window: 64,
            failure_threshold: 64,
            ..BreakerConfig::default()
        },
        ..fast_config(&sim.base)
    })
    .unwrap();
    for i in 0..5 {
        let outcome = client
            .charge(&charge(&format!("k{i}"), "cus_flaky_1", 100))
            .await;
        assert!(matches!(outcome, Outcome::Captured { .. }), "{outcome:?}");
    }
    let stats = sim.stats().await;
    assert_eq!(stats["charges_captured"], 5);
    assert!(stats["injected_failures"].as_u64().unwrap() > 0, "{stats}");
}

#[tokio::test]
async fn the_breaker_opens_and_stops_calling_a_failing_provider() {
    let sim = spawn_sim(Config {
        failure_rate: 1.0,
        ..Config::for_tests()
    })
    .await;
    let client = client(&sim, 3, Duration::from_secs(2));

    let first = client.charge(&charge("k1", "cus_1", 100)).await;
    assert!(
        matches!(first, Outcome::Unavailable { ref detail, .. } if detail.starts_with("circuit open")),
        "{first:?}"
    );
    assert_eq!(client.breaker_state(), BreakerState::Open);
    let second = client.charge(&charge("k2", "cus_1", 100)).await;
    assert!(matches!(second, Outcome::Unavailable { .. }));

    let stats = sim.stats().await;
    assert_eq!(
        stats["injected_failures"], 2,
        "the open breaker sent nothing more"
    );
}

#[tokio::test]
async fn a_timed_out_charge_retried_with_its_key_is_charged_once() {
    let sim = spawn_sim(Config {
        latency_ms: 400,
        ..Config::for_tests()
    })
    .await;
    let impatient = client(&sim, 1, Duration::from_millis(100));
    let outcome = impatient.charge(&charge("k1", "cus_1", 100)).await;
    assert!(
        matches!(outcome, Outcome::Unavailable { .. }),
        "{outcome:?}"
    );

    let patient = client(&sim, 1, Duration::from_secs(2));
    let outcome = patient.charge(&charge("k1", "cus_1", 100)).await;
    assert!(matches!(outcome, Outcome::Captured { .. }), "{outcome:?}");
    let stats = sim.stats().await;
    assert_eq!(stats["charges_captured"], 1);
}

#[tokio::test]
async fn pending_charges_keep_the_breaker_closed_and_are_declined_when_never_authenticated() {
    let sim = spawn_sim(Config {
        pending_ms: 300,
        ..Config::for_tests()
    })
    .await;
    let client = client(&sim, 3, Duration::from_secs(2));
    for key in ["k1", "k2", "k3", "k4", "k5"] {
        let outcome = client.charge(&charge(key, "cus_pending_1", 100)).await;
        assert!(matches!(outcome, Outcome::Pending { .. }), "{outcome:?}");
    }
    assert_eq!(
        client.breaker_state(),
        BreakerState::Closed,
        "a pending charge is an answer, not a failure"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let declined = loop {
        match client.charge(&charge("k1", "cus_pending_1", 100)).await {
            Outcome::Pending { .. } if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            outcome => break outcome,
        }
    };
    assert!(
        matches!(declined, Outcome::Declined { ref code, .. } if code == "authentication_timeout"),
        "{declined:?}"
    );
    let stats = sim.stats().await;
    assert_eq!(stats["charges_captured"], 0);
    assert_eq!(stats["injected_failures"], 0);
}

#[tokio::test]
async fn an_unreachable_provider_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = ProviderClient::new(ProviderConfig {
        attempts: 2,
        ..fast_config(&base)
    })
    .unwrap();
    let outcome = client.charge(&charge("k1", "cus_1", 100)).await;
    assert!(
        matches!(outcome, Outcome::Unavailable { ref detail, .. } if detail.contains("2 attempts")),
        "{outcome:?}"
    );
}
