//! `spawn_app`: a fresh database with shipping's table, its handler and its HTTP API on a free
//! port, and the helpers the tests share to deliver events and read the outcome.

use std::sync::Arc;

use choreo::avro::{Codec, Event};
use choreo::consumer::{HandlerError, Incoming};
use choreo::outbox::Outbox;
use choreo::testing::{self, OutboxRow, TestDb};
use serde_json::Value;
use shipping::handler::ShippingHandler;
use shop_events::{OrderConfirmed, ShopEvent};

pub struct TestApp {
    pub db: TestDb,
    pub codec: Arc<Codec>,
    pub handler: ShippingHandler,
    pub base: String,
    pub http: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    let db = TestDb::create().await;
    shipping::MIGRATOR.run(&db.pool).await.expect("migrations");
    let codec = Arc::new(Codec::new(&choreo::testing::registry()).expect("codec"));
    let handler = ShippingHandler::new(codec.clone(), Outbox::new(codec.clone(), "shipping"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = shipping::http::router(db.pool.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    TestApp {
        db,
        codec,
        handler,
        base,
        http: reqwest::Client::new(),
    }
}

/// A new order id no other test uses.
pub fn order_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub fn confirmed(order_id: &str, total_minor: i64) -> OrderConfirmed {
    OrderConfirmed {
        order_id: order_id.to_owned(),
        payment_id: "pay-1".to_owned(),
        currency: "EUR".to_owned(),
        total_minor,
        confirmed_at: 1_700_000_001_000,
    }
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

    /// Every event in the outbox, oldest first, decoded, with its row.
    pub async fn published(&self) -> Vec<(ShopEvent, OutboxRow)> {
        let mut events = Vec::new();
        for row in testing::outbox_rows(&self.db.pool).await {
            let event_type = row.header("event_type").expect("event_type header");
            let event = ShopEvent::decode(&self.codec, event_type, &row.value)
                .await
                .expect("decodes")
                .expect("a known event");
            events.push((event, row));
        }
        events
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    pub async fn finish(self) {
        self.db.drop().await;
    }
}
