//! `inventory replay` through the binary, against real PostgreSQL and the stack's registry: a dump
//! file written here replayed into a fresh database reserves, rejects and releases as the service
//! did (compared with `--diff-against`), a database that is not fresh is refused, and the
//! binary's own command line is the service's with `replay` added. No Kafka.

use std::process::Output;
use std::sync::Arc;

use choreo::avro::Codec;
use choreo::outbox::Outbox;
use choreo::replay::testing::{expect_exit, run, DumpBuilder, Scratch};
use choreo::testing::{registry, unique, TestDb};
use inventory::handler::InventoryHandler;
use shop_events::{PaymentFailed, PaymentFailureReason};

use crate::helpers::{order, order_id};

fn inventory(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_inventory"), args)
}

const RECEIPTS: &str = "insert into stock (sku, available, reserved, sold, received) values \
                        ('MUG-01', 5, 0, 0, 5), ('TEE-01', 3, 0, 0, 3);";

#[tokio::test]
async fn a_replay_with_receipts_reserves_rejects_and_releases_as_the_service_did() {
    let scratch = Scratch::new();
    let orders_topic = unique("test.replay.orders");
    let payments_topic = unique("test.replay.payments");
    let init = scratch.file("receipts.sql");
    std::fs::write(&init, RECEIPTS).unwrap();
    let codec = Arc::new(Codec::new(&registry()).unwrap());
    let mut events = DumpBuilder::new(codec.clone());
    let (kept, rejected, released) = (order_id(), order_id(), order_id());
    events
        .add(&orders_topic, 0, &kept, &order(&kept, &[("MUG-01", 2)]))
        .await;
    events
        .add(
            &orders_topic,
            1,
            &rejected,
            &order(&rejected, &[("MUG-01", 10)]),
        )
        .await;
    events
        .add(
            &orders_topic,
            0,
            &released,
            &order(&released, &[("TEE-01", 1)]),
        )
        .await;
    let failed = PaymentFailed {
        order_id: released.clone(),
        payment_id: "pay-1".into(),
        reason: PaymentFailureReason::Declined,
        detail: None,
        failed_at: 1_700_000_002_000,
    };
    events.add(&payments_topic, 0, &released, &failed).await;
    events.duplicate_last();
    let file = scratch.file("inventory.jsonl");
    events.write(&file);

    let live = TestDb::create().await;
    inventory::MIGRATOR.run(&live.pool).await.unwrap();
    sqlx::raw_sql(RECEIPTS).execute(&live.pool).await.unwrap();
    let handler = InventoryHandler::new(codec.clone(), Outbox::new(codec, inventory::NAME));
    events
        .apply_directly(&live.pool, inventory::NAME, &handler)
        .await;

    let replay = TestDb::create().await;
    let replay_once = |extra: &[&str]| {
        let mut args = vec![
            "replay",
            "--input",
            file.to_str().unwrap(),
            "--topic",
            &orders_topic,
            "--topic",
            &payments_topic,
            "--database-url",
            &replay.url,
            "--init-sql",
            init.to_str().unwrap(),
            "--diff-against",
            &live.url,
        ];
        args.extend_from_slice(extra);
        inventory(&args)
    };
    let (stdout, _) = expect_exit(&replay_once(&[]), 0);
    assert!(
        stdout.contains("inventory replay: 5 record(s) of 3 order(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("duplicates skipped: 1"), "{stdout}");
    assert!(stdout.contains("handler failures: 0"), "{stdout}");
    assert!(stdout.contains("no differences"), "{stdout}");
    assert!(
        stdout.contains("shop.inventory.InventoryReserved: 2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("shop.inventory.InventoryRejected: 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("shop.inventory.InventoryReleased: 1"),
        "{stdout}"
    );
    let statuses: Vec<(String, String)> =
        sqlx::query_as("select order_id, status from reservations")
            .fetch_all(&replay.pool)
            .await
            .unwrap();
    let status = |order: &str| {
        statuses
            .iter()
            .find(|(o, _)| o == order)
            .map(|(_, s)| s.as_str())
    };
    assert_eq!(status(&kept), Some("reserved"));
    assert_eq!(status(&rejected), Some("rejected"));
    assert_eq!(status(&released), Some("released"));
    let available: Vec<(String, i32)> =
        sqlx::query_as("select sku, available from stock order by sku")
            .fetch_all(&replay.pool)
            .await
            .unwrap();
    assert_eq!(available, [("MUG-01".into(), 3), ("TEE-01".into(), 3)]);

    // The same database again is refused: it holds the replay's rows.
    let (_, stderr) = expect_exit(&replay_once(&[]), 3);
    assert!(stderr.contains("already holds inventory rows"), "{stderr}");

    // A live database that differs (a unit sold that no event tells of) is found out.
    sqlx::query("update stock set available = 2, sold = 1 where sku = 'MUG-01'")
        .execute(&live.pool)
        .await
        .unwrap();
    let again = TestDb::create().await;
    let mut args = vec!["replay", "--input", file.to_str().unwrap()];
    args.extend([
        "--topic",
        &orders_topic,
        "--topic",
        &payments_topic,
        "--database-url",
        &again.url,
        "--init-sql",
        init.to_str().unwrap(),
        "--diff-against",
        &live.url,
    ]);
    let (stdout, stderr) = expect_exit(&inventory(&args), 3);
    assert!(
        stdout.contains("stock [sku=\"MUG-01\"]: changed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("available: replay 3, compared 2"),
        "{stdout}"
    );
    assert!(stderr.contains("1 difference(s)"), "{stderr}");
    for db in [live, replay, again] {
        db.drop().await;
    }
}

#[test]
fn the_command_line_is_the_services_own_with_replay_added() {
    let (stdout, _) = expect_exit(&inventory(&["--help"]), 0);
    assert!(stdout.contains("--http-addr"), "{stdout}");
    assert!(stdout.contains("replay"), "{stdout}");
    let (stdout, _) = expect_exit(&inventory(&["replay", "--help"]), 0);
    assert!(stdout.contains("inventory replay --input"), "{stdout}");

    let (_, stderr) = expect_exit(&inventory(&["replay", "--input", "x.jsonl"]), 2);
    assert!(stderr.contains("--database-url"), "{stderr}");
    let scratch = Scratch::new();
    let garbled = scratch.file("garbled.jsonl");
    std::fs::write(&garbled, "this is not json\n").unwrap();
    let output = inventory(&[
        "replay",
        "--input",
        garbled.to_str().unwrap(),
        "--database-url",
        "postgres://x@localhost/y",
    ]);
    let (_, stderr) = expect_exit(&output, 2);
    assert!(stderr.contains("garbled.jsonl"), "{stderr}");
}
