//! Integration tests of the backbone against the real stack (Kafka, the schema registry,
//! PostgreSQL): one binary, a module per part. Needs `scripts/stack up` (scripts/test brings it
//! up); addresses come from .stack/env.

mod codec;
mod stack;

fn kafka() -> choreo::KafkaConfig {
    choreo::config::load_env_file();
    choreo::KafkaConfig::from_env().expect("the stack's addresses (run scripts/stack up)")
}

fn registry() -> choreo::RegistryConfig {
    choreo::config::load_env_file();
    choreo::RegistryConfig::from_env().expect("the stack's addresses (run scripts/stack up)")
}

/// A name no other test run uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}.{}", uuid::Uuid::now_v7().simple())
}
