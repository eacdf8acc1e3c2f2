//! Events the order service writes later name their cause and continue its trace: the order
//! keeps its OrderPlaced and the event of its latest move; the deadline's OrderCancelled names
//! the latest (or OrderPlaced) and continues its trace, a customer's OrderCancelled names
//! OrderPlaced.

use std::time::Duration;

use choreo::envelope::Metadata;
use choreo::testing::{handle, incoming, OutboxRow};
use order::handler::OrderHandler;
use order::store::OrderRow;

use crate::{id, spawn_app, App};

const PLACED_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const RESERVED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-00f067aa0ba902b7-01")
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn trace_id(traceparent: &str) -> Option<&str> {
    traceparent.split('-').nth(1)
}

fn reserved(order_id: &str) -> shop_events::InventoryReserved {
    shop_events::InventoryReserved {
        order_id: order_id.into(),
        reservation_id: format!("res-{order_id}"),
        items: vec![shop_events::ReservedItem {
            sku: "MUG-01".into(),
            quantity: 2,
        }],
        currency: "EUR".into(),
        amount_minor: 4499,
        reserved_at: 0,
    }
}

impl App {
    async fn row(&self, order_id: &str) -> OrderRow {
        order::store::get(&self.db.pool, order_id)
            .await
            .unwrap()
            .expect("order")
    }

    /// The outbox's only row of `event_type` for `order_id`.
    async fn written(&self, order_id: &str, event_type: &str) -> OutboxRow {
        let mut rows = self.outbox(order_id).await;
        rows.retain(|row| row.header("event_type") == Some(event_type));
        assert_eq!(rows.len(), 1, "one {event_type} for {order_id}");
        rows.remove(0)
    }

    /// Gives the kept OrderPlaced the trace `trace_id` (the tests export no spans, so the
    /// event was written without one).
    async fn trace_placed(&self, order_id: &str, trace_id: &str) {
        sqlx::query(
            "update orders set placed_cause = jsonb_set(placed_cause, '{traceparent}', to_jsonb($2::text))
             where order_id = $1",
        )
        .bind(order_id)
        .bind(traceparent(trace_id))
        .execute(&self.db.pool)
        .await
        .unwrap();
    }

    /// Delivers `event` carrying `traceparent`, as the consumer would; returns its metadata.
    async fn deliver_traced<E: choreo::avro::Event>(
        &self,
        order_id: &str,
        event: &E,
        traceparent: String,
    ) -> Metadata {
        let mut incoming = incoming(&self.codec, order_id, event).await;
        incoming.metadata.traceparent = Some(traceparent);
        let handler = OrderHandler {
            codec: self.codec.clone(),
            saga: self.state.saga.clone(),
        };
        handle(&self.db.pool, &handler, &incoming)
            .await
            .expect("handled");
        incoming.metadata
    }

    async fn sweep(&self) {
        assert_eq!(self.sweeper().sweep(100).await.unwrap(), 1);
    }
}

/// `row` names `cause` (an event id) and continues the trace `trace`.
fn assert_caused_by(row: &OutboxRow, cause: uuid::Uuid, trace: &str) {
    let cause = cause.to_string();
    assert_eq!(row.header("causation_id"), Some(cause.as_str()));
    assert_eq!(row.header("traceparent").and_then(trace_id), Some(trace));
}

#[tokio::test]
async fn an_order_keeps_its_order_placed() {
    let app = spawn_app(Duration::from_secs(30)).await;
    let order_id = id();
    app.place(&order_id).await;
    let placed = app.written(&order_id, "shop.order.OrderPlaced").await;
    let kept = app.row(&order_id).await.placed_cause.expect("a kept cause");
    assert_eq!(
        Some(kept.event_id.to_string().as_str()),
        placed.header("event_id")
    );
    assert_eq!(kept.event_type, "shop.order.OrderPlaced");
    assert_eq!(kept.correlation_id, order_id);
    assert_eq!(kept.traceparent.as_deref(), placed.header("traceparent"));
    app.db.drop().await;
}

#[tokio::test]
async fn the_deadline_cancels_in_the_trace_of_the_order_placed_and_names_it() {
    let app = spawn_app(Duration::ZERO).await;
    let order_id = id();
    app.place(&order_id).await;
    app.trace_placed(&order_id, PLACED_TRACE).await;
    let kept = app.row(&order_id).await.placed_cause.expect("a kept cause");

    app.sweep().await;

    let cancelled = app.written(&order_id, "shop.order.OrderCancelled").await;
    assert_caused_by(&cancelled, kept.event_id, PLACED_TRACE);
    app.db.drop().await;
}

#[tokio::test]
async fn the_deadline_of_a_reserved_order_names_the_reservation_and_continues_its_trace() {
    let app = spawn_app(Duration::ZERO).await;
    let order_id = id();
    app.place(&order_id).await;
    let reserved = app
        .deliver_traced(&order_id, &reserved(&order_id), traceparent(RESERVED_TRACE))
        .await;
    let row = app.row(&order_id).await;
    assert_eq!(
        row.last_cause.as_ref().map(|c| c.event_id),
        Some(reserved.event_id)
    );

    app.sweep().await;

    let cancelled = app.written(&order_id, "shop.order.OrderCancelled").await;
    assert_caused_by(&cancelled, reserved.event_id, RESERVED_TRACE);
    app.db.drop().await;
}

#[tokio::test]
async fn a_customers_cancellation_names_the_order_placed() {
    let app = spawn_app(Duration::from_secs(30)).await;
    let order_id = id();
    app.place(&order_id).await;
    app.deliver_traced(&order_id, &reserved(&order_id), traceparent(RESERVED_TRACE))
        .await;
    app.trace_placed(&order_id, PLACED_TRACE).await;
    let kept = app.row(&order_id).await.placed_cause.expect("a kept cause");

    let me = serde_json::json!({"customer_id": "cus_alice"});
    let (status, body) = app
        .call("POST", &format!("/orders/{order_id}/cancel"), me)
        .await;
    assert_eq!(status, axum::http::StatusCode::ACCEPTED, "{body}");

    let cancelled = app.written(&order_id, "shop.order.OrderCancelled").await;
    // No span is exported here, so the request has no trace of its own and the cancellation
    // continues the order's (with spans exported it keeps the request's: `caused_by` fills only
    // a missing traceparent).
    assert_caused_by(&cancelled, kept.event_id, PLACED_TRACE);
    app.db.drop().await;
}
