//! The order service: takes orders (priced from its catalogue), owns each order's state
//! machine, and ends every saga: it confirms an order when its payment is captured and cancels
//! it when stock or payment fails, when the customer asks before confirmation, or when its
//! deadline passes. It consumes the inventory, payment and shipment topics and publishes
//! OrderPlaced, OrderConfirmed and OrderCancelled on `shop.orders.v1` through its outbox.
//!
//! [`domain`] is the pure state machine; [`saga`] carries its decisions out (and [`outcomes`]
//! counts how sagas end); [`handler`], [`http`] and [`deadline`] are the three ways in.

pub mod deadline;
pub mod domain;
pub mod handler;
pub mod http;
pub mod outcomes;
pub mod replay;
pub mod saga;
pub mod store;

use std::net::SocketAddr;
use std::time::Duration;

use choreo::service::{Ready, Service, ServiceError, ServiceSettings};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// The order service's configuration.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "order", about = "The shop's order service", long_about = None)]
pub struct Config {
    /// Where the HTTP API and /metrics, /healthz, /readyz listen.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8101")]
    pub http_addr: SocketAddr,
    /// Seconds an order may take to be confirmed before it is cancelled with reason timeout.
    #[arg(long, env = "ORDER_DEADLINE_SECS", default_value_t = 30)]
    pub deadline_secs: u64,
    /// How often the deadline sweeper looks for overdue orders, in milliseconds.
    #[arg(long, env = "ORDER_SWEEP_MS", default_value_t = 250)]
    pub sweep_ms: u64,
}

/// Connects to the database (migrating it), binds the listener, and sets up the consumer and
/// the deadline sweeper: the service ready to run.
pub async fn build(config: &Config, settings: ServiceSettings) -> Result<Ready, ServiceError> {
    let mut service = Service::connect(settings, &MIGRATOR).await?;
    let saga = saga::Saga {
        outbox: service.outbox.clone(),
        outcomes: outcomes::Outcomes::register(&service.metrics.registry)
            .expect("order metric names are unique"),
    };
    let handler = handler::OrderHandler {
        codec: service.codec.clone(),
        saga: saga.clone(),
    };
    service.consume(handler, &handler::TOPICS);
    let sweeper = deadline::Sweeper {
        pool: service.pool.clone(),
        saga: saga.clone(),
        every: Duration::from_millis(config.sweep_ms),
    };
    service.spawn("deadline-sweeper", move |token| sweeper.run(token));
    let state = http::AppState {
        pool: service.pool.clone(),
        saga,
        deadline: Duration::from_secs(config.deadline_secs),
    };
    Ok(service.serving(http::router(state)))
}
