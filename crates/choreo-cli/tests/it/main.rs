//! Integration tests of the `choreo` binary against the real stack (Kafka, the schema registry),
//! driven as a user would: one binary, a module per command group. Needs `scripts/stack up`
//! (scripts/test brings it up); addresses come from .stack/env.

mod dlq;
mod inspect;
mod lag;
mod relay;
mod replay;
mod schemas;
mod topics;
mod trace;
