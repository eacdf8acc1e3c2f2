//! `payment replay` through the binary, against real PostgreSQL and the stack's registry: the
//! consumer's half of payment replayed into a fresh database (payments created pending, or voided
//! for an order cancelled first; the worker does not run) matches the service's own database,
//! its payment ids left out of the comparison. No Kafka, no provider.

use std::process::Output;
use std::sync::Arc;

use choreo::avro::Codec;
use choreo::outbox::Outbox;
use choreo::replay::testing::{expect_exit, run, DumpBuilder, Scratch};
use choreo::testing::{registry, unique, TestDb};
use payment::handler::PaymentHandler;

use crate::helpers::{inventory_reserved, new_order_id, order_cancelled, order_placed};

fn payment(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_payment"), args)
}

#[tokio::test]
async fn a_replay_creates_the_payments_the_service_did_and_charges_nothing() {
    let scratch = Scratch::new();
    let orders_topic = unique("test.replay.orders");
    let inventory_topic = unique("test.replay.inventory");
    let codec = Arc::new(Codec::new(&registry()).unwrap());
    let mut events = DumpBuilder::new(codec.clone());
    let (charged, cancelled) = (new_order_id(), new_order_id());
    for order in [&charged, &cancelled] {
        events
            .add(&orders_topic, 0, order, &order_placed(order, "cus_replay"))
            .await;
    }
    events
        .add(&orders_topic, 0, &cancelled, &order_cancelled(&cancelled))
        .await;
    for order in [&charged, &cancelled] {
        events
            .add(&inventory_topic, 0, order, &inventory_reserved(order))
            .await;
    }
    let file = scratch.file("payment.jsonl");
    events.write(&file);

    let live = TestDb::create().await;
    payment::MIGRATOR.run(&live.pool).await.unwrap();
    let handler = PaymentHandler::new(codec.clone(), Outbox::new(codec, "payment"));
    events.apply_directly(&live.pool, "payment", &handler).await;

    let replay = TestDb::create().await;
    let output = payment(&[
        "replay",
        "--input",
        file.to_str().unwrap(),
        "--topic",
        &orders_topic,
        "--topic",
        &inventory_topic,
        "--database-url",
        &replay.url,
        "--diff-against",
        &live.url,
    ]);
    let (stdout, _) = expect_exit(&output, 0);
    assert!(
        stdout.contains("payment replay: 5 record(s) of 2 order(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("handler failures: 0"), "{stdout}");
    assert!(stdout.contains("no differences"), "{stdout}");
    let statuses: Vec<(String, String)> =
        sqlx::query_as("select order_id, status from payments order by order_id")
            .fetch_all(&replay.pool)
            .await
            .unwrap();
    let status = |order: &str| {
        statuses
            .iter()
            .find(|(o, _)| o == order)
            .map(|(_, s)| s.as_str())
    };
    assert_eq!(status(&charged), Some("pending"), "the worker does not run");
    assert_eq!(status(&cancelled), Some("voided"));
    replay.drop().await;
    live.drop().await;
}
