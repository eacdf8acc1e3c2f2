//! `order replay` through the binary, against real PostgreSQL and the stack's registry: its own
//! events turned back into orders and decisions, the outcomes it consumed applied by its handler,
//! OrderPlaced not announced again, a replay of the same file twice changing nothing. No Kafka.

use std::process::Output;
use std::sync::Arc;

use choreo::avro::Codec;
use choreo::replay::testing::{expect_exit, run, DumpBuilder, Scratch};
use choreo::testing::{registry, unique, TestDb};
use shop_events::{OrderCancelled, OrderConfirmed, OrderLine, OrderPlaced};

fn order(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_order"), args)
}

fn order_id() -> String {
    unique("o").replace('.', "-")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn placed(order_id: &str, sku: &str, quantity: i32) -> OrderPlaced {
    OrderPlaced {
        order_id: order_id.into(),
        customer_id: "cus_replay".into(),
        lines: vec![OrderLine {
            sku: sku.into(),
            quantity,
            unit_price_minor: 1250,
        }],
        currency: "EUR".into(),
        total_minor: 1250 * i64::from(quantity),
        placed_at: now_ms(),
        deadline_at: now_ms() + 30_000,
    }
}

async fn statuses(pool: &sqlx::PgPool) -> Vec<(String, String, Option<String>)> {
    sqlx::query_as("select order_id, status, cancel_reason from orders order by order_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn published(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from choreo_outbox")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_replay_turns_its_own_events_back_into_orders_and_decisions() {
    let scratch = Scratch::new();
    let own = unique("test.replay.orders");
    let others = unique("test.replay.outcomes");
    let (confirmed, cancelled) = (order_id(), order_id());
    let mut events = DumpBuilder::new(Arc::new(Codec::new(&registry()).unwrap()));
    events
        .add(&own, 0, &confirmed, &placed(&confirmed, "MUG-01", 1))
        .await;
    let reserved = shop_events::InventoryReserved {
        order_id: confirmed.clone(),
        reservation_id: "res-1".into(),
        items: vec![shop_events::ReservedItem {
            sku: "MUG-01".into(),
            quantity: 1,
        }],
        currency: "EUR".into(),
        amount_minor: 1250,
        reserved_at: now_ms(),
    };
    events.add(&others, 0, &confirmed, &reserved).await;
    let captured = shop_events::PaymentCaptured {
        order_id: confirmed.clone(),
        payment_id: "pay-1".into(),
        currency: "EUR".into(),
        amount_minor: 1250,
        provider_reference: "ref-1".into(),
        captured_at: now_ms(),
    };
    events.add(&others, 0, &confirmed, &captured).await;
    let confirmation = OrderConfirmed {
        order_id: confirmed.clone(),
        payment_id: "pay-1".into(),
        currency: "EUR".into(),
        total_minor: 1250,
        confirmed_at: now_ms(),
    };
    events.add(&own, 0, &confirmed, &confirmation).await;
    events
        .add(&own, 1, &cancelled, &placed(&cancelled, "TEE-01", 2))
        .await;
    let by_customer = OrderCancelled {
        order_id: cancelled.clone(),
        reason: shop_events::CancelReason::CustomerRequest,
        detail: None,
        cancelled_at: now_ms(),
    };
    events.add(&own, 1, &cancelled, &by_customer).await;
    let file = scratch.file("order.jsonl");
    events.write(&file);

    let replay = TestDb::create().await;
    let replay_once = |extra: &[&str]| {
        let mut args = vec![
            "replay",
            "--input",
            file.to_str().unwrap(),
            "--topic",
            &own,
            "--topic",
            &others,
            "--database-url",
            &replay.url,
        ];
        args.extend_from_slice(extra);
        order(&args)
    };
    let (stdout, _) = expect_exit(&replay_once(&[]), 0);
    assert!(
        stdout.contains("order replay: 6 record(s) of 2 order(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("handler failures: 0"), "{stdout}");
    assert!(
        stdout.contains("a confirmation that follows consumed events: 1"),
        "{stdout}"
    );
    assert!(stdout.contains("shop.order.OrderConfirmed: 1"), "{stdout}");
    assert!(stdout.contains("shop.order.OrderCancelled: 1"), "{stdout}");
    assert!(stdout.contains("shop.order.OrderPlaced: 2"), "{stdout}");
    let (_, would_publish) = stdout.split_once("would publish").unwrap();
    assert!(!would_publish.contains("OrderPlaced"), "{stdout}");
    let before = statuses(&replay.pool).await;
    let status = |order: &str| {
        before
            .iter()
            .find(|(o, _, _)| o == order)
            .map(|(_, s, r)| (s.clone(), r.clone()))
    };
    assert_eq!(status(&confirmed), Some(("confirmed".into(), None)));
    assert_eq!(
        status(&cancelled),
        Some(("cancelled".into(), Some("customer_request".into())))
    );
    assert_eq!(
        published(&replay.pool).await,
        2,
        "OrderPlaced is not announced again"
    );

    // The same file again, forced into the same database: every event is a duplicate.
    let (_, stderr) = expect_exit(&replay_once(&[]), 3);
    assert!(stderr.contains("already holds order rows"), "{stderr}");
    let (stdout, _) = expect_exit(&replay_once(&["--force"]), 0);
    assert!(stdout.contains("duplicates skipped: 6"), "{stdout}");
    assert!(stdout.contains("applied: none"), "{stdout}");
    assert_eq!(statuses(&replay.pool).await, before);
    assert_eq!(published(&replay.pool).await, 2);
    replay.drop().await;
}
