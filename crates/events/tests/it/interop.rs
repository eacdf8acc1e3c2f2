//! Our events and an Avro implementation we did not write understand each other through the real
//! broker and registry: what choreo's codec writes, Confluent's Python client (confluent-kafka,
//! AvroDeserializer over fastavro) reads field for field, and what its AvroSerializer writes, the
//! codec decodes into the generated types. The Python side is in [`crate::python`].
//!
//! Both producers register their own writer schema under TopicRecordNameStrategy, in the same
//! normalized text, so a subject holds one version whoever registered it first.

use choreo::avro::{wire, Codec, Event};
use choreo::kafka::{consumer_config, producer_config};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use shop_events::{OrderLine, OrderPlaced, PaymentCaptured};

use crate::python::{Python, Record};
use crate::{kafka, registry, unique, TestTopic, WAIT};

#[tokio::test(flavor = "multi_thread")]
async fn python_reads_what_rust_produced() {
    let python = Python::find();
    let topic = TestTopic::create("test.interop.rust-to-python", 3).await;
    let codec = Codec::new(&registry()).expect("codec");
    let producer: FutureProducer = producer_config(&kafka(), "events-test")
        .create()
        .expect("producer");
    let mut sent = Vec::new();
    for order in rust_orders() {
        sent.push(send(&codec, &producer, &topic.name, &order.order_id, &order).await);
    }
    for payment in rust_payments() {
        sent.push(send(&codec, &producer, &topic.name, &payment.order_id, &payment).await);
    }

    let mut received = python.consume(&topic.name, sent.len()).await;

    // Every record arrived once, under its key and schema id, every field equal to what was sent
    // (timestamps as epoch milliseconds, longs at full width, text beyond ASCII).
    let by_record_and_key = |a: &Record, b: &Record| (&a.record, &a.key).cmp(&(&b.record, &b.key));
    received.sort_by(by_record_and_key);
    sent.sort_by(by_record_and_key);
    assert_eq!(received, sent);
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_reads_what_python_produced() {
    const COUNT: i64 = 4;
    let python = Python::find();
    let topic = TestTopic::create("test.interop.python-to-rust", 3).await;
    python.produce(&topic.name, OrderPlaced::NAME, COUNT).await;
    python
        .produce(&topic.name, PaymentCaptured::NAME, COUNT)
        .await;

    let received = consume(&topic.name, 2 * COUNT as usize).await;
    let codec = Codec::new(&registry()).expect("codec");
    let orders: Vec<(String, u32, OrderPlaced)> = decode_all(&codec, &received).await;
    let payments: Vec<(String, u32, PaymentCaptured)> = decode_all(&codec, &received).await;
    assert_eq!(
        orders.len() + payments.len(),
        received.len(),
        "no other records"
    );

    // Keyed by order id, every field as avro_interop.py built it, and written under the schema id
    // our codec gets for the same type on this topic: one version per subject, whichever client
    // registered it first.
    let id = schema_id(&codec, &topic.name, &python_order_placed(0)).await;
    let expected: Vec<_> = (0..COUNT)
        .map(python_order_placed)
        .map(|o| (o.order_id.clone(), id, o))
        .collect();
    assert_eq!(orders, expected);
    let id = schema_id(&codec, &topic.name, &python_payment_captured(0)).await;
    let expected: Vec<_> = (0..COUNT)
        .map(python_payment_captured)
        .map(|p| (p.order_id.clone(), id, p))
        .collect();
    assert_eq!(payments, expected);
}

/// Encodes `event` with the codec and sends it keyed by `key`; what was sent, in the shape
/// `avro_interop.py consume` prints it.
async fn send<E: Event>(
    codec: &Codec,
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    event: &E,
) -> Record {
    let bytes = codec.encode_for(topic, event).await.expect("encoded");
    let record = FutureRecord::to(topic).key(key).payload(&bytes);
    producer
        .send(record, WAIT)
        .await
        .map_err(|(e, _)| e)
        .expect("delivered");
    Record {
        record: E::NAME.into(),
        key: key.into(),
        schema_id: wire::split(&bytes).expect("wire format").0,
        value: serde_json::to_value(event).expect("an event as JSON"),
    }
}

/// The first `count` records of `topic` from the beginning (a group of its own): keys and values.
async fn consume(topic: &str, count: usize) -> Vec<(String, Vec<u8>)> {
    let consumer: StreamConsumer =
        consumer_config(&kafka(), &unique("test-interop"), "events-test")
            .create()
            .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribed");
    let mut received = Vec::new();
    while received.len() < count {
        let message = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of {count} records in time", received.len()))
            .expect("a record");
        let key = std::str::from_utf8(message.key().expect("a key")).expect("a UTF-8 key");
        received.push((key.to_owned(), message.payload().expect("a value").to_vec()));
    }
    received
}

/// The records of type `E` among `received`, decoded: key, schema id and event, by key.
async fn decode_all<E: Event>(
    codec: &Codec,
    received: &[(String, Vec<u8>)],
) -> Vec<(String, u32, E)> {
    let mut found = Vec::new();
    for (key, bytes) in received {
        let (record, _) = codec
            .decode_any(bytes)
            .await
            .expect("decodes with its writer's schema");
        if record == E::NAME {
            let (id, _) = wire::split(bytes).expect("wire format");
            let event = codec.decode::<E>(bytes).await.expect("decodes as its type");
            found.push((key.clone(), id, event));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The id under which the codec writes `event` on `topic`.
async fn schema_id<E: Event>(codec: &Codec, topic: &str, event: &E) -> u32 {
    let bytes = codec.encode_for(topic, event).await.expect("encoded");
    wire::split(&bytes).expect("wire format").0
}

// --- what Rust sends ----------------------------------------------------------------------------

/// 2025-11-24T16:00:00.123Z: milliseconds that a conversion through seconds would lose.
const AT: i64 = 1_764_000_000_123;
const FIFTEEN_MINUTES: i64 = 15 * 60 * 1_000;

fn rust_orders() -> Vec<OrderPlaced> {
    let line = |sku: &str, quantity, unit_price_minor| OrderLine {
        sku: sku.into(),
        quantity,
        unit_price_minor,
    };
    let lines = vec![
        line("SKU-1001", 2, 1_999),
        line("SKU-2002", 1, 0),
        // Beyond 32 bits: a long must stay a long.
        line("SKU-3003", 40, 12_345_678_901),
    ];
    vec![
        OrderPlaced {
            order_id: "0193f7a2-5b1c-7cc4-9a3e-2f1d7c9b8e01".into(),
            customer_id: "Jürgen Ødegård 日本".into(),
            total_minor: total(&lines),
            lines,
            currency: "EUR".into(),
            placed_at: AT,
            deadline_at: AT + FIFTEEN_MINUTES,
        },
        OrderPlaced {
            order_id: "0193f7a2-5b1c-7cc4-9a3e-2f1d7c9b8e02".into(),
            customer_id: "customer-7".into(),
            lines: vec![line("SKU-4004", 1, 500)],
            currency: "JPY".into(),
            total_minor: 500,
            placed_at: AT + 1,
            deadline_at: AT + 1 + FIFTEEN_MINUTES,
        },
    ]
}

fn rust_payments() -> Vec<PaymentCaptured> {
    vec![
        PaymentCaptured {
            order_id: "0193f7a2-5b1c-7cc4-9a3e-2f1d7c9b8e01".into(),
            payment_id: "pay-1".into(),
            currency: "EUR".into(),
            amount_minor: rust_orders()[0].total_minor,
            provider_reference: "psp-€-1".into(),
            captured_at: AT + 2_500,
        },
        PaymentCaptured {
            order_id: "0193f7a2-5b1c-7cc4-9a3e-2f1d7c9b8e02".into(),
            payment_id: "pay-2".into(),
            currency: "JPY".into(),
            // The extremes of a long and a time before 1970, where implementations part ways.
            amount_minor: i64::MAX,
            provider_reference: String::new(),
            captured_at: -1,
        },
    ]
}

fn total(lines: &[OrderLine]) -> i64 {
    lines
        .iter()
        .map(|l| i64::from(l.quantity) * l.unit_price_minor)
        .sum()
}

// --- what Python sends: the builders of avro_interop.py, index for index ------------------------

/// `BASE_MILLIS` in avro_interop.py.
const PYTHON_BASE_MILLIS: i64 = 1_764_000_000_123;

/// `order_placed(i)` in avro_interop.py.
fn python_order_placed(i: i64) -> OrderPlaced {
    let lines: Vec<OrderLine> = (0..=i % 3)
        .map(|j| OrderLine {
            sku: format!("SKU-{i}-{j}"),
            quantity: i32::try_from(j + 1).unwrap(),
            unit_price_minor: 1_999 + 100 * i + j,
        })
        .collect();
    let placed = PYTHON_BASE_MILLIS + 1_000 * i;
    OrderPlaced {
        order_id: format!("py-order-{i}"),
        customer_id: format!("kunde-{i}-Zoë"),
        total_minor: total(&lines),
        lines,
        currency: "EUR".into(),
        placed_at: placed,
        deadline_at: placed + FIFTEEN_MINUTES,
    }
}

/// `payment_captured(i)` in avro_interop.py.
fn python_payment_captured(i: i64) -> PaymentCaptured {
    PaymentCaptured {
        order_id: format!("py-order-{i}"),
        payment_id: format!("py-payment-{i}"),
        currency: "EUR".into(),
        amount_minor: python_order_placed(i).total_minor,
        provider_reference: format!("psp-{i}-€"),
        captured_at: PYTHON_BASE_MILLIS + 1_000 * i + 2_500,
    }
}
