//! `choreo replay dump|load|run` through the binary. Dump and load use topics of the tests' own
//! (never the shop's: live services may consume them); the run tests build their dump files here
//! and need no Kafka, only the registry and PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use choreo::avro::{normalize_schema, wire, Codec, Event};
use choreo::consumer::{Handler, Incoming};
use choreo::envelope::Metadata;
use choreo::testing::{create_topic, kafka, registry, unique, TestDb};
use choreo_cli::read::Record;
use choreo_cli::replay::format::{DumpReader, DumpWriter, Header, SchemaEntry, Source};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use shop_events::{
    OrderCancelled, OrderConfirmed, OrderLine, OrderPlaced, PaymentFailed, PaymentFailureReason,
};

/// A folder of the test's own, deleted when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("choreo-replay"));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn choreo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_choreo"))
        .args(args)
        .env("KAFKA_BROKERS", kafka().brokers)
        .env("SCHEMA_REGISTRY_URL", registry().url)
        .output()
        .expect("run choreo")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
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

fn codec() -> Arc<Codec> {
    Arc::new(Codec::new(&registry()).unwrap())
}

fn order_id() -> String {
    unique("o").replace('.', "-")
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

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Builds records of events and the dump header's schemas for them.
struct Builder {
    codec: Arc<Codec>,
    records: Vec<Record>,
    schemas: Vec<SchemaEntry>,
    at: i64,
}

impl Builder {
    fn new() -> Self {
        Self {
            codec: codec(),
            records: Vec::new(),
            schemas: Vec::new(),
            at: now_ms() - 60_000,
        }
    }

    /// Adds `event` on `topic` partition `partition`, keyed by `key`; returns its metadata.
    async fn add<E: Event>(
        &mut self,
        topic: &str,
        partition: i32,
        key: &str,
        event: &E,
    ) -> Metadata {
        let metadata = Metadata::new(E::NAME, key, "replay-test");
        let value = self.codec.encode_for(topic, event).await.unwrap();
        self.push(topic, partition, key, &metadata, value);
        let (id, _) = wire::split(self.records.last().unwrap().value.as_deref().unwrap()).unwrap();
        let subject = choreo::avro::subject(topic, E::NAME);
        if !self.schemas.iter().any(|s| s.subject == subject) {
            self.schemas.push(SchemaEntry {
                id,
                subject,
                schema: normalize_schema(E::SCHEMA).unwrap(),
            });
        }
        metadata
    }

    fn push(
        &mut self,
        topic: &str,
        partition: i32,
        key: &str,
        metadata: &Metadata,
        value: Vec<u8>,
    ) {
        self.at += 10;
        let offset = self
            .records
            .iter()
            .filter(|r| r.topic == topic && r.partition == partition)
            .count() as i64;
        self.records.push(Record {
            topic: topic.into(),
            partition,
            offset,
            timestamp_ms: Some(self.at),
            key: Some(key.as_bytes().to_vec()),
            headers: metadata
                .to_headers()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Some(v.into_bytes())))
                .collect(),
            value: Some(value),
        });
    }

    /// The last record again (same event id), as a relay that published twice would.
    fn duplicate_last(&mut self) {
        let mut again = self.records.last().unwrap().clone();
        again.offset += 1;
        self.at += 10;
        again.timestamp_ms = Some(self.at);
        self.records.push(again);
    }

    fn write(&self, file: &Path) {
        let mut writer = DumpWriter::create(file).unwrap();
        for record in &self.records {
            writer.write(record).unwrap();
        }
        writer
            .finish(Header {
                format: "choreo-dump".into(),
                version: 1,
                created_at: chrono::Utc::now().to_rfc3339(),
                source: Source {
                    brokers: "test".into(),
                    registry: None,
                },
                topics: vec![],
                schemas: self.schemas.clone(),
                records: 0,
            })
            .unwrap();
    }

    /// Applies the records straight through `handler`, as the service's consumer would.
    async fn apply_directly(&self, db: &TestDb, consumer: &str, handler: &impl Handler) {
        for record in &self.records {
            let metadata = Metadata::from_headers(
                record
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_deref())),
            )
            .unwrap();
            let mut tx = db.pool.begin().await.unwrap();
            if !choreo::inbox::record(&mut tx, consumer, metadata.event_id)
                .await
                .unwrap()
            {
                continue;
            }
            let incoming = Incoming {
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
                key: record.key_str().unwrap().to_owned(),
                metadata,
                value: record.value.clone().unwrap(),
            };
            handler.handle(&mut tx, &incoming).await.unwrap();
            tx.commit().await.unwrap();
        }
    }
}

