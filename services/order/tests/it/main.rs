//! The order service against real PostgreSQL and the real schema registry: orders placed over
//! HTTP, outcomes fed to its handler as the consumer runner would, the deadline sweeper; the
//! assertions read its tables and decode its outbox. No Kafka here: the shop's end-to-end test
//! runs every service together on the real topics.

mod causation;
mod replay;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use choreo::avro::{Codec, Event};
use choreo::outbox::Outbox;
use choreo::secret::SecretString;
use choreo::service::auth::{guard, Credentials};
use choreo::testing::{handle, incoming, outbox_rows, registry, OutboxRow, TestDb};
use order::domain::{CancelReason, Status};
use order::handler::OrderHandler;
use order::http::{router, AppState};
use order::saga::Saga;
use serde_json::{json, Value};
use tower::ServiceExt;

struct App {
    db: TestDb,
    codec: Arc<Codec>,
    state: AppState,
}

async fn spawn_app(deadline: Duration) -> App {
    let db = TestDb::create().await;
    order::MIGRATOR.run(&db.pool).await.expect("migrations");
    let codec = Arc::new(Codec::new(&registry()).unwrap());
    let saga = Saga {
        outbox: Outbox::new(codec.clone(), "order"),
        outcomes: Default::default(),
    };
    let state = AppState {
        pool: db.pool.clone(),
        saga,
        deadline,
    };
    App { db, codec, state }
}

const SERVICE_TOKEN: &str = "test-service-token";
const OPERATOR_TOKEN: &str = "test-operator-token";

impl App {
    /// `method uri` with `body` as the operator (who may do everything).
    async fn call(&self, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call_as(Some(OPERATOR_TOKEN), method, uri, body).await
    }

    /// `method uri` with `body` and `token` as the bearer token, through the frame's guard.
    async fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        uri: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Body::from(body.to_string())).unwrap();
        let credentials = Credentials::new(
            SecretString::from(SERVICE_TOKEN),
            SecretString::from(OPERATOR_TOKEN),
        );
        let routes = guard(router(self.state.clone()), Arc::new(credentials));
        let response = routes.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn place(&self, order_id: &str) -> (StatusCode, Value) {
        let body = json!({
            "order_id": order_id,
            "customer_id": "cus_alice",
            "lines": [{"sku": "MUG-01", "quantity": 2}, {"sku": "TEE-01", "quantity": 1}],
            "currency": "EUR",
        });
        self.call("POST", "/orders", body).await
    }

    async fn deliver<E: Event>(&self, order_id: &str, event: &E) {
        let incoming = incoming(&self.codec, order_id, event).await;
        let handler = OrderHandler {
            codec: self.codec.clone(),
            saga: self.state.saga.clone(),
        };
        handle(&self.db.pool, &handler, &incoming)
            .await
            .expect("handled");
    }

    /// A deadline sweeper over the test's database, swept by the test.
    fn sweeper(&self) -> order::deadline::Sweeper {
        order::deadline::Sweeper {
            pool: self.db.pool.clone(),
            saga: self.state.saga.clone(),
            every: Duration::from_secs(1),
        }
    }

    async fn status(&self, order_id: &str) -> Status {
        let row = order::store::get(&self.db.pool, order_id)
            .await
            .unwrap()
            .expect("order");
        row.status()
    }

    /// The outbox's rows for `order_id`, in order.
    async fn outbox(&self, order_id: &str) -> Vec<OutboxRow> {
        let mut rows = outbox_rows(&self.db.pool).await;
        rows.retain(|row| row.key == order_id);
        rows
    }

    /// The event types in the outbox for `order_id`, in order.
    async fn announced(&self, order_id: &str) -> Vec<String> {
        let rows = self.outbox(order_id).await;
        rows.iter()
            .map(|row| row.header("event_type").unwrap().to_owned())
            .collect()
    }

    /// The last `E` in the outbox for `order_id`.
    async fn outbox_value<E: Event>(&self, order_id: &str) -> E {
        let rows = self.outbox(order_id).await;
        let row = rows
            .iter()
            .rev()
            .find(|row| row.header("event_type") == Some(E::NAME))
            .unwrap();
        row.decode::<E>(&self.codec).await.unwrap()
    }
}

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn captured(order_id: &str) -> shop_events::PaymentCaptured {
    shop_events::PaymentCaptured {
        order_id: order_id.into(),
        payment_id: "pay-1".into(),
        currency: "EUR".into(),
        amount_minor: 4499,
        provider_reference: "ch_1".into(),
        captured_at: 0,
    }
}

