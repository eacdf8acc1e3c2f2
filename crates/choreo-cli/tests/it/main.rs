//! Integration tests of the `choreo` binary against the real stack (Kafka, the schema registry),
//! driven as a user would: one binary, a module per command group. Needs `scripts/stack up`
//! (scripts/test brings it up); addresses come from .stack/env. The events written are the tests'
//! own (a job saga declared in tests/fixtures/, see `fixtures`), never the shop's.

mod acl;
mod dlq;
mod fixtures;
mod inspect;
mod lag;
mod relay;
mod replay;
mod schemas;
mod topics;
mod trace;
