//! The saga's events applied by the handler: what each does to the stock, the reservation and the
//! outbox, and that each is applied once and only where the reservation's status allows it.

use choreo::consumer::HandlerError;
use shop_events::{
    CancelReason, InventoryRejected, InventoryReleased, InventoryReserved, OrderCancelled,
    OrderConfirmed, PaymentCaptured, PaymentFailed, PaymentFailureReason, RejectReason,
    ReleaseReason, ReleasedItem, ReservedItem, ShopEvent, Shortage,
};

use crate::helpers::{order, order_id, spawn_app};

fn payment_failed(order_id: &str) -> PaymentFailed {
    PaymentFailed {
        order_id: order_id.to_owned(),
        payment_id: "pay-1".to_owned(),
        reason: PaymentFailureReason::Declined,
        detail: None,
        failed_at: 1_700_000_001_000,
    }
}

fn cancelled(order_id: &str) -> OrderCancelled {
    OrderCancelled {
        order_id: order_id.to_owned(),
        reason: CancelReason::CustomerRequest,
        detail: None,
        cancelled_at: 1_700_000_001_000,
    }
}

fn confirmed(order_id: &str) -> OrderConfirmed {
    OrderConfirmed {
        order_id: order_id.to_owned(),
        payment_id: "pay-1".to_owned(),
        currency: "EUR".to_owned(),
        total_minor: 500,
        confirmed_at: 1_700_000_001_000,
    }
}

fn reserved(event: &ShopEvent) -> &InventoryReserved {
    match event {
        ShopEvent::InventoryReserved(reserved) => reserved,
        other => panic!("expected InventoryReserved, got {other:?}"),
    }
}

fn rejected(event: &ShopEvent) -> &InventoryRejected {
    match event {
        ShopEvent::InventoryRejected(rejected) => rejected,
        other => panic!("expected InventoryRejected, got {other:?}"),
    }
}

fn released(event: &ShopEvent) -> &InventoryReleased {
    match event {
        ShopEvent::InventoryReleased(released) => released,
        other => panic!("expected InventoryReleased, got {other:?}"),
    }
}

#[tokio::test]
async fn an_order_that_fits_reserves_every_line_and_announces_it() {
    let app = spawn_app().await;
    app.stock_up("MUG", 5).await;
    app.stock_up("TEA", 3).await;
    let id = order_id();
    let placed = order(&id, &[("MUG", 2), ("TEA", 3)]);

    app.deliver(&id, &placed).await;

    let mug = app.stock("MUG").await;
    assert_eq!(
        (mug.available, mug.reserved, mug.sold, mug.received),
        (3, 2, 0, 5)
    );
    let tea = app.stock("TEA").await;
    assert_eq!((tea.available, tea.reserved), (0, 3));
    assert_eq!(app.reservation(&id).await, Some(("reserved".into(), None)));
    let published = app.published().await;
    assert_eq!(published.len(), 1);
    let event = reserved(&published[0].0);
    assert_eq!(event.order_id, id);
    assert_eq!(
        event.items,
        vec![
            ReservedItem {
                sku: "MUG".into(),
                quantity: 2
            },
            ReservedItem {
                sku: "TEA".into(),
                quantity: 3
            },
        ]
    );
    assert_eq!(
        (event.currency.as_str(), event.amount_minor),
        ("EUR", placed.total_minor)
    );
    assert!(uuid::Uuid::parse_str(&event.reservation_id).is_ok());
    app.finish().await;
}

#[tokio::test]
async fn the_announcement_is_caused_by_the_order_and_keyed_by_it() {
    let app = spawn_app().await;
    app.stock_up("MUG", 5).await;
    let id = order_id();
    let incoming = app.incoming(&id, &order(&id, &[("MUG", 1)])).await;

    app.handle(&incoming).await.unwrap();

    let (_, row) = &app.published().await[0];
    let cause = incoming.metadata.event_id.to_string();
    assert_eq!(row.header("causation_id"), Some(cause.as_str()));
    assert_eq!(row.header("correlation_id"), Some(id.as_str()));
    assert_eq!(row.header("producer"), Some("inventory"));
    app.finish().await;
}

