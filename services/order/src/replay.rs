//! Replaying the order service into a database, for `order replay` ([`service`], built on
//! [`choreo::replay`]). Consumed events go through its consumer's handler; its own events
//! (`shop.orders.v1`) as follows. The live service does not consume its own topic: its orders
//! come from HTTP and its deadline. A replay has only the events, so it turns the ones that
//! stand for those outside inputs back into them: an OrderPlaced stores the order as placed (as
//! [`crate::saga::Saga::place`] did, without announcing it again), an OrderCancelled for a
//! customer's request or a timeout applies that input through the saga. Every other own event
//! (OrderConfirmed, other cancellations) is an outcome of consumed events and is left to them.

use std::sync::Arc;

use choreo::avro::{Codec, Event as _};
use choreo::consumer::{traced, Handler as _, HandlerError, Incoming};
use choreo::outbox::Outbox;
use choreo::replay::{reason, Outcome, Replay};
use chrono::{DateTime, Utc};
use shop_events::typed::PlacedOrder;
use shop_events::values::InvalidValue;
use shop_events::{CancelReason, OrderPlaced, ShopEvent};
use sqlx::PgConnection;

use crate::domain::{Input, Line, NewOrder};
use crate::handler::OrderHandler;
use crate::saga::{self, Applied, Saga, SagaError};
use crate::store;

/// The order service as `order replay` drives it: the topics it consumes and its own, its
/// migrations and state tables (the catalogue comes with the migrations), and [`Replayer`].
pub fn service() -> choreo::replay::Service<Replayer> {
    choreo::replay::Service {
        name: "order",
        topics: crate::handler::TOPICS
            .iter()
            .copied()
            .chain([OrderPlaced::TOPIC])
            .map(str::to_owned)
            .collect(),
        migrator: &crate::MIGRATOR,
        state_tables: &["orders", "order_timeline"],
        // The kept causes name the events of the run that wrote them (ids, traces).
        generated_ids: &["placed_cause", "last_cause"],
        handlers: Replayer::new,
    }
}

/// The order's handlers in a replay: consumed events go to its consumer's handler, its own
/// events to [`apply_own`].
pub struct Replayer {
    codec: Arc<Codec>,
    handler: OrderHandler,
    saga: Saga,
}

impl Replayer {
    /// Built as `order::build` builds the handler (no sweeper runs).
    pub fn new(codec: Arc<Codec>, outbox: Outbox) -> Self {
        let saga = Saga {
            outbox,
            outcomes: Default::default(),
        };
        let handler = OrderHandler {
            codec: codec.clone(),
            saga: saga.clone(),
        };
        Self {
            codec,
            handler,
            saga,
        }
    }
}

impl Replay for Replayer {
    async fn apply(&self, tx: &mut PgConnection, event: &Incoming) -> Result<Outcome, String> {
        let decoded = ShopEvent::decode(&self.codec, &event.metadata.event_type, &event.value)
            .await
            .map_err(|e| reason(&HandlerError::Codec(e)))?;
        match decoded {
            Some(
                own @ (ShopEvent::OrderPlaced(_)
                | ShopEvent::OrderConfirmed(_)
                | ShopEvent::OrderCancelled(_)),
            ) => match traced(event, apply_own(tx, &self.saga, &own)).await {
                Ok(Replayed::Placed | Replayed::Applied(_)) => Ok(Outcome::Applied),
                Ok(Replayed::AlreadyPlaced) => Ok(Outcome::Skipped("the order was placed already")),
                Ok(Replayed::Skipped(why)) => Ok(Outcome::Skipped(why)),
                Err(ReplayError::Saga(e)) => Err(reason(&e.into())),
                Err(e) => Err(format!("rejected: {e}")),
            },
            _ => traced(event, self.handler.handle(tx, event))
                .await
                .map(|()| Outcome::Applied)
                .map_err(|e| reason(&e)),
        }
    }
}

/// What replaying one own event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// The order was stored as placed.
    Placed,
    /// An order with this id was there already; nothing changed.
    AlreadyPlaced,
    /// The input the event stands for went through the saga.
    Applied(Applied),
    /// An outcome of consumed events, or not an own event: nothing to do.
    Skipped(&'static str),
}

/// Why an own event could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Saga(#[from] SagaError),
    #[error("OrderPlaced: {0}")]
    Invalid(#[from] InvalidValue),
    #[error("OrderPlaced: {0}")]
    Malformed(String),
    #[error("{event} for unknown order {order_id}")]
    UnknownOrder {
        event: &'static str,
        order_id: String,
    },
}

