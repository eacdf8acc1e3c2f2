//! Drives the running shop from outside, as its users do: through the gateway, with the
//! services' internal APIs only for setup and for checking the invariants. The end-to-end test
//! (`tests/e2e.rs`) and the load benchmark (`shop-load`) are built on it.
//!
//! [`client`] talks HTTP to the shop; [`mix`] plans a seeded mix of orders with known outcomes;
//! [`topics`] reads what went over the topics during a run; [`scenario`] is one run of the
//! end-to-end scenario in steps (prepare, place, settle, check).

pub mod client;
pub mod mix;
pub mod scenario;
pub mod topics;
