//! `spawn_app`: a fresh database with the inventory's tables, its handler and its HTTP API on a
//! free port, and the helpers the tests share to deliver events and read the outcome.

use std::sync::Arc;

use choreo::avro::{Codec, Event};
use choreo::consumer::{HandlerError, Incoming};
use choreo::outbox::Outbox;
use choreo::secret::SecretString;
use choreo::service::auth::{guard, Credentials};
use choreo::testing::{self, OutboxRow, TestDb};
use inventory::handler::InventoryHandler;
use inventory::store::StockRow;
use serde_json::Value;
use shop_events::{OrderLine, OrderPlaced, ShopEvent};

/// The tokens the API under test accepts (the frame's guard, as the service runs it).
pub const SERVICE_TOKEN: &str = "test-service-token";
pub const OPERATOR_TOKEN: &str = "test-operator-token";

pub struct TestApp {
    pub db: TestDb,
    pub codec: Arc<Codec>,
    pub handler: InventoryHandler,
    pub base: String,
    pub http: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    let db = TestDb::create().await;
    inventory::MIGRATOR.run(&db.pool).await.expect("migrations");
    let codec = Arc::new(Codec::new(&choreo::testing::registry()).expect("codec"));
    let handler = InventoryHandler::new(codec.clone(), Outbox::new(codec.clone(), "inventory"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let credentials = Credentials::new(
        SecretString::from(SERVICE_TOKEN),
        SecretString::from(OPERATOR_TOKEN),
    );
    let router = guard(
        inventory::http::router(db.pool.clone()),
        Arc::new(credentials),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    TestApp {
        db,
        codec,
        handler,
        base,
        http: reqwest::Client::new(),
    }
}

/// An order of `lines` (SKU, quantity) at 250 minor units each.
pub fn order(order_id: &str, lines: &[(&str, i32)]) -> OrderPlaced {
    let lines: Vec<OrderLine> = lines
        .iter()
        .map(|(sku, quantity)| OrderLine {
            sku: (*sku).to_owned(),
            quantity: *quantity,
            unit_price_minor: 250,
        })
        .collect();
    let total_minor = lines
        .iter()
        .map(|l| i64::from(l.quantity) * l.unit_price_minor)
        .sum();
    OrderPlaced {
        order_id: order_id.to_owned(),
        customer_id: "alice".to_owned(),
        lines,
        currency: "EUR".to_owned(),
        total_minor,
        placed_at: 1_700_000_000_000,
        deadline_at: 1_700_000_030_000,
    }
}

/// A new order id no other test uses.
pub fn order_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl TestApp {
    /// Wraps `event` as the consumer runner would hand it over.
    pub async fn incoming<E: Event>(&self, order_id: &str, event: &E) -> Incoming {
        testing::incoming(&self.codec, order_id, event).await
    }

    /// Hands `incoming` to the handler in a transaction of its own, committed if it succeeds.
    pub async fn handle(&self, incoming: &Incoming) -> Result<(), HandlerError> {
        testing::handle(&self.db.pool, &self.handler, incoming).await
    }

    /// Delivers `event` of the saga `order_id` and expects it to be applied.
    pub async fn deliver<E: Event>(&self, order_id: &str, event: &E) {
        let incoming = self.incoming(order_id, event).await;
        self.handle(&incoming).await.expect("event applied");
    }

    /// Adds `quantity` units of `sku` through the API.
    pub async fn stock_up(&self, sku: &str, quantity: i64) {
        let (status, body) = self
            .post(
                &format!("/stock/{sku}/receipts"),
                &serde_json::json!({ "quantity": quantity }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    pub async fn stock(&self, sku: &str) -> StockRow {
        sqlx::query_as("select sku, available, reserved, sold, received from stock where sku = $1")
            .bind(sku)
            .fetch_one(&self.db.pool)
            .await
            .expect("a stock row")
    }

    /// The reservation's (status, reason).
    pub async fn reservation(&self, order_id: &str) -> Option<(String, Option<String>)> {
        sqlx::query_as("select status, reason from reservations where order_id = $1")
            .bind(order_id)
            .fetch_optional(&self.db.pool)
            .await
            .unwrap()
    }

    /// Every event in the outbox, oldest first, decoded, with its row.
    pub async fn published(&self) -> Vec<(ShopEvent, OutboxRow)> {
        let mut events = Vec::new();
        for row in testing::outbox_rows(&self.db.pool).await {
            let event_type = row.header("event_type").expect("event_type header");
            let event = ShopEvent::decode(&self.codec, event_type, &row.value)
                .await
                .expect("decodes")
                .expect("a known event");
            assert_eq!(row.header("correlation_id"), Some(row.key.as_str()));
            events.push((event, row));
        }
        events
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(SERVICE_TOKEN)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// `POST path` with `body` as the operator.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_as(Some(OPERATOR_TOKEN), path, body).await
    }

    /// `POST path` with `body` and `token` as the bearer token, if any.
    pub async fn post_as(&self, token: Option<&str>, path: &str, body: &Value) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        read(request.send().await.unwrap()).await
    }

    pub async fn finish(self) {
        self.db.drop().await;
    }
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.expect("a JSON body");
    (status, body)
}
