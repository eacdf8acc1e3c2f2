//! `shipping replay` through the binary, against real PostgreSQL and the stack's registry: a
//! dump replayed into a fresh database schedules what the service did (its own shipment ids left
//! out of the comparison), a changed live row is found, and a database that is not fresh is
//! refused. No Kafka.

use std::process::Output;
use std::sync::Arc;

use choreo::avro::Codec;
use choreo::outbox::Outbox;
use choreo::replay::testing::{expect_exit, run, DumpBuilder, Scratch};
use choreo::testing::{registry, unique, TestDb};
use shipping::handler::ShippingHandler;

use crate::helpers::{confirmed, order_id};

fn shipping(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_shipping"), args)
}

#[tokio::test]
async fn a_replay_schedules_what_the_service_did_and_diffs_clean() {
    let scratch = Scratch::new();
    let topic = unique("test.replay.orders");
    let codec = Arc::new(Codec::new(&registry()).unwrap());
    let mut events = DumpBuilder::new(codec.clone());
    let orders: Vec<String> = (0..3).map(|_| order_id()).collect();
    for (total, order) in (1..).map(|i| i * 10_000).zip(&orders) {
        events.add(&topic, 0, order, &confirmed(order, total)).await;
    }
    events.duplicate_last();
    let file = scratch.file("shipping.jsonl");
    events.write(&file);

    let live = TestDb::create().await;
    shipping::MIGRATOR.run(&live.pool).await.unwrap();
    let handler = ShippingHandler::new(codec.clone(), Outbox::new(codec, shipping::NAME));
    events
        .apply_directly(&live.pool, shipping::NAME, &handler)
        .await;

    let replay = TestDb::create().await;
    let replay_once = |extra: &[&str]| {
        let mut args = vec![
            "replay",
            "--input",
            file.to_str().unwrap(),
            "--topic",
            &topic,
            "--database-url",
            &replay.url,
            "--diff-against",
            &live.url,
        ];
        args.extend_from_slice(extra);
        shipping(&args)
    };
    let (stdout, _) = expect_exit(&replay_once(&[]), 0);
    assert!(
        stdout.contains("shipping replay: 4 record(s) of 3 order(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("duplicates skipped: 1"), "{stdout}");
    assert!(stdout.contains("handler failures: 0"), "{stdout}");
    assert!(
        stdout.contains("shop.shipping.ShipmentScheduled: 3"),
        "{stdout}"
    );
    assert!(stdout.contains("no differences"), "{stdout}");
    let shipments: i64 = sqlx::query_scalar("select count(*) from shipments")
        .fetch_one(&replay.pool)
        .await
        .unwrap();
    assert_eq!(shipments, 3);

    // The same database again is refused: it holds the replay's rows.
    let (_, stderr) = expect_exit(&replay_once(&[]), 3);
    assert!(stderr.contains("already holds shipping rows"), "{stderr}");

    sqlx::query("update shipments set carrier = 'pigeon' where order_id = $1")
        .bind(&orders[1])
        .execute(&live.pool)
        .await
        .unwrap();
    let (stdout, stderr) = expect_exit(&replay_once(&["--force"]), 3);
    assert!(
        stdout.contains(&format!("shipments [order_id=\"{}\"]: changed", orders[1])),
        "{stdout}"
    );
    assert!(stdout.contains("compared \"pigeon\""), "{stdout}");
    assert!(stderr.contains("1 difference(s)"), "{stderr}");
    replay.drop().await;
    live.drop().await;
}
