//! The backbone every shop service builds on: typed configuration from the environment,
//! correctly configured Kafka clients, and Avro events in the Confluent wire format. Later modules
//! add the transactional outbox and its relay, the inbox and the consumer runner.
//!
//! No shop logic lives here: a service that is not part of the shop can use this crate as is.

pub mod avro;
pub mod config;
pub mod consumer;
pub mod db;
pub mod envelope;
pub mod inbox;
pub mod kafka;
pub mod metrics;
pub mod ops;
pub mod outbox;
pub mod relay;
pub mod telemetry;

pub use config::{ConfigError, KafkaConfig, RegistryConfig};
