//! The generated types are their schemas: every value of a type encodes with its .avsc and
//! decodes back equal, and every event sits on the topic its spec names. No registry needed.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use choreo::avro::Event;
use proptest::prelude::*;
use shop_events::*;

fn round_trip<E: Event + PartialEq + std::fmt::Debug>(event: &E) -> E {
    let schema = Schema::parse_str(E::SCHEMA).unwrap();
    let bytes = GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_ser_to_vec(event)
        .unwrap();
    let value = GenericDatumReader::builder(&schema)
        .build()
        .unwrap()
        .read_value(&mut &bytes[..])
        .unwrap();
    assert!(
        value.validate(&schema),
        "{} encodes to a value its schema accepts",
        E::NAME
    );
    let direct: E = GenericDatumReader::builder(&schema)
        .build()
        .unwrap()
        .read_deser(&mut &bytes[..])
        .unwrap();
    assert_eq!(&apache_avro::from_value::<E>(&value).unwrap(), &direct);
    direct
}

fn order_placed() -> impl Strategy<Value = OrderPlaced> {
    let line = ("[A-Z]{3}-[0-9]{3}", 1..100i32, 0..1_000_000i64).prop_map(
        |(sku, quantity, unit_price_minor)| OrderLine {
            sku,
            quantity,
            unit_price_minor,
        },
    );
    (
        ".{0,40}",
        ".{0,20}",
        proptest::collection::vec(line, 1..5),
        "[A-Z]{3}",
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(
            |(order_id, customer_id, lines, currency, total_minor, placed_at, deadline_at)| {
                OrderPlaced {
                    order_id,
                    customer_id,
                    lines,
                    currency,
                    total_minor,
                    placed_at,
                    deadline_at,
                }
            },
        )
}

proptest! {
    #[test]
    fn any_order_placed_survives_its_own_schema(event in order_placed()) {
        prop_assert_eq!(round_trip(&event), event);
    }

    #[test]
    fn any_cancellation_survives_its_own_schema(
        reason in prop_oneof![
            Just(CancelReason::OutOfStock),
            Just(CancelReason::PaymentFailed),
            Just(CancelReason::CustomerRequest),
            Just(CancelReason::Timeout),
        ],
        detail in proptest::option::of(".{0,30}"),
        cancelled_at: i64,
    ) {
        let event = OrderCancelled { order_id: "o-1".into(), reason, detail, cancelled_at };
        prop_assert_eq!(round_trip(&event), event);
    }
}

#[test]
fn every_event_type_round_trips() {
    let at = 1_764_000_000_000;
    round_trip(&OrderConfirmed {
        order_id: "o".into(),
        payment_id: "p".into(),
        currency: "EUR".into(),
        total_minor: 1999,
        confirmed_at: at,
    });
    round_trip(&InventoryReserved {
        order_id: "o".into(),
        reservation_id: "r".into(),
        items: vec![ReservedItem {
            sku: "SKU-1".into(),
            quantity: 2,
        }],
        currency: "EUR".into(),
        amount_minor: 1999,
        reserved_at: at,
    });
    round_trip(&InventoryRejected {
        order_id: "o".into(),
        reason: RejectReason::OutOfStock,
        shortages: vec![Shortage {
            sku: "SKU-1".into(),
            requested: 3,
            available: 1,
        }],
        rejected_at: at,
    });
    round_trip(&InventoryReleased {
        order_id: "o".into(),
        reservation_id: "r".into(),
        items: vec![ReleasedItem {
            sku: "SKU-1".into(),
            quantity: 2,
        }],
        reason: ReleaseReason::PaymentFailed,
        released_at: at,
    });
    round_trip(&PaymentCaptured {
        order_id: "o".into(),
        payment_id: "p".into(),
        currency: "EUR".into(),
        amount_minor: 1999,
        provider_reference: "psp-1".into(),
        captured_at: at,
    });
    round_trip(&PaymentFailed {
        order_id: "o".into(),
        payment_id: "p".into(),
        reason: PaymentFailureReason::Declined,
        detail: None,
        failed_at: at,
    });
    round_trip(&PaymentRefunded {
        order_id: "o".into(),
        payment_id: "p".into(),
        currency: "EUR".into(),
        amount_minor: 1999,
        reason: RefundReason::OrderCancelled,
        provider_reference: "psp-2".into(),
        refunded_at: at,
    });
    round_trip(&ShipmentScheduled {
        order_id: "o".into(),
        shipment_id: "s".into(),
        carrier: "dhl".into(),
        scheduled_at: at,
    });
}

#[test]
fn every_event_travels_on_the_topic_of_its_aggregate() {
    assert_eq!(ALL.len(), 10);
    for (name, _, topic) in ALL {
        let expected = match name.split('.').nth(1).unwrap() {
            "order" => "shop.orders.v1",
            "inventory" => "shop.inventory.v1",
            "payment" => "shop.payments.v1",
            "shipping" => "shop.shipments.v1",
            other => panic!("unexpected namespace {other}"),
        };
        assert_eq!(*topic, expected, "{name}");
    }
    assert_eq!(<OrderPlaced as Event>::TOPIC, "shop.orders.v1");
    assert_eq!(<OrderPlaced as Event>::NAME, "shop.order.OrderPlaced");
}

#[test]
fn timestamps_are_declared_timestamp_millis() {
    let schema: serde_json::Value = serde_json::from_str(<OrderPlaced as Event>::SCHEMA).unwrap();
    let placed_at = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "placed_at")
        .unwrap();
    assert_eq!(placed_at["type"]["logicalType"], "timestamp-millis");
}
