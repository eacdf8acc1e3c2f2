//! The payment service: once an order's stock is reserved it captures the order's amount at the
//! payment provider, and it refunds the capture when the order is cancelled. It cooperates with
//! the other services only through events (consumed from `shop.orders.v1` and
//! `shop.inventory.v1`, published on `shop.payments.v1` through the outbox).
//!
//! The consumer ([`handler`]) never calls the provider: it records what it learns and creates
//! payments; the [`worker`] claims due payments, calls the provider ([`provider`]) outside any
//! transaction and records the answer, and settles an outcome it did not see by asking the
//! provider; the [`reconciler`] compares the provider's ledger with the payments table and has
//! any capture we did not hold refunded. All apply the pure rules in [`domain`]; SQL lives in
//! [`store`], event building in [`publish`], the read-only HTTP API in [`http`], counters in
//! [`metrics`], flags in [`config`]; [`build`] puts them together in a
//! [`choreo::service::Service`].

pub mod config;
pub mod domain;
pub mod handler;
pub mod http;
pub mod metrics;
pub mod provider;
pub mod publish;
pub mod reconciler;
pub mod store;
pub mod worker;

use std::sync::Arc;

use choreo::service::{Ready, Service, ServiceError, ServiceSettings};

/// The consumer group's topics.
pub const TOPICS: [&str; 2] = [
    <shop_events::OrderPlaced as choreo::avro::Event>::TOPIC,
    <shop_events::InventoryReserved as choreo::avro::Event>::TOPIC,
];

/// The service's own migrations (the backbone's run first, in [`choreo::service::Service::connect`]).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Payment as `payment replay` drives it ([`choreo::replay`]): its consumer's handler over the
/// topics it consumes, into its tables; the worker that charges the provider does not run.
/// Payment ids are its own (UUIDv7), provider references the provider's.
pub fn replay_service() -> choreo::replay::Service<impl choreo::replay::Replay> {
    choreo::replay::Service {
        name: "payment",
        topics: TOPICS.map(str::to_owned).to_vec(),
        migrator: &MIGRATOR,
        state_tables: &["orders_seen", "payments"],
        generated_ids: &["payment_id", "provider_reference", "refund_reference"],
        handlers: |codec, outbox| {
            choreo::replay::Handled(handler::PaymentHandler::new(codec, outbox))
        },
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("building the provider client: {0}")]
    Provider(#[from] provider::ClientError),
    #[error("registering the payment metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Connects to the database (migrating it), binds the listener, and sets up the consumer and
/// the payment worker: the service ready to run.
pub async fn build(
    config: &config::Config,
    settings: ServiceSettings,
) -> Result<Ready, StartError> {
    let mut service = Service::connect(settings, &MIGRATOR).await?;
    // Rung after each consumer batch that created or changed a payment.
    let work = choreo::doorbell::Doorbell::for_writes(worker::CHANNEL);
    service.ring_after_batches(work.clone());
    let handler = handler::PaymentHandler::new(service.codec.clone(), service.outbox.clone())
        .with_work(work.clone());
    service.consume(handler, &TOPICS);
    let metrics = metrics::PaymentMetrics::register(&service.metrics.registry)?;
    let client = Arc::new(provider::ProviderClient::new(config.provider())?);
    let worker = worker::Worker::new(
        service.pool.clone(),
        service.outbox.clone(),
        client.clone(),
        config.worker(),
        metrics.clone(),
        work,
    );
    service.spawn("payment-worker", |token| worker.run(token));
    if let Some(reconcile) = config.reconcile() {
        let reconciler = reconciler::Reconciler::new(
            service.pool.clone(),
            service.outbox.clone(),
            client,
            reconcile,
            metrics,
        );
        service.spawn("payment-reconciler", |token| reconciler.run(token));
    } else {
        tracing::warn!("payment reconciliation is off (PAYMENT_RECONCILE_MS=0)");
    }
    let routes = http::router(service.pool.clone());
    Ok(service.serving(routes))
}
