//! The backbone every shop service builds on: typed configuration from the environment and
//! correctly configured Kafka clients. Later modules add the Avro envelope, the transactional
//! outbox and its relay, the inbox and the consumer runner.
//!
//! No shop logic lives here: a service that is not part of the shop can use this crate as is.

pub mod config;
pub mod kafka;

pub use config::{ConfigError, KafkaConfig, RegistryConfig};
