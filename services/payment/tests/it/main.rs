//! The payment service against a real PostgreSQL, the real schema registry and a provider
//! simulator on port 0; events are fed to the handler directly (no Kafka: the shop's topics are
//! shared, the end-to-end test runs the whole saga), and the outbox is read back. The provider
//! client is tested against the simulator alone.

mod api;
mod causation;
mod charges;
mod doubt;
mod helpers;
mod provider_client;
mod reconciliation;
mod refunds;
mod replay;