async fn produce(topic: &str, records: &[Record]) {
    let producer: FutureProducer = choreo::kafka::producer_config(&kafka(), "replay-test")
        .create()
        .unwrap();
    for record in records {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(KafkaHeader {
                key,
                value: value.as_deref(),
            });
        }
        let out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition(record.partition)
            .key(record.key.as_deref().unwrap())
            .payload(record.value.as_deref().unwrap())
            .timestamp(record.timestamp_ms.unwrap())
            .headers(headers);
        producer
            .send(out, Duration::from_secs(10))
            .await
            .expect("delivered");
    }
}

/// The records of a dump, each with its value decoded by the registry (through its schema id).
async fn read_dump(file: &Path) -> (Header, Vec<(Record, serde_json::Value)>) {
    let (header, records) = DumpReader::open(file).unwrap().read_all().unwrap();
    let codec = codec();
    let mut decoded = Vec::new();
    for record in records {
        let value = choreo_cli::decode::value_json(&codec, record.value.as_deref().unwrap())
            .await
            .expect("the value decodes with the registry's schema for its id");
        decoded.push((record, value.1));
    }
    (header, decoded)
}

#[tokio::test]
async fn dump_load_and_dump_again_give_the_same_records() {
    let scratch = Scratch::new();
    let source = create_topic("test.replay.source", 3).await;
    let target = create_topic("test.replay.target", 3).await;
    let mut events = Builder::new();
    for partition in 0..3 {
        let order = order_id();
        events
            .add(&source, partition, &order, &placed(&order, "MUG-01", 1))
            .await;
        let cancelled = OrderCancelled {
            order_id: order.clone(),
            reason: shop_events::CancelReason::Timeout,
            detail: None,
            cancelled_at: now_ms(),
        };
        events.add(&source, partition, &order, &cancelled).await;
    }
    // A header that is not text travels as base64.
    events.records[0]
        .headers
        .push(("binary".into(), Some(vec![0xff, 0x00, 0xfe])));
    produce(&source, &events.records).await;

    let first = scratch.file("first.jsonl");
    let output = choreo(&[
        "replay",
        "dump",
        "--topic",
        &source,
        "--output",
        path(&first),
    ]);
    let (stdout, _) = expect_exit(&output, 0);
    assert!(stdout.contains("dumped 6 record(s)"), "{stdout}");
    let mapping = format!("{source}={target}");
    let output = choreo(&["replay", "load", path(&first), "--topic-map", &mapping]);
    let (stdout, _) = expect_exit(&output, 0);
    assert!(stdout.contains("loaded 6 record(s)"), "{stdout}");
    let second = scratch.file("second.jsonl");
    let output = choreo(&[
        "replay",
        "dump",
        "--topic",
        &target,
        "--output",
        path(&second),
    ]);
    expect_exit(&output, 0);

    let (first_header, before) = read_dump(&first).await;
    let (second_header, after) = read_dump(&second).await;
    assert_eq!(first_header.topics[0].partitions, 3);
    assert_eq!(before.len(), 6);
    assert!(second_header
        .schemas
        .iter()
        .all(|s| s.subject.starts_with(&format!("{target}-"))));
    let key = |(r, _): &(Record, serde_json::Value)| (r.partition, r.offset);
    let (mut before, mut after) = (before, after);
    before.sort_by_key(key);
    after.sort_by_key(key);
    for ((b, b_value), (a, a_value)) in before.iter().zip(&after) {
        assert_eq!(a.topic, target);
        // Offsets match here: the source was written without transactions, so it has no commit
        // markers, and each partition gets the same records in the same order. A topic the
        // relay wrote (in transactions) loads with smaller offsets: the markers are not copied.
        assert_eq!((a.partition, a.offset), (b.partition, b.offset));
        assert_eq!(a.timestamp_ms, b.timestamp_ms);
        assert_eq!(a.key, b.key);
        assert_eq!(a.headers, b.headers);
        assert_eq!(a_value, b_value, "the decoded values are the same");
        assert_eq!(
            a.value.as_ref().unwrap()[5..],
            b.value.as_ref().unwrap()[5..]
        );
    }
    assert_eq!(before.len(), after.len());
    // The second dump's ids are the ones the target subjects have; the values decoded above
    // with them, so the ids were rewritten to ids the registry knows under the target topic.
    for (record, _) in &after {
        let (id, _) = wire::split(record.value.as_deref().unwrap()).unwrap();
        assert!(second_header.schemas.iter().any(|s| s.id == id));
    }
}

