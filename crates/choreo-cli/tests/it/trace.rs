//! `choreo trace` against the real broker: the sagas of three orders written to four topics of the
//! test's own (the shop's topics may have running consumers), traced to their verdicts by the
//! rules of the shop's saga file (sagas/order.yaml).

use choreo::envelope::Metadata;
use choreo::testing::create_topic;
use shop_events::{
    CancelReason, InventoryReleased, InventoryReserved, OrderCancelled, OrderConfirmed,
    PaymentCaptured, PaymentRefunded, RefundReason, ReleaseReason, ReleasedItem, ReservedItem,
    ShipmentScheduled,
};

use super::inspect::{choreo, json_lines, placed, stderr, stdout, Events};

/// Four topics with the same partition count, standing for the shop's.
struct Topics {
    orders: String,
    inventory: String,
    payments: String,
    shipments: String,
}

impl Topics {
    async fn create() -> Self {
        Self {
            orders: create_topic("test.trace-orders", 3).await,
            inventory: create_topic("test.trace-inventory", 3).await,
            payments: create_topic("test.trace-payments", 3).await,
            shipments: create_topic("test.trace-shipments", 3).await,
        }
    }

    /// `choreo trace <order_id>` on these topics by the shop's saga file, plus `extra`
    /// arguments.
    fn trace(&self, order_id: &str, extra: &[&str]) -> std::process::Output {
        let saga = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sagas/order.yaml");
        let mut args = vec!["trace", order_id, "--saga", saga];
        for topic in [
            &self.orders,
            &self.inventory,
            &self.payments,
            &self.shipments,
        ] {
            args.extend(["--topic", topic.as_str()]);
        }
        args.extend(extra);
        choreo(&args)
    }
}

fn order_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn meta(order_id: &str, producer: &str, cause: Option<&Metadata>) -> Metadata {
    let metadata = Metadata::new("unset", order_id, producer);
    match cause {
        Some(cause) => metadata.caused_by(cause),
        None => metadata,
    }
}

fn reserved(order_id: &str) -> InventoryReserved {
    InventoryReserved {
        order_id: order_id.into(),
        reservation_id: "res-1".into(),
        items: vec![ReservedItem {
            sku: "MUG-01".into(),
            quantity: 2,
        }],
        currency: "EUR".into(),
        amount_minor: 1200,
        reserved_at: 1_700_000_000_100,
    }
}

