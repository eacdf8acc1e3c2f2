//! `shipping replay` through the binary, against real PostgreSQL and the stack's registry: a
//! dump replayed into a fresh database schedules what the service did (its own shipment ids left
//! out of the comparison), a changed live row is found, and a database that is not fresh is
//! refused. No Kafka.

use std::process::{Command, Output};
use std::sync::Arc;

use choreo::avro::Codec;
use choreo::outbox::Outbox;
use choreo::replay::testing::{DumpBuilder, Scratch};
use choreo::testing::{registry, unique, TestDb};
use shipping::handler::ShippingHandler;
use shop_events::{OrderConfirmed, OrderLine, OrderPlaced};

fn shipping(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shipping"))
        .args(args)
        .env("SCHEMA_REGISTRY_URL", registry().url)
        .output()
        .expect("run shipping")
}

#[track_caller]
fn expect_exit(output: &Output, code: i32) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
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

#[tokio::test]
async fn a_replay_schedules_what_the_service_did_and_diffs_clean() {
    let scratch = Scratch::new();
    let topic = unique("test.replay.orders");
    let codec = Arc::new(Codec::new(&registry()).unwrap());
    let mut events = DumpBuilder::new(codec.clone());
    let orders: Vec<String> = (0..3).map(|_| order_id()).collect();
    for (i, order) in orders.iter().enumerate() {
        events
            .add(&topic, 0, order, &placed(order, "MUG-01", 1))
            .await;
        let confirmed = OrderConfirmed {
            order_id: order.clone(),
            payment_id: format!("pay-{i}"),
            currency: "EUR".into(),
            total_minor: 1250 + i64::try_from(i).unwrap() * 10_000,
            confirmed_at: now_ms(),
        };
        events.add(&topic, 0, order, &confirmed).await;
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
    let run = |extra: &[&str]| {
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
    let (stdout, _) = expect_exit(&run(&[]), 0);
    assert!(
        stdout.contains("shipping replay: 7 record(s) of 3 order(s)"),
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
    let (_, stderr) = expect_exit(&run(&[]), 3);
    assert!(stderr.contains("already holds shipping rows"), "{stderr}");

    sqlx::query("update shipments set carrier = 'pigeon' where order_id = $1")
        .bind(&orders[1])
        .execute(&live.pool)
        .await
        .unwrap();
    let (stdout, stderr) = expect_exit(&run(&["--force"]), 3);
    assert!(
        stdout.contains(&format!("shipments [order_id=\"{}\"]: changed", orders[1])),
        "{stdout}"
    );
    assert!(stdout.contains("compared \"pigeon\""), "{stdout}");
    assert!(stderr.contains("1 difference(s)"), "{stderr}");
    replay.drop().await;
    live.drop().await;
}