#[tokio::test]
async fn load_refuses_a_topic_that_already_holds_records() {
    let scratch = Scratch::new();
    let topic = create_topic("test.replay.busy", 1).await;
    let mut events = Builder::new();
    let order = order_id();
    events
        .add(&topic, 0, &order, &placed(&order, "MUG-01", 1))
        .await;
    produce(&topic, &events.records).await;
    let file = scratch.file("busy.jsonl");
    events.write(&file);

    let output = choreo(&["replay", "load", path(&file)]);
    let (_, stderr) = expect_exit(&output, 3);
    assert!(
        stderr.contains(&topic) && stderr.contains("--force"),
        "{stderr}"
    );
    let output = choreo(&["replay", "load", path(&file), "--force"]);
    expect_exit(&output, 0);
}

#[tokio::test]
async fn a_shipping_replay_schedules_what_the_service_did_and_diffs_clean() {
    let scratch = Scratch::new();
    let topic = unique("test.replay.orders");
    let mut events = Builder::new();
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
    let codec = codec();
    let handler = shipping::handler::ShippingHandler::new(
        codec.clone(),
        choreo::outbox::Outbox::new(codec, "shipping"),
    );
    events.apply_directly(&live, "shipping", &handler).await;

    let replay = TestDb::create().await;
    let run = |extra: &[&str]| {
        let mut args = vec![
            "replay",
            "run",
            "--service",
            "shipping",
            "--input",
            path(&file),
            "--topic",
            &topic,
            "--database-url",
            &replay.url,
            "--diff-against",
            &live.url,
        ];
        args.extend_from_slice(extra);
        choreo(&args)
    };
    let (stdout, _) = expect_exit(&run(&[]), 0);
    assert!(stdout.contains("7 record(s) of 3 order(s)"), "{stdout}");
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

#[tokio::test]
async fn an_inventory_replay_with_receipts_reserves_rejects_and_releases_as_the_service_did() {
    let scratch = Scratch::new();
    let orders_topic = unique("test.replay.orders");
    let payments_topic = unique("test.replay.payments");
    let init = scratch.file("receipts.sql");
    let receipts = "insert into stock (sku, available, reserved, sold, received) values \
                    ('MUG-01', 5, 0, 0, 5), ('TEE-01', 3, 0, 0, 3);";
    std::fs::write(&init, receipts).unwrap();

    let mut events = Builder::new();
    let (kept, rejected, released) = (order_id(), order_id(), order_id());
    events
        .add(&orders_topic, 0, &kept, &placed(&kept, "MUG-01", 2))
        .await;
    events
        .add(
            &orders_topic,
            1,
            &rejected,
            &placed(&rejected, "MUG-01", 10),
        )
        .await;
    events
        .add(&orders_topic, 0, &released, &placed(&released, "TEE-01", 1))
        .await;
    let failed = PaymentFailed {
        order_id: released.clone(),
        payment_id: "pay-1".into(),
        reason: PaymentFailureReason::Declined,
        detail: None,
        failed_at: now_ms(),
    };
    events.add(&payments_topic, 0, &released, &failed).await;
    let file = scratch.file("inventory.jsonl");
    events.write(&file);

    let live = TestDb::create().await;
    inventory::MIGRATOR.run(&live.pool).await.unwrap();
    sqlx::raw_sql(receipts).execute(&live.pool).await.unwrap();
    let codec = codec();
    let handler = inventory::handler::InventoryHandler::new(
        codec.clone(),
        choreo::outbox::Outbox::new(codec, "inventory"),
    );
    events.apply_directly(&live, "inventory", &handler).await;

    let replay = TestDb::create().await;
    let output = choreo(&[
        "replay",
        "run",
        "--service",
        "inventory",
        "--input",
        path(&file),
        "--topic",
        &orders_topic,
        "--topic",
        &payments_topic,
        "--database-url",
        &replay.url,
        "--init-sql",
        path(&init),
        "--diff-against",
        &live.url,
    ]);
    let (stdout, _) = expect_exit(&output, 0);
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
        sqlx::query_as("select order_id, status from reservations order by created_at")
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
    replay.drop().await;
    live.drop().await;
}

#[tokio::test]
async fn an_order_replay_turns_its_own_events_back_into_orders_and_decisions() {
    let scratch = Scratch::new();
    let own = unique("test.replay.orders");
    let others = unique("test.replay.outcomes");
    let (confirmed, cancelled) = (order_id(), order_id());
    let mut events = Builder::new();
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
    let output = choreo(&[
        "replay",
        "run",
        "--service",
        "order",
        "--input",
        path(&file),
        "--topic",
        &own,
        "--topic",
        &others,
        "--database-url",
        &replay.url,
    ]);
    let (stdout, _) = expect_exit(&output, 0);
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
    let statuses: Vec<(String, String, Option<String>)> =
        sqlx::query_as("select order_id, status, cancel_reason from orders order by order_id")
            .fetch_all(&replay.pool)
            .await
            .unwrap();
    let status = |order: &str| {
        statuses
            .iter()
            .find(|(o, _, _)| o == order)
            .map(|(_, s, r)| (s.clone(), r.clone()))
    };
    assert_eq!(status(&confirmed), Some(("confirmed".into(), None)));
    assert_eq!(
        status(&cancelled),
        Some(("cancelled".into(), Some("customer_request".into())))
    );
    let published: i64 = sqlx::query_scalar("select count(*) from choreo_outbox")
        .fetch_one(&replay.pool)
        .await
        .unwrap();
    assert_eq!(published, 2, "OrderPlaced is not announced again");
    replay.drop().await;
}

#[test]
fn bad_arguments_and_files_are_bad_input_and_an_unreachable_cluster_an_error() {
    let scratch = Scratch::new();
    let (_, stderr) = expect_exit(&choreo(&["replay", "dump", "--topic", "t"]), 2);
    assert!(stderr.contains("--output"), "{stderr}");

    let output = choreo(&[
        "replay",
        "run",
        "--service",
        "warehouse",
        "--database-url",
        "postgres://x@localhost/y",
    ]);
    let (_, stderr) = expect_exit(&output, 2);
    assert!(stderr.contains("warehouse"), "{stderr}");

    let missing = scratch.file("missing.jsonl");
    let (_, stderr) = expect_exit(&choreo(&["replay", "load", path(&missing)]), 2);
    assert!(stderr.contains("cannot read the dump"), "{stderr}");

    let garbled = scratch.file("garbled.jsonl");
    std::fs::write(&garbled, "this is not json\n").unwrap();
    let (_, stderr) = expect_exit(&choreo(&["replay", "load", path(&garbled)]), 2);
    assert!(stderr.contains("not a choreo dump header"), "{stderr}");
    let output = choreo(&[
        "replay",
        "run",
        "--service",
        "shipping",
        "--input",
        path(&garbled),
        "--database-url",
        "postgres://x@localhost/y",
    ]);
    let (_, stderr) = expect_exit(&output, 2);
    assert!(stderr.contains("garbled.jsonl"), "{stderr}");

    let output = choreo(&[
        "--brokers",
        "127.0.0.1:1",
        "--timeout",
        "2",
        "replay",
        "dump",
        "--topic",
        "t",
        "--output",
        path(&scratch.file("out.jsonl")),
    ]);
    let (_, stderr) = expect_exit(&output, 1);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
}
