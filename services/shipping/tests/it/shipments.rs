//! Shipments: scheduled once per confirmed order, announced through the outbox, listed over HTTP.

use choreo::consumer::HandlerError;
use serde_json::Value;
use shop_events::{CancelReason, OrderCancelled, ShopEvent};

use crate::helpers::{confirmed, order_id, spawn_app};

#[tokio::test]
async fn a_confirmed_order_gets_a_shipment_and_it_is_announced() {
    let app = spawn_app().await;
    let id = order_id();
    let incoming = app.incoming(&id, &confirmed(&id, 4_500)).await;

    app.handle(&incoming).await.unwrap();

    let published = app.published().await;
    assert_eq!(published.len(), 1);
    let (ShopEvent::ShipmentScheduled(event), row) = &published[0] else {
        panic!("expected ShipmentScheduled, got {:?}", published[0].0)
    };
    assert_eq!(event.order_id, id);
    assert_eq!(event.carrier, "dhl");
    assert!(uuid::Uuid::parse_str(&event.shipment_id).is_ok());
    let cause = incoming.metadata.event_id.to_string();
    assert_eq!(row.header("causation_id"), Some(cause.as_str()));
    assert_eq!(row.header("producer"), Some("shipping"));

    let (status, body) = app.get(&format!("/shipments?order_id={id}")).await;
    assert_eq!(status, 200);
    let rows = body.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["shipment_id"], event.shipment_id.as_str());
    assert_eq!(rows[0]["order_id"], id.as_str());
    assert_eq!(rows[0]["carrier"], "dhl");
    assert_eq!(rows[0]["status"], "scheduled");
    let at = chrono::DateTime::parse_from_rfc3339(rows[0]["scheduled_at"].as_str().unwrap());
    assert_eq!(at.unwrap().timestamp_millis(), event.scheduled_at);
    app.finish().await;
}

#[tokio::test]
async fn a_second_confirmation_of_an_order_schedules_nothing() {
    let app = spawn_app().await;
    let id = order_id();

    app.deliver(&id, &confirmed(&id, 500)).await;
    app.deliver(&id, &confirmed(&id, 50_000)).await;

    assert_eq!(app.published().await.len(), 1);
    let (_, body) = app.get(&format!("/shipments?order_id={id}")).await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["carrier"], "post");
    app.finish().await;
}

#[tokio::test]
async fn other_events_are_passed_over() {
    let app = spawn_app().await;
    let id = order_id();
    let cancelled = OrderCancelled {
        order_id: id.clone(),
        reason: CancelReason::Timeout,
        detail: None,
        cancelled_at: 1_700_000_001_000,
    };

    app.deliver(&id, &cancelled).await;

    assert!(app.published().await.is_empty());
    let (_, body) = app.get("/shipments").await;
    assert_eq!(body, Value::Array(vec![]));
    app.finish().await;
}

#[tokio::test]
async fn a_confirmation_with_an_invalid_order_id_is_refused_for_the_dead_letters() {
    let app = spawn_app().await;
    let incoming = app.incoming("bad id", &confirmed("bad id", 500)).await;

    let error = app.handle(&incoming).await.unwrap_err();

    assert!(matches!(error, HandlerError::Rejected(_)), "{error:?}");
    app.finish().await;
}

#[tokio::test]
async fn the_latest_shipments_are_listed_newest_first() {
    let app = spawn_app().await;
    let ids: Vec<String> = (0..3).map(|_| order_id()).collect();
    for (i, id) in ids.iter().enumerate() {
        app.deliver(id, &confirmed(id, 10_000 * i as i64)).await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }

    let (status, body) = app.get("/shipments").await;

    assert_eq!(status, 200);
    let listed: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]);
    app.finish().await;
}
