//! The shop's events as Rust types, generated at build time from `schemas/**/*.avsc` by
//! rsgen-avro; the .avsc files are the truth, so a type cannot drift from its schema. Each event
//! implements [`choreo::avro::Event`] with the topic that `topics/*.yaml` puts it on.
//!
//! Money is minor units (`*_minor: i64`) beside an ISO currency; times are UTC milliseconds
//! since the epoch (`*_at: i64`, Avro timestamp-millis).

#![allow(clippy::all, missing_docs)] // generated code

include!(concat!(env!("OUT_DIR"), "/events.rs"));
