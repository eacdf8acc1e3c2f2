//! The four services as `replay run` drives them: their names, the topics they consume, their
//! migrations and state tables, and their handlers built as each service's
//! `Application::build` builds them (no relay, no worker, no sweeper: nothing is published).

use std::sync::Arc;

use choreo::avro::Codec;
use choreo::consumer::{traced, Handler, HandlerError, Incoming};
use choreo::outbox::Outbox;
use shop_events::ShopEvent;
use sqlx::PgConnection;

use super::Service;

impl Service {
    /// The consumer group, inbox consumer and outbox producer name.
    pub fn name(self) -> &'static str {
        match self {
            Service::Order => "order",
            Service::Inventory => inventory::NAME,
            Service::Payment => "payment",
            Service::Shipping => shipping::NAME,
        }
    }

    /// The topics a replay reads by default: the ones the service consumes, and for the order
    /// service its own topic too (see [`order::replay`]).
    pub fn topics(self) -> Vec<String> {
        let topics: Vec<&str> = match self {
            Service::Order => order::handler::TOPICS
                .iter()
                .copied()
                .chain([<shop_events::OrderPlaced as choreo::avro::Event>::TOPIC])
                .collect(),
            Service::Inventory => inventory::TOPICS.to_vec(),
            Service::Payment => payment::TOPICS.to_vec(),
            Service::Shipping => shipping::TOPICS.to_vec(),
        };
        topics.into_iter().map(str::to_owned).collect()
    }

    pub fn migrator(self) -> &'static sqlx::migrate::Migrator {
        match self {
            Service::Order => &order::MIGRATOR,
            Service::Inventory => &inventory::MIGRATOR,
            Service::Payment => &payment::MIGRATOR,
            Service::Shipping => &shipping::MIGRATOR,
        }
    }

    /// The tables that hold state events (or `--init-sql`) wrote; a database with rows in any of
    /// them, or in the inbox or outbox, is not fresh. (The order catalogue comes with the
    /// migrations.)
    pub fn state_tables(self) -> &'static [&'static str] {
        match self {
            Service::Order => &["orders", "order_timeline"],
            Service::Inventory => &["stock", "reservations"],
            Service::Payment => &["orders_seen", "payments"],
            Service::Shipping => &["shipments"],
        }
    }
}

/// What applying one record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// The order service's own event that changes nothing in a replay, and why.
    Skipped(&'static str),
}

/// A service's handler, ready to apply records.
pub enum Applier {
    Order {
        codec: Arc<Codec>,
        handler: order::handler::OrderHandler,
        saga: order::saga::Saga,
    },
    Inventory(inventory::handler::InventoryHandler),
    Payment(payment::handler::PaymentHandler),
    Shipping(shipping::handler::ShippingHandler),
}

impl Applier {
    pub fn new(service: Service, codec: Arc<Codec>) -> Self {
        let outbox = Outbox::new(codec.clone(), service.name());
        match service {
            Service::Order => {
                let saga = order::saga::Saga {
                    outbox,
                    outcomes: Default::default(),
                };
                Applier::Order {
                    handler: order::handler::OrderHandler {
                        codec: codec.clone(),
                        saga: saga.clone(),
                    },
                    codec,
                    saga,
                }
            }
            Service::Inventory => {
                Applier::Inventory(inventory::handler::InventoryHandler::new(codec, outbox))
            }
            Service::Payment => {
                Applier::Payment(payment::handler::PaymentHandler::new(codec, outbox))
            }
            Service::Shipping => {
                Applier::Shipping(shipping::handler::ShippingHandler::new(codec, outbox))
            }
        }
    }

    /// Applies `event` inside `tx`; an error is what the consumer would have dead-lettered (or
    /// retried, for a transient one), as text.
    pub async fn apply(&self, tx: &mut PgConnection, event: &Incoming) -> Result<Outcome, String> {
        match self {
            Applier::Order {
                codec,
                handler,
                saga,
            } => {
                let decoded = ShopEvent::decode(codec, &event.metadata.event_type, &event.value)
                    .await
                    .map_err(|e| reason(&HandlerError::Codec(e)))?;
                let own = matches!(
                    decoded,
                    Some(
                        ShopEvent::OrderPlaced(_)
                            | ShopEvent::OrderConfirmed(_)
                            | ShopEvent::OrderCancelled(_)
                    )
                );
                match decoded {
                    Some(decoded) if own => own_outcome(
                        traced(event, order::replay::apply_own(tx, saga, &decoded)).await,
                    ),
                    _ => handle(handler, tx, event).await,
                }
            }
            Applier::Inventory(handler) => handle(handler, tx, event).await,
            Applier::Payment(handler) => handle(handler, tx, event).await,
            Applier::Shipping(handler) => handle(handler, tx, event).await,
        }
    }
}

async fn handle(
    handler: &impl Handler,
    tx: &mut PgConnection,
    event: &Incoming,
) -> Result<Outcome, String> {
    traced(event, handler.handle(tx, event))
        .await
        .map(|()| Outcome::Applied)
        .map_err(|e| reason(&e))
}

fn own_outcome(
    result: Result<order::replay::Replayed, order::replay::ReplayError>,
) -> Result<Outcome, String> {
    use order::replay::Replayed;
    match result {
        Ok(Replayed::Placed | Replayed::Applied(_)) => Ok(Outcome::Applied),
        Ok(Replayed::AlreadyPlaced) => Ok(Outcome::Skipped("the order was placed already")),
        Ok(Replayed::Skipped(why)) => Ok(Outcome::Skipped(why)),
        Err(order::replay::ReplayError::Saga(e)) => Err(reason(&e.into())),
        Err(e) => Err(format!("rejected: {e}")),
    }
}

/// The error as the consumer would record it: its dead-letter reason, or that it would retry.
fn reason(error: &HandlerError) -> String {
    match error.permanent_reason() {
        Some(_) => error.to_string(),
        None => format!("{error} (transient: the consumer would retry it)"),
    }
}
