//! The backbone every shop service builds on: typed configuration from the environment,
//! correctly configured Kafka clients, Avro events in the Confluent wire format ([`avro`]), the
//! envelope of headers every event carries ([`envelope`]), the transactional outbox
//! ([`outbox`]) and its leader-elected relay ([`relay`]), the inbox ([`inbox`]) and the consumer
//! runner with its dead letters ([`consumer`]), trace context, metrics and the operations
//! endpoint ([`telemetry`], [`metrics`], [`ops`]), the pruning of tables that must stay small
//! ([`prune`]), the one HTTP error body, RFC 9457 problem details ([`problem`]), a circuit
//! breaker and backoff for outside calls ([`resilience`]), the frame of a service process
//! ([`service`]), shutdown on SIGTERM ([`shutdown`]), and a saga described in a file with how
//! far a run of it got from its events ([`saga`]) with the one error of a declared file
//! ([`declared`]), for tools and checks outside the services,
//! and the runner behind each service binary's `replay` subcommand, which feeds a recorded
//! event stream through the service's own handlers into a fresh database ([`replay`]).
//!
//! No shop logic lives here: a service that is not part of the shop can use this crate as is.

pub mod avro;
pub mod config;
pub mod consumer;
pub mod db;
pub mod declared;
pub mod doorbell;
pub mod envelope;
pub mod inbox;
pub mod kafka;
pub mod metrics;
pub mod ops;
pub mod outbox;
pub mod problem;
pub mod prune;
pub mod relay;
pub mod replay;
pub mod resilience;
pub mod saga;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{ConfigError, KafkaConfig, KafkaSecurity, RegistryConfig};
