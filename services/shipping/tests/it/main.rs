//! The shipping service's integration tests: its handler and HTTP API against a real PostgreSQL
//! database of each test's own and the stack's schema registry. No Kafka consumer runs here (the
//! shop's topics are shared); events are handed to the handler as the consumer runner would.

mod helpers;
mod replay;
mod shipments;