#[tokio::test]
async fn a_placed_order_is_priced_from_the_catalogue_and_announced() {
    let app = spawn_app(Duration::from_secs(30)).await;
    let order_id = id();
    let (status, body) = app.place(&order_id).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "placed");
    assert_eq!(body["total_minor"], 2 * 1250 + 1999);
    let placed: shop_events::OrderPlaced = app.outbox_value(&order_id).await;
    assert_eq!(placed.total_minor, 4499);
    assert_eq!(placed.lines.len(), 2);
    assert_eq!(placed.customer_id, "cus_alice");
    app.db.drop().await;
}

#[tokio::test]
async fn placing_the_same_order_twice_creates_it_once() {
    let app = spawn_app(Duration::from_secs(30)).await;
    let order_id = id();
    assert_eq!(app.place(&order_id).await.0, StatusCode::CREATED);
    let (status, body) = app.place(&order_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.announced(&order_id).await, ["shop.order.OrderPlaced"]);
    let other = json!({"order_id": order_id, "customer_id": "cus_alice", "lines": [{"sku": "CAP-01", "quantity": 1}], "currency": "EUR"});
    assert_eq!(
        app.call("POST", "/orders", other).await.0,
        StatusCode::CONFLICT
    );
    app.db.drop().await;
}

#[tokio::test]
async fn bad_orders_get_a_client_error_with_a_problem_body() {
    let app = spawn_app(Duration::from_secs(30)).await;
    let cases = [
        json!({"order_id": id(), "customer_id": "cus_a", "lines": [], "currency": "EUR"}),
        json!({"order_id": id(), "customer_id": "cus_a", "lines": [{"sku": "NOPE-1", "quantity": 1}], "currency": "EUR"}),
        json!({"order_id": id(), "customer_id": "cus_a", "lines": [{"sku": "MUG-01", "quantity": 0}], "currency": "EUR"}),
        json!({"order_id": id(), "customer_id": "cus_a", "lines": [{"sku": "MUG-01", "quantity": 1}], "currency": "USD"}),
        json!({"order_id": "", "customer_id": "cus_a", "lines": [{"sku": "MUG-01", "quantity": 1}], "currency": "EUR"}),
        json!({"order_id": id(), "lines": "many"}),
    ];
    for case in cases {
        let (status, body) = app.call("POST", "/orders", case.clone()).await;
        assert!(status.is_client_error(), "{case} gave {status}");
        assert!(body["detail"].is_string(), "{case} gave {body}");
        assert_eq!(body["status"], status.as_u16(), "{case} gave {body}");
        assert!(
            body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:choreo:problem:")),
            "{case} gave {body}"
        );
    }
    app.db.drop().await;
}

#[tokio::test]
async fn a_price_takes_the_operator_token_and_orders_take_the_service_token() {
    let app = spawn_app(Duration::from_secs(30)).await;
    let price = json!({"currency": "EUR", "unit_price_minor": 1200});
    let (status, body) = app
        .call_as(None, "PUT", "/catalog/MUG-01", price.clone())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = app
        .call_as(Some("forged"), "GET", "/catalog", Value::Null)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = app
        .call_as(Some(SERVICE_TOKEN), "PUT", "/catalog/MUG-01", price.clone())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["type"], "urn:choreo:problem:forbidden");
    let (status, body) = app
        .call_as(Some(OPERATOR_TOKEN), "PUT", "/catalog/MUG-01", price)
        .await;
    assert!(status.is_success(), "{status} {body}");
    let (status, body) = app
        .call_as(Some(SERVICE_TOKEN), "GET", "/orders/summary", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.db.drop().await;
}

