//! Carries out the order's decisions: the one place where an order is created or moved, its
//! announcement written to the outbox and its timeline extended, all in the caller's
//! transaction. The consumer handler, the HTTP routes and the deadline sweeper all go through
//! here, so every transition is guarded by [`crate::domain::decide`] the same way.

use choreo::consumer::HandlerError;
use choreo::envelope::Cause;
use choreo::outbox::{Outbox, OutboxError};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::{decide, Announce, Decision, Input, NewOrder, Status};
use crate::outcomes::Outcomes;
use crate::store::{self, OrderRow, TimelineEntry};

/// Why a saga step could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

impl From<SagaError> for HandlerError {
    fn from(error: SagaError) -> Self {
        match error {
            SagaError::Database(e) => HandlerError::Database(e),
            SagaError::Outbox(e) => e.into(),
        }
    }
}

/// What applying an input did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Moved(Status),
    Ignored(&'static str),
    Refused(&'static str),
}

/// Writes orders and their events through one outbox, and counts how sagas end.
#[derive(Clone)]
pub struct Saga {
    pub outbox: Outbox,
    pub outcomes: Outcomes,
}

const PRODUCER: &str = "order";

impl Saga {
    /// Stores `order` and announces it (OrderPlaced). `false` when its id was taken already.
    pub async fn place(
        &self,
        tx: &mut PgConnection,
        order: &NewOrder,
        deadline_at: DateTime<Utc>,
    ) -> Result<bool, SagaError> {
        let placed_at = Utc::now();
        if !store::insert(tx, order, placed_at, deadline_at).await? {
            return Ok(false);
        }
        let event = shop_events::OrderPlaced {
            order_id: order.order_id.to_string(),
            customer_id: order.customer_id.to_string(),
            lines: order
                .lines
                .iter()
                .map(|l| shop_events::OrderLine {
                    sku: l.sku.to_string(),
                    quantity: l.quantity as i32,
                    unit_price_minor: l.unit_price.minor(),
                })
                .collect(),
            currency: order.currency.to_string(),
            total_minor: order.total.minor(),
            placed_at: placed_at.timestamp_millis(),
            deadline_at: deadline_at.timestamp_millis(),
        };
        let id = order.order_id.as_str();
        let metadata = self.outbox.metadata::<shop_events::OrderPlaced>(id);
        // Kept with the order: a customer's cancellation names it, and its deadline continues
        // its trace.
        let placed = self.outbox.add(tx, id, &event, metadata).await?;
        store::keep_placed_cause(tx, id, &placed).await?;
        let detail = format!(
            "{} {} due {}",
            order.total.minor(),
            order.currency,
            deadline_at.to_rfc3339()
        );
        record(tx, id, "OrderPlaced", PRODUCER, placed_at, detail).await?;
        Ok(true)
    }

    /// Applies `input` to the locked order `row`; `cause` is the event that brought it (a
    /// consumed one, or one kept with the order for work done later), if any: the event written
    /// names it, and a move keeps it as the order's latest ([`OrderRow::last_cause`]).
    pub async fn apply(
        &self,
        tx: &mut PgConnection,
        row: &OrderRow,
        input: &Input,
        cause: Option<&Cause>,
    ) -> Result<Applied, SagaError> {
        let (to, announce) = match decide(row.status(), input) {
            Decision::Move { to, announce } => (to, announce),
            Decision::Ignore(why) => {
                tracing::debug!(order_id = %row.order_id, ?input, why, "ignored");
                return Ok(Applied::Ignored(why));
            }
            Decision::Refuse(why) => return Ok(Applied::Refused(why)),
        };
        let id = row.order_id.as_str();
        let payment_id = match &input {
            Input::PaymentCaptured { payment_id } => Some(payment_id.as_str()),
            _ => None,
        };
        store::set_status(tx, id, to, payment_id, cause).await?;
        let now = Utc::now();
        match announce {
            Some(Announce::Confirmed { payment_id }) => {
                let event = shop_events::OrderConfirmed {
                    order_id: id.to_owned(),
                    payment_id,
                    currency: row.currency.clone(),
                    total_minor: row.total_minor,
                    confirmed_at: now.timestamp_millis(),
                };
                self.announce(tx, id, &event, cause).await?;
                record(tx, id, "OrderConfirmed", PRODUCER, now, String::new()).await?;
                self.outcomes.confirmed(row.placed_at, now);
            }
            Some(Announce::Cancelled(reason)) => {
                let event = shop_events::OrderCancelled {
                    order_id: id.to_owned(),
                    reason: reason.to_event(),
                    detail: Some(format!("cancelled while {}", row.status().as_str())),
                    cancelled_at: now.timestamp_millis(),
                };
                self.announce(tx, id, &event, cause).await?;
                let detail = format!("reason={}", reason.as_str());
                record(tx, id, "OrderCancelled", PRODUCER, now, detail).await?;
                self.outcomes.cancelled(reason, row.placed_at, now);
            }
            None => {}
        }
        Ok(Applied::Moved(to))
    }

    async fn announce<E: choreo::avro::Event>(
        &self,
        tx: &mut PgConnection,
        order_id: &str,
        event: &E,
        cause: Option<&Cause>,
    ) -> Result<(), OutboxError> {
        let metadata = self.outbox.metadata::<E>(order_id);
        let metadata = match cause {
            Some(cause) => metadata.caused_by(cause),
            None => metadata,
        };
        self.outbox.add(tx, order_id, event, metadata).await?;
        Ok(())
    }
}

/// Appends a step to the order's timeline.
pub async fn record(
    tx: &mut PgConnection,
    order_id: &str,
    event_type: &str,
    producer: &str,
    at: DateTime<Utc>,
    detail: String,
) -> Result<(), sqlx::Error> {
    let entry = TimelineEntry {
        at,
        event_type: event_type.to_owned(),
        producer: producer.to_owned(),
        detail,
    };
    store::append_timeline(tx, order_id, &entry).await
}
