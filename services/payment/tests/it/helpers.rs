//! A payment service for one test: a fresh database with the service's migrations, the real
//! registry codec, the handler fed directly (no Kafka), and the worker against a provider
//! simulator of the test's own on port 0.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use choreo::avro::{Codec, Event};
use choreo::consumer::Incoming;
use choreo::doorbell::Doorbell;
use choreo::envelope::Metadata;
use choreo::outbox::Outbox;
use choreo::resilience::{Backoff, BreakerConfig};
use choreo::testing::{handle, incoming, outbox_rows, registry, TestDb};
use payment::domain::Status;
use payment::handler::PaymentHandler;
use payment::metrics::PaymentMetrics;
use payment::provider::{ProviderClient, ProviderConfig};
use payment::reconciler::{ReconcileConfig, Reconciler};
use payment::store::{self, Payment};
use payment::worker::{Worker, WorkerConfig};
use shop_events::{
    CancelReason, InventoryReserved, OrderCancelled, OrderLine, OrderPlaced, ReservedItem,
    ShopEvent,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const AMOUNT: i64 = 2_500;

/// Fast polls and retries, giving up after one second.
pub fn worker_config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 4,
        poll: Duration::from_millis(20),
        give_up_after: Duration::from_secs(1),
        retry: Backoff {
            first: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        lease: Duration::from_secs(20),
        grace: Duration::from_secs(5),
    }
}

