//! The shop's events as Rust types, generated at build time from `schemas/**/*.avsc` by
//! rsgen-avro; the .avsc files are the truth, so a type cannot drift from its schema. Each event
//! implements [`choreo::avro::Event`] with the topic that `topics/*.yaml` puts it on, and
//! [`ShopEvent`] decodes any of them by its `event_type` header.
//!
//! Money is minor units (`*_minor: i64`) beside an ISO currency; times are UTC milliseconds
//! since the epoch (`*_at: i64`, Avro timestamp-millis). [`values`] holds the checked value
//! types (ids, SKUs, quantities, money) that services build from these raw fields; [`request`]
//! the shape of an order as it is asked for, shared by the gateway and the order service;
//! [`typed`] the events with those values parsed, as handlers take them in.

pub mod request;
pub mod typed;
pub mod values;

#[allow(clippy::all, missing_docs)] // generated code
mod generated {
    include!(concat!(env!("OUT_DIR"), "/events.rs"));
}

pub use generated::*;
