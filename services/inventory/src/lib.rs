//! The inventory service: it holds the shop's stock and its part of the order saga. On
//! `OrderPlaced` it reserves every line or none (`InventoryReserved` / `InventoryRejected`); on
//! `PaymentFailed` or `OrderCancelled` it gives a held reservation back (`InventoryReleased`); on
//! `OrderConfirmed` it turns it into sold units. It consumes `shop.orders.v1` and
//! `shop.payments.v1` and publishes on `shop.inventory.v1` through its outbox; stock comes in
//! through `POST /stock/{sku}/receipts`.
//!
//! [`domain`] is the pure core, [`store`] the SQL, [`handler`] and [`http`] the two ways in.

pub mod domain;
pub mod handler;
pub mod http;
pub mod store;

use std::net::SocketAddr;

use choreo::service::{Ready, Service, ServiceError, ServiceSettings};

/// The service's name: its consumer group, outbox producer and `DATABASE_URL_INVENTORY` suffix.
pub const NAME: &str = "inventory";

/// The topics the inventory consumes.
pub const TOPICS: [&str; 2] = [
    <shop_events::OrderPlaced as choreo::avro::Event>::TOPIC,
    <shop_events::PaymentFailed as choreo::avro::Event>::TOPIC,
];

/// The inventory's own migrations (the backbone's run first, in `Service::connect`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// The inventory as `inventory replay` drives it ([`choreo::replay`]): its consumer's handler
/// over the topics it consumes, into its tables. Reservation ids are its own (UUIDv7).
pub fn replay_service() -> choreo::replay::Service<impl choreo::replay::Replay> {
    choreo::replay::Service {
        name: NAME,
        topics: TOPICS.map(str::to_owned).to_vec(),
        migrator: &MIGRATOR,
        state_tables: &["stock", "reservations"],
        generated_ids: &["reservation_id"],
        handlers: |codec, outbox| {
            choreo::replay::Handled(handler::InventoryHandler::new(codec, outbox))
        },
    }
}

/// The inventory service's configuration. The database, Kafka and registry addresses come from
/// `DATABASE_URL` (or `DATABASE_URL_INVENTORY`), `KAFKA_BROKERS` and `SCHEMA_REGISTRY_URL`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "inventory",
    about = "The shop's inventory service",
    long_about = None,
    after_help = "Also read from the environment (and .stack/env): DATABASE_URL (else \
                  DATABASE_URL_INVENTORY), KAFKA_BROKERS, SCHEMA_REGISTRY_URL; RUST_LOG filters the \
                  JSON logs (default info)."
)]
pub struct Config {
    /// Where the HTTP API and /metrics, /healthz, /readyz listen.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8102")]
    pub http_addr: SocketAddr,
}

impl Config {
    /// The service settings for this configuration, from the environment.
    pub fn settings(&self) -> Result<ServiceSettings, choreo::ConfigError> {
        ServiceSettings::from_env(NAME, self.http_addr)
    }
}

/// Connects to the database (migrating it), binds the listener and sets up the consumer: the
/// service ready to run.
pub async fn build(settings: ServiceSettings) -> Result<Ready, ServiceError> {
    let mut service = Service::connect(settings, &MIGRATOR).await?;
    let handler = handler::InventoryHandler::new(service.codec.clone(), service.outbox.clone());
    service.consume(handler, &TOPICS);
    let routes = http::router(service.pool.clone());
    Ok(service.serving(routes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Config as clap::CommandFactory>::command().debug_assert();
    }
}
