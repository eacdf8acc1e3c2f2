//! Integration tests of the backbone against the real stack (Kafka, the schema registry,
//! PostgreSQL): one binary, a module per part. Needs `scripts/stack up` (scripts/test brings it
//! up); addresses come from .stack/env.

mod codec;
mod consumer;
mod consumer_faults;
mod ops;
mod pipeline;
mod postgres;
mod prune;
mod relay;
mod relay_broker;
mod relay_faults;
mod replay;
mod stack;

pub(crate) use choreo::testing::{create_topic, kafka, registry, unique, TestDb};
