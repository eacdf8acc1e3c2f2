//! Integration tests of the shop's events, one binary with a module per concern: [`schemas`]
//! checks the generated types against their own .avsc files (no stack needed); [`interop`] sends
//! them through the real broker and registry to and from another Avro implementation, Confluent's
//! Python client, driven through [`python`] (needs `scripts/stack up`, which also installs that
//! client; addresses and the interpreter come from .stack/env).

mod interop;
mod python;
mod schemas;

use std::time::Duration;

pub(crate) use choreo::testing::{kafka, registry, unique, TestTopic};

/// How long any one step against the stack may take.
const WAIT: Duration = Duration::from_secs(30);