#[tokio::test]
async fn lines_of_one_sku_are_reserved_as_one_item() {
    let app = spawn_app().await;
    app.stock_up("MUG", 5).await;
    let id = order_id();

    app.deliver(&id, &order(&id, &[("MUG", 1), ("MUG", 3)]))
        .await;

    assert_eq!(app.stock("MUG").await.reserved, 4);
    let published = app.published().await;
    let event = reserved(&published[0].0);
    assert_eq!(
        event.items,
        vec![ReservedItem {
            sku: "MUG".into(),
            quantity: 4
        }]
    );
    app.finish().await;
}

#[tokio::test]
async fn an_order_for_an_unknown_sku_is_rejected_and_holds_nothing() {
    let app = spawn_app().await;
    app.stock_up("MUG", 5).await;
    let id = order_id();

    app.deliver(&id, &order(&id, &[("MUG", 1), ("GHOST", 1)]))
        .await;

    let mug = app.stock("MUG").await;
    assert_eq!((mug.available, mug.reserved), (5, 0));
    assert_eq!(
        app.reservation(&id).await,
        Some(("rejected".into(), Some("UNKNOWN_SKU".into())))
    );
    let published = app.published().await;
    let event = rejected(&published[0].0);
    assert_eq!(event.reason, RejectReason::UnknownSku);
    assert_eq!(
        event.shortages,
        vec![Shortage {
            sku: "GHOST".into(),
            requested: 1,
            available: 0
        }]
    );
    app.finish().await;
}

#[tokio::test]
async fn an_order_short_of_stock_is_rejected_with_its_shortages_and_holds_nothing() {
    let app = spawn_app().await;
    app.stock_up("MUG", 5).await;
    app.stock_up("TEA", 2).await;
    let id = order_id();

    app.deliver(&id, &order(&id, &[("MUG", 2), ("TEA", 3)]))
        .await;

    assert_eq!(app.stock("MUG").await.available, 5);
    assert_eq!(app.stock("TEA").await.available, 2);
    let published = app.published().await;
    let event = rejected(&published[0].0);
    assert_eq!(event.reason, RejectReason::OutOfStock);
    assert_eq!(
        event.shortages,
        vec![Shortage {
            sku: "TEA".into(),
            requested: 3,
            available: 2
        }]
    );
    app.finish().await;
}

#[tokio::test]
async fn the_same_order_placed_twice_is_reserved_once() {
    let app = spawn_app().await;
    app.stock_up("MUG", 5).await;
    let id = order_id();
    let placed = order(&id, &[("MUG", 2)]);

    app.deliver(&id, &placed).await;
    app.deliver(&id, &placed).await;

    assert_eq!(app.stock("MUG").await.reserved, 2);
    assert_eq!(app.published().await.len(), 1);
    app.finish().await;
}

#[tokio::test]
async fn payment_failure_releases_the_reservation() {
    let app = spawn_app().await;
    app.stock_up("MUG", 5).await;
    let id = order_id();
    app.deliver(&id, &order(&id, &[("MUG", 2)])).await;

    app.deliver(&id, &payment_failed(&id)).await;

    let mug = app.stock("MUG").await;
    assert_eq!(
        (mug.available, mug.reserved, mug.sold, mug.received),
        (5, 0, 0, 5)
    );
    assert_eq!(
        app.reservation(&id).await,
        Some(("released".into(), Some("PAYMENT_FAILED".into())))
    );
    let published = app.published().await;
    assert_eq!(published.len(), 2);
    let reservation_id = reserved(&published[0].0).reservation_id.clone();
    let event = released(&published[1].0);
    assert_eq!(event.reason, ReleaseReason::PaymentFailed);
    assert_eq!(event.reservation_id, reservation_id);
    assert_eq!(
        event.items,
        vec![ReleasedItem {
            sku: "MUG".into(),
            quantity: 2
        }]
    );
    app.finish().await;
}

#[tokio::test]
async fn cancelling_an_order_releases_its_reservation_once() {
    let app = spawn_app().await;
    app.stock_up("MUG", 5).await;
    let id = order_id();
    app.deliver(&id, &order(&id, &[("MUG", 2)])).await;

    app.deliver(&id, &cancelled(&id)).await;
    app.deliver(&id, &cancelled(&id)).await;
    app.deliver(&id, &payment_failed(&id)).await;

    assert_eq!(app.stock("MUG").await.available, 5);
    let published = app.published().await;
    assert_eq!(published.len(), 2);
    assert_eq!(
        released(&published[1].0).reason,
        ReleaseReason::OrderCancelled
    );
    app.finish().await;
}