#[tokio::test]
async fn a_price_of_zero_is_refused_by_the_catalogue_constraint_with_422() {
    let app = spawn_app(Duration::from_secs(30)).await;
    let price = json!({"currency": "EUR", "unit_price_minor": 0});
    let (status, body) = app.call("PUT", "/catalog/MUG-01", price).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["type"], "urn:choreo:problem:invalid-value");
    assert_eq!(body["detail"], "a price must be above zero");
    app.db.drop().await;
}

#[tokio::test]
async fn a_capture_confirms_the_order_and_a_shipment_ships_it() {
    let app = spawn_app(Duration::from_secs(30)).await;
    let order_id = id();
    app.place(&order_id).await;
    app.deliver(&order_id, &captured(&order_id)).await;
    assert_eq!(app.status(&order_id).await, Status::Confirmed);
    let confirmed: shop_events::OrderConfirmed = app.outbox_value(&order_id).await;
    assert_eq!(
        (confirmed.payment_id.as_str(), confirmed.total_minor),
        ("pay-1", 4499)
    );
    let shipped = shop_events::ShipmentScheduled {
        order_id: order_id.clone(),
        shipment_id: "sh-1".into(),
        carrier: "DHL".into(),
        scheduled_at: 0,
    };
    app.deliver(&order_id, &shipped).await;
    assert_eq!(app.status(&order_id).await, Status::Shipped);
    let (_, body) = app
        .call("GET", &format!("/orders/{order_id}"), Value::Null)
        .await;
    let steps: Vec<&str> = body["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "OrderPlaced",
            "PaymentCaptured",
            "OrderConfirmed",
            "ShipmentScheduled"
        ]
    );
    app.db.drop().await;
}

#[tokio::test]
async fn a_rejected_reservation_cancels_the_order_for_out_of_stock() {
    let app = spawn_app(Duration::from_secs(30)).await;
    let order_id = id();
    app.place(&order_id).await;
    let rejected = shop_events::InventoryRejected {
        order_id: order_id.clone(),
        reason: shop_events::RejectReason::OutOfStock,
        shortages: vec![],
        rejected_at: 0,
    };
    app.deliver(&order_id, &rejected).await;
    assert_eq!(
        app.status(&order_id).await,
        Status::Cancelled(CancelReason::OutOfStock)
    );
    let cancelled: shop_events::OrderCancelled = app.outbox_value(&order_id).await;
    assert_eq!(cancelled.reason, shop_events::CancelReason::OutOfStock);
    app.db.drop().await;
}

#[tokio::test]
async fn a_capture_after_the_deadline_cancelled_the_order_changes_nothing() {
    let app = spawn_app(Duration::ZERO).await;
    let order_id = id();
    app.place(&order_id).await;
    let sweeper = app.sweeper();
    assert_eq!(sweeper.sweep(100).await.unwrap(), 1);
    assert_eq!(
        app.status(&order_id).await,
        Status::Cancelled(CancelReason::Timeout)
    );
    app.deliver(&order_id, &captured(&order_id)).await;
    assert_eq!(
        app.status(&order_id).await,
        Status::Cancelled(CancelReason::Timeout)
    );
    assert_eq!(
        app.announced(&order_id).await,
        ["shop.order.OrderPlaced", "shop.order.OrderCancelled"]
    );
    assert_eq!(
        sweeper.sweep(100).await.unwrap(),
        0,
        "a cancelled order is not swept again"
    );
    app.db.drop().await;
}

#[tokio::test]
async fn a_customer_may_cancel_until_confirmation_and_not_after() {
    let app = spawn_app(Duration::from_secs(30)).await;
    let (open, confirmed) = (id(), id());
    app.place(&open).await;
    app.place(&confirmed).await;
    app.deliver(&confirmed, &captured(&confirmed)).await;

    let me = json!({"customer_id": "cus_alice"});
    let (status, body) = app
        .call("POST", &format!("/orders/{open}/cancel"), me.clone())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["cancel_reason"], "customer_request");
    let (status, _) = app
        .call("POST", &format!("/orders/{confirmed}/cancel"), me.clone())
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let stranger = json!({"customer_id": "cus_mallory"});
    assert_eq!(
        app.call("POST", &format!("/orders/{open}/cancel"), stranger)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    app.db.drop().await;
}