impl From<sqlx::Error> for ReplayError {
    fn from(error: sqlx::Error) -> Self {
        ReplayError::Saga(SagaError::Database(error))
    }
}

/// Applies one event of the order's own topic inside `tx` (see the module doc).
pub async fn apply_own(
    tx: &mut PgConnection,
    saga: &Saga,
    event: &ShopEvent,
) -> Result<Replayed, ReplayError> {
    match event {
        ShopEvent::OrderPlaced(placed) => place(tx, placed).await,
        ShopEvent::OrderCancelled(cancelled) => {
            let input = match cancelled.reason {
                CancelReason::CustomerRequest => Input::CancelRequested,
                CancelReason::Timeout => Input::DeadlinePassed,
                CancelReason::OutOfStock | CancelReason::PaymentFailed => {
                    return Ok(Replayed::Skipped(
                        "a cancellation that follows consumed events",
                    ))
                }
            };
            let Some(row) = store::lock(tx, &cancelled.order_id).await? else {
                return Err(ReplayError::UnknownOrder {
                    event: "OrderCancelled",
                    order_id: cancelled.order_id.clone(),
                });
            };
            let applied = saga.apply(tx, &row, &input, None).await?;
            Ok(Replayed::Applied(applied))
        }
        ShopEvent::OrderConfirmed(_) => Ok(Replayed::Skipped(
            "a confirmation that follows consumed events",
        )),
        _ => Ok(Replayed::Skipped("not an event of the order's own topic")),
    }
}

/// Stores the order as placed, with its timeline entry, and no outbox row.
async fn place(tx: &mut PgConnection, placed: &OrderPlaced) -> Result<Replayed, ReplayError> {
    let order = new_order(placed)?;
    let placed_at = time(placed.placed_at, "placed_at")?;
    let deadline_at = time(placed.deadline_at, "deadline_at")?;
    if !store::insert(tx, &order, placed_at, deadline_at).await? {
        return Ok(Replayed::AlreadyPlaced);
    }
    let detail = format!(
        "{} {} due {}",
        order.total.minor(),
        order.currency,
        deadline_at.to_rfc3339()
    );
    let id = order.order_id.as_str();
    saga::record(tx, id, "OrderPlaced", "order", placed_at, detail).await?;
    Ok(Replayed::Placed)
}

/// The order an OrderPlaced describes, its values checked once as every consumer of the event
/// checks them ([`PlacedOrder`]).
pub fn new_order(placed: &OrderPlaced) -> Result<NewOrder, ReplayError> {
    let placed = PlacedOrder::try_from(placed)?;
    Ok(NewOrder {
        order_id: placed.order_id,
        customer_id: placed.customer_id,
        currency: placed.total.currency(),
        lines: placed
            .lines
            .into_iter()
            .map(|line| Line {
                sku: line.sku,
                quantity: line.quantity.get(),
                unit_price: line.unit_price,
            })
            .collect(),
        total: placed.total,
    })
}

fn time(ms: i64, field: &str) -> Result<DateTime<Utc>, ReplayError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| ReplayError::Malformed(format!("{field} {ms} is not a time")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed() -> OrderPlaced {
        OrderPlaced {
            order_id: "o-1".into(),
            customer_id: "cus_1".into(),
            lines: vec![shop_events::OrderLine {
                sku: "MUG-01".into(),
                quantity: 2,
                unit_price_minor: 1250,
            }],
            currency: "EUR".into(),
            total_minor: 2500,
            placed_at: 1_700_000_000_000,
            deadline_at: 1_700_000_030_000,
        }
    }

    #[test]
    fn an_order_placed_event_gives_back_the_order() {
        let order = new_order(&placed()).unwrap();
        assert_eq!(order.order_id.as_str(), "o-1");
        assert_eq!(order.lines[0].quantity, 2);
        assert_eq!(order.total.minor(), 2500);
    }

    #[test]
    fn a_malformed_order_placed_event_is_refused() {
        let mut bad = placed();
        bad.lines[0].quantity = -1;
        assert!(matches!(new_order(&bad), Err(ReplayError::Invalid(_))));
        let mut bad = placed();
        bad.lines.clear();
        assert!(matches!(new_order(&bad), Err(ReplayError::Invalid(_))));
        let mut bad = placed();
        bad.currency = "euro".into();
        assert!(matches!(new_order(&bad), Err(ReplayError::Invalid(_))));
    }
}
