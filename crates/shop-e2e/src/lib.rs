//! Drives the running shop from outside, as its users do: through the gateway, with the
//! services' internal APIs only for setup and for checking the invariants. The end-to-end test
//! (`tests/e2e.rs`), the load benchmark (`shop-load`), the scaled-consumer proof (`shop-scale`)
//! and the chaos suite (`shop-chaos`) are built on it.
//!
//! [`client`] talks HTTP to the shop; [`mix`] plans a seeded mix of orders with known outcomes;
//! [`topics`] reads what went over the topics during a run; [`scenario`] is one run of the
//! end-to-end scenario in steps (prepare, place, settle, check) and [`invariants`] the rules
//! checked at the end, those of the saga itself read from `sagas/order.yaml` ([`saga`]);
//! [`process`] starts and signals the shop's service processes; [`chaos`]
//! injects faults into them under load; [`costs`] measures what an order costs the machine;
//! [`stats`] holds the latencies their figures are quantiles of. [`otlp`] receives the spans the
//! services export (the `otlp-sink` binary) and [`spans`] reads a trace of them as a tree, for
//! the trace test (`tests/traces.rs`).

pub mod chaos;
pub mod client;
pub mod costs;
pub mod invariants;
pub mod mix;
pub mod otlp;
pub mod process;
pub mod saga;
pub mod scenario;
pub mod spans;
pub mod stats;
pub mod topics;
