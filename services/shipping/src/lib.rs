//! The shipping service: on `OrderConfirmed` it schedules one shipment per order, choosing the
//! carrier by a deterministic rule ([`domain::carrier_for`]), and publishes `ShipmentScheduled` on
//! `shop.shipments.v1` through its outbox. It consumes `shop.orders.v1`.
//!
//! [`domain`] is the pure core, [`store`] the SQL, [`handler`] and [`http`] the two ways in.

pub mod domain;
pub mod handler;
pub mod http;
pub mod store;

use std::net::SocketAddr;

use choreo::service::{Ready, Service, ServiceError, ServiceSettings};

/// The service's name: its consumer group, outbox producer and `DATABASE_URL_SHIPPING` suffix.
pub const NAME: &str = "shipping";

/// The topics shipping consumes.
pub const TOPICS: [&str; 1] = [<shop_events::OrderConfirmed as choreo::avro::Event>::TOPIC];

/// Shipping's own migrations (the backbone's run first, in `Service::connect`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Shipping as `shipping replay` drives it ([`choreo::replay`]): its consumer's handler over the
/// topics it consumes, into its tables. Shipment ids are its own (UUIDv7).
pub fn replay_service() -> choreo::replay::Service<impl choreo::replay::Replay> {
    choreo::replay::Service {
        name: NAME,
        topics: TOPICS.map(str::to_owned).to_vec(),
        migrator: &MIGRATOR,
        state_tables: &["shipments"],
        generated_ids: &["shipment_id"],
        handlers: |codec, outbox| {
            choreo::replay::Handled(handler::ShippingHandler::new(codec, outbox))
        },
    }
}

/// The shipping service's configuration. The database, Kafka and registry addresses come from
/// `DATABASE_URL` (or `DATABASE_URL_SHIPPING`), `KAFKA_BROKERS` and `SCHEMA_REGISTRY_URL`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "shipping",
    about = "The shop's shipping service",
    long_about = None,
    after_help = "Also read from the environment (and .stack/env): DATABASE_URL (else \
                  DATABASE_URL_SHIPPING), KAFKA_BROKERS, SCHEMA_REGISTRY_URL; RUST_LOG filters the \
                  JSON logs (default info)."
)]
pub struct Config {
    /// Where the HTTP API and /metrics, /healthz, /readyz listen.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8104")]
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
    let handler = handler::ShippingHandler::new(service.codec.clone(), service.outbox.clone());
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