/// A provider simulator of the test's own on port 0; stops when dropped.
pub struct Sim {
    pub base: String,
    stop: CancellationToken,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn spawn_sim(config: provider_sim::Config) -> Sim {
    let simulator = provider_sim::Simulator::bind(config)
        .await
        .expect("bind port 0");
    let base = format!("http://{}", simulator.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(simulator.run(stop.clone()));
    Sim { base, stop }
}

impl Sim {
    /// Sets the simulator's faults (`PUT /admin/faults`).
    pub async fn set_faults(&self, faults: serde_json::Value) {
        let response = reqwest::Client::new()
            .put(format!("{}/admin/faults", self.base))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }

    /// Back to no faults (`DELETE /admin/faults`).
    pub async fn clear_faults(&self) {
        let response = reqwest::Client::new()
            .delete(format!("{}/admin/faults", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }

    /// Charges `AMOUNT` EUR under `key` directly, as someone other than the worker; returns the
    /// answer.
    pub async fn charge(&self, key: &str, order_id: &str, customer_id: &str) -> serde_json::Value {
        let body = serde_json::json!({
            "idempotency_key": key,
            "order_id": order_id,
            "customer_id": customer_id,
            "amount_minor": AMOUNT,
            "currency": "EUR",
        });
        reqwest::Client::new()
            .post(format!("{}/v1/charges", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The simulator's books (`GET /stats`).
    pub async fn stats(&self) -> serde_json::Value {
        reqwest::get(format!("{}/stats", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

pub struct TestApp {
    pub db: TestDb,
    pub codec: Arc<Codec>,
    pub outbox: Outbox,
    pub handler: PaymentHandler,
    pub sim: Sim,
    pub metrics: PaymentMetrics,
    worker: Option<(CancellationToken, JoinHandle<()>)>,
    /// The worker's doorbell, rung after each fed event as the consumer does.
    work: Doorbell,
    offset: AtomicI64,
}

pub async fn spawn_app(sim: provider_sim::Config) -> TestApp {
    let db = TestDb::create().await;
    payment::MIGRATOR.run(&db.pool).await.expect("migrations");
    let codec = Arc::new(Codec::new(&registry()).expect("codec"));
    let outbox = Outbox::new(codec.clone(), "payment");
    let handler = PaymentHandler::new(codec.clone(), outbox.clone());
    let sim = spawn_sim(sim).await;
    TestApp {
        db,
        codec,
        outbox,
        handler,
        sim,
        metrics: PaymentMetrics::default(),
        worker: None,
        work: Doorbell::new(payment::worker::CHANNEL),
        offset: AtomicI64::new(0),
    }
}

pub fn new_order_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub fn order_placed(order_id: &str, customer_id: &str) -> OrderPlaced {
    OrderPlaced {
        order_id: order_id.into(),
        customer_id: customer_id.into(),
        lines: vec![OrderLine {
            sku: "MUG-01".into(),
            quantity: 1,
            unit_price_minor: AMOUNT,
        }],
        currency: "EUR".into(),
        total_minor: AMOUNT,
        placed_at: now(),
        deadline_at: now() + 60_000,
    }
}

pub fn inventory_reserved(order_id: &str) -> InventoryReserved {
    InventoryReserved {
        order_id: order_id.into(),
        reservation_id: format!("res-{order_id}"),
        items: vec![ReservedItem {
            sku: "MUG-01".into(),
            quantity: 1,
        }],
        currency: "EUR".into(),
        amount_minor: AMOUNT,
        reserved_at: now(),
    }
}

pub fn order_cancelled(order_id: &str) -> OrderCancelled {
    OrderCancelled {
        order_id: order_id.into(),
        reason: CancelReason::CustomerRequest,
        detail: None,
        cancelled_at: now(),
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl TestApp {
    /// Applies `event` as the consumer would, in a transaction of its own.
    pub async fn feed<E: Event>(&self, order_id: &str, event: &E) {
        self.feed_traced(order_id, event, None).await;
    }

    /// The same, the event carrying `traceparent`; returns the metadata it was fed with.
    pub async fn feed_traced<E: Event>(
        &self,
        order_id: &str,
        event: &E,
        traceparent: Option<&str>,
    ) -> Metadata {
        let mut incoming = Incoming {
            offset: self.offset.fetch_add(1, Ordering::Relaxed),
            ..incoming(&self.codec, order_id, event).await
        };
        incoming.metadata.traceparent = traceparent.map(str::to_owned);
        handle(&self.db.pool, &self.handler, &incoming)
            .await
            .expect("the event applies");
        self.work.ring();
        incoming.metadata
    }

    /// A new order of `customer_id`, placed and with its stock reserved; returns its id.
    pub async fn reserved_order(&self, customer_id: &str) -> String {
        let order_id = new_order_id();
        self.feed(&order_id, &order_placed(&order_id, customer_id))
            .await;
        self.feed(&order_id, &inventory_reserved(&order_id)).await;
        order_id
    }

    /// Starts the worker against the simulator with `provider` settings.
    pub fn start_worker(&mut self, config: WorkerConfig, provider: ProviderConfig) {
        let client = ProviderClient::new(provider).expect("provider client");
        let worker = Worker::new(
            self.db.pool.clone(),
            self.outbox.clone(),
            Arc::new(client),
            config,
            self.metrics.clone(),
            self.work.clone(),
        );
        let token = CancellationToken::new();
        let run = worker.run(token.clone());
        let handle = tokio::spawn(async move {
            run.await.expect("the worker stops cleanly");
        });
        self.worker = Some((token, handle));
    }

    /// Leaves the order's payment as a worker that died mid-call leaves it: charging, one
    /// attempt, its lease run out. Returns the payment id.
    pub async fn lose_the_worker_of(&self, order_id: &str) -> uuid::Uuid {
        let payment_id = self.payment(order_id).await.payment_id;
        sqlx::query(
            "update payments set status = 'charging', attempts = 1,
                    lease_until = now() - interval '1 second'
             where payment_id = $1",
        )
        .bind(payment_id)
        .execute(&self.db.pool)
        .await
        .unwrap();
        payment_id
    }

    /// A reconciler over the test's database and simulator, run pass by pass by the test.
    pub fn reconciler(&self) -> Reconciler {
        let client = ProviderClient::new(self.provider()).expect("provider client");
        Reconciler::new(
            self.db.pool.clone(),
            self.outbox.clone(),
            Arc::new(client),
            ReconcileConfig {
                page: 2,
                ..ReconcileConfig::default()
            },
            self.metrics.clone(),
        )
    }

    /// Provider settings that give up on an answer after `ms`, one attempt per call.
    pub fn impatient_provider(&self, ms: u64) -> ProviderConfig {
        ProviderConfig {
            timeout: Duration::from_millis(ms),
            attempts: 1,
            ..self.provider()
        }
    }

    /// Provider settings for the simulator: quick retries, a 5 s timeout.
    pub fn provider(&self) -> ProviderConfig {
        ProviderConfig {
            timeout: Duration::from_secs(5),
            attempts: 2,
            backoff: Backoff {
                first: Duration::from_millis(10),
                max: Duration::from_millis(50),
            },
            breaker: BreakerConfig::default(),
            ..ProviderConfig::new(self.sim.base.clone())
        }
    }

    pub async fn payments(&self, order_id: &str) -> Vec<Payment> {
        store::payments_of_order(&self.db.pool, order_id)
            .await
            .unwrap()
    }

    pub async fn payment(&self, order_id: &str) -> Payment {
        let mut payments = self.payments(order_id).await;
        assert_eq!(payments.len(), 1, "one payment for order {order_id}");
        payments.remove(0)
    }

    /// Waits until the order's payment is in `status`, and returns it.
    pub async fn wait_for(&self, order_id: &str, status: Status) -> Payment {
        self.wait_until(order_id, &status.to_string(), |p| p.status == status)
            .await
    }

    /// Waits until the order's payment is `what` (`is`), and returns it.
    pub async fn wait_until(
        &self,
        order_id: &str,
        what: &str,
        is: impl Fn(&Payment) -> bool,
    ) -> Payment {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(payment) = self.payments(order_id).await.pop() {
                if is(&payment) {
                    return payment;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "payment still {} after 20 s, not {what}: {payment:?}",
                    payment.status
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no payment after 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The events in the outbox, decoded, in the order they were written.
    pub async fn events(&self) -> Vec<ShopEvent> {
        let mut events = Vec::new();
        for row in outbox_rows(&self.db.pool).await {
            let event_type = row.header("event_type").expect("an event_type header");
            let event = ShopEvent::decode(&self.codec, event_type, &row.value)
                .await
                .expect("decodes")
                .expect("a shop event");
            events.push(event);
        }
        events
    }

    /// The simulator's books.
    pub async fn provider_stats(&self) -> serde_json::Value {
        self.sim.stats().await
    }

    /// Stops the worker and the simulator and drops the database.
    pub async fn finish(mut self) {
        if let Some((token, handle)) = self.worker.take() {
            token.cancel();
            handle.await.expect("the worker task");
        }
        drop(self.sim);
        self.db.drop().await;
    }
}