fn captured(order_id: &str) -> PaymentCaptured {
    PaymentCaptured {
        order_id: order_id.into(),
        payment_id: "pay-1".into(),
        currency: "EUR".into(),
        amount_minor: 1200,
        provider_reference: "ch_1".into(),
        captured_at: 1_700_000_000_200,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_gives_each_order_its_steps_in_causal_order_and_a_verdict() {
    let topics = Topics::create().await;
    let events = Events::new();

    // Completed: placed, reserved, captured, confirmed, shipped.
    let done = order_id();
    let (p, _, _) = events
        .send(
            &topics.orders,
            &done,
            &placed(&done),
            meta(&done, "order", None),
        )
        .await;
    let (r, _, _) = events
        .send(
            &topics.inventory,
            &done,
            &reserved(&done),
            meta(&done, "inventory", Some(&p)),
        )
        .await;
    let (c, _, _) = events
        .send(
            &topics.payments,
            &done,
            &captured(&done),
            meta(&done, "payment", Some(&r)),
        )
        .await;
    let confirmed = OrderConfirmed {
        order_id: done.clone(),
        payment_id: "pay-1".into(),
        currency: "EUR".into(),
        total_minor: 1200,
        confirmed_at: 1_700_000_000_300,
    };
    let (k, _, _) = events
        .send(
            &topics.orders,
            &done,
            &confirmed,
            meta(&done, "order", Some(&c)),
        )
        .await;
    let shipped = ShipmentScheduled {
        order_id: done.clone(),
        shipment_id: "ship-1".into(),
        carrier: "dhl".into(),
        scheduled_at: 1_700_000_000_400,
    };
    events
        .send(
            &topics.shipments,
            &done,
            &shipped,
            meta(&done, "shipping", Some(&k)),
        )
        .await;

    // Cancelled on its deadline after a capture: released and refunded.
    let gone = order_id();
    let (p, _, _) = events
        .send(
            &topics.orders,
            &gone,
            &placed(&gone),
            meta(&gone, "order", None),
        )
        .await;
    let (r, _, _) = events
        .send(
            &topics.inventory,
            &gone,
            &reserved(&gone),
            meta(&gone, "inventory", Some(&p)),
        )
        .await;
    let (cancel, _, _) = events
        .send(
            &topics.orders,
            &gone,
            &OrderCancelled {
                order_id: gone.clone(),
                reason: CancelReason::Timeout,
                detail: None,
                cancelled_at: 1_700_000_030_000,
            },
            meta(&gone, "order", None),
        )
        .await;
    let (c, _, _) = events
        .send(
            &topics.payments,
            &gone,
            &captured(&gone),
            meta(&gone, "payment", Some(&r)),
        )
        .await;
    let released = InventoryReleased {
        order_id: gone.clone(),
        reservation_id: "res-1".into(),
        items: vec![ReleasedItem {
            sku: "MUG-01".into(),
            quantity: 2,
        }],
        reason: ReleaseReason::OrderCancelled,
        released_at: 1_700_000_030_100,
    };
    events
        .send(
            &topics.inventory,
            &gone,
            &released,
            meta(&gone, "inventory", Some(&cancel)),
        )
        .await;
    let refunded = PaymentRefunded {
        order_id: gone.clone(),
        payment_id: "pay-1".into(),
        currency: "EUR".into(),
        amount_minor: 1200,
        reason: RefundReason::OrderCancelled,
        provider_reference: "re_1".into(),
        refunded_at: 1_700_000_030_200,
    };
    events
        .send(
            &topics.payments,
            &gone,
            &refunded,
            meta(&gone, "payment", Some(&c)),
        )
        .await;

    // Stuck: reserved, then nothing from payment.
    let stuck = order_id();
    let (p, _, _) = events
        .send(
            &topics.orders,
            &stuck,
            &placed(&stuck),
            meta(&stuck, "order", None),
        )
        .await;
    events
        .send(
            &topics.inventory,
            &stuck,
            &reserved(&stuck),
            meta(&stuck, "inventory", Some(&p)),
        )
        .await;

    let output = topics.trace(&done, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("verdict: completed"), "{text}");
    let order: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            [
                "OrderPlaced",
                "InventoryReserved",
                "PaymentCaptured",
                "OrderConfirmed",
                "ShipmentScheduled",
            ]
            .into_iter()
            .find(|t| l.contains(&format!(" {t} ")))
        })
        .collect();
    assert_eq!(
        order,
        [
            "OrderPlaced",
            "InventoryReserved",
            "PaymentCaptured",
            "OrderConfirmed",
            "ShipmentScheduled"
        ],
        "{text}"
    );
    assert!(text.contains("carrier=dhl"), "{text}");

    let json = &json_lines(&topics.trace(&gone, &["--json"]))[0];
    assert_eq!(json["verdict"]["status"], "cancelled");
    assert_eq!(json["verdict"]["reason"], "TIMEOUT");
    assert_eq!(
        json["verdict"]["compensated"],
        serde_json::json!(["InventoryReleased", "PaymentRefunded"])
    );
    assert_eq!(json["verdict"]["missing"], serde_json::json!([]));
    assert_eq!(json["steps"].as_array().unwrap().len(), 6);
    let types: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["event_type"].as_str().unwrap())
        .collect();
    let position = |t: &str| types.iter().position(|x| x.ends_with(t)).unwrap();
    assert!(
        position("PaymentCaptured") < position("PaymentRefunded"),
        "{types:?}"
    );
    assert!(
        position("OrderCancelled") < position("InventoryReleased"),
        "{types:?}"
    );

    let output = topics.trace(&stuck, &[]);
    let text = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        text.contains("stuck since") && text.contains("waiting for a payment outcome"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_of_an_order_with_no_events_exits_1_saying_so() {
    let topics = Topics::create().await;
    let missing = order_id();
    let output = topics.trace(&missing, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("no event has the key `{missing}`")),
        "{}",
        stderr(&output)
    );
}