#[tokio::test]
async fn confirming_an_order_sells_its_units_and_publishes_nothing() {
    let app = spawn_app().await;
    app.stock_up("MUG", 5).await;
    let id = order_id();
    app.deliver(&id, &order(&id, &[("MUG", 2)])).await;

    app.deliver(&id, &confirmed(&id)).await;
    app.deliver(&id, &confirmed(&id)).await;

    let mug = app.stock("MUG").await;
    assert_eq!(
        (mug.available, mug.reserved, mug.sold, mug.received),
        (3, 0, 2, 5)
    );
    assert_eq!(app.reservation(&id).await, Some(("sold".into(), None)));
    assert_eq!(app.published().await.len(), 1);
    app.finish().await;
}

#[tokio::test]
async fn a_sold_reservation_is_not_released_by_a_late_cancellation() {
    let app = spawn_app().await;
    app.stock_up("MUG", 5).await;
    let id = order_id();
    app.deliver(&id, &order(&id, &[("MUG", 2)])).await;
    app.deliver(&id, &confirmed(&id)).await;

    app.deliver(&id, &cancelled(&id)).await;

    assert_eq!(app.stock("MUG").await.sold, 2);
    assert_eq!(app.published().await.len(), 1);
    app.finish().await;
}

#[tokio::test]
async fn a_rejected_order_is_neither_released_nor_sold() {
    let app = spawn_app().await;
    app.stock_up("MUG", 1).await;
    let id = order_id();
    app.deliver(&id, &order(&id, &[("MUG", 2)])).await;

    app.deliver(&id, &payment_failed(&id)).await;
    app.deliver(&id, &confirmed(&id)).await;

    let mug = app.stock("MUG").await;
    assert_eq!((mug.available, mug.reserved, mug.sold), (1, 0, 0));
    assert_eq!(app.reservation(&id).await.unwrap().0, "rejected");
    assert_eq!(app.published().await.len(), 1);
    app.finish().await;
}

#[tokio::test]
async fn settling_an_unknown_order_does_nothing() {
    let app = spawn_app().await;
    let id = order_id();

    app.deliver(&id, &payment_failed(&id)).await;
    app.deliver(&id, &cancelled(&id)).await;
    app.deliver(&id, &confirmed(&id)).await;

    assert_eq!(app.reservation(&id).await, None);
    assert!(app.published().await.is_empty());
    app.finish().await;
}

#[tokio::test]
async fn events_for_others_are_passed_over() {
    let app = spawn_app().await;
    let id = order_id();
    let captured = PaymentCaptured {
        order_id: id.clone(),
        payment_id: "pay-1".into(),
        currency: "EUR".into(),
        amount_minor: 500,
        provider_reference: "ref-1".into(),
        captured_at: 1_700_000_001_000,
    };

    app.deliver(&id, &captured).await;

    assert!(app.published().await.is_empty());
    app.finish().await;
}

#[tokio::test]
async fn an_order_with_an_invalid_line_is_refused_for_the_dead_letters() {
    let app = spawn_app().await;
    let id = order_id();
    let incoming = app.incoming(&id, &order(&id, &[("mug", 1)])).await;

    let error = app.handle(&incoming).await.unwrap_err();

    assert!(matches!(error, HandlerError::Rejected(_)), "{error:?}");
    assert!(error.permanent_reason().is_some());
    app.finish().await;
}

#[tokio::test]
async fn two_orders_racing_for_the_last_units_never_oversell() {
    let app = spawn_app().await;
    app.stock_up("MUG", 3).await;
    let (first, second) = (order_id(), order_id());
    let a = app.incoming(&first, &order(&first, &[("MUG", 2)])).await;
    let b = app.incoming(&second, &order(&second, &[("MUG", 2)])).await;

    let (ra, rb) = tokio::join!(app.handle(&a), app.handle(&b));
    ra.unwrap();
    rb.unwrap();

    let mug = app.stock("MUG").await;
    assert_eq!((mug.available, mug.reserved), (1, 2));
    let statuses = [
        app.reservation(&first).await.unwrap().0,
        app.reservation(&second).await.unwrap().0,
    ];
    assert!(statuses.contains(&"reserved".to_owned()));
    assert!(statuses.contains(&"rejected".to_owned()));
    app.finish().await;
}
