//! The order service's consumer: outcomes from inventory, payment and shipping, turned into
//! inputs of the order's state machine and applied through [`crate::saga::Saga`]. Every event
//! about a known order also lands on the order's timeline, including those that change nothing
//! (a refund, a release, a late capture), so the timeline tells the whole saga.

use choreo::avro::Codec;
use choreo::consumer::{Handler, HandlerError, Incoming};
use choreo::envelope::Cause;
use shop_events::{PaymentFailureReason, ShopEvent};
use sqlx::PgConnection;
use std::sync::Arc;

use crate::domain::Input;
use crate::saga::{self, Saga};
use crate::store;

/// The topics the order service consumes.
pub const TOPICS: [&str; 3] = [
    <shop_events::InventoryReserved as choreo::avro::Event>::TOPIC,
    <shop_events::PaymentCaptured as choreo::avro::Event>::TOPIC,
    <shop_events::ShipmentScheduled as choreo::avro::Event>::TOPIC,
];

pub struct OrderHandler {
    pub codec: Arc<Codec>,
    pub saga: Saga,
}

/// The order an event is about, the input it means for the order (if any) and a note for the
/// timeline; `None` for events the order service does not follow.
fn interpret(event: &ShopEvent) -> Option<(&str, Option<Input>, String)> {
    Some(match event {
        ShopEvent::InventoryReserved(e) => (
            &e.order_id,
            Some(Input::InventoryReserved),
            format!("{} item(s)", e.items.len()),
        ),
        ShopEvent::InventoryRejected(e) => {
            let short: Vec<String> = e
                .shortages
                .iter()
                .map(|s| format!("{} {}/{}", s.sku, s.available, s.requested))
                .collect();
            (
                &e.order_id,
                Some(Input::InventoryRejected),
                format!("{:?} {}", e.reason, short.join(", ")),
            )
        }
        ShopEvent::InventoryReleased(e) => (&e.order_id, None, format!("{:?}", e.reason)),
        ShopEvent::PaymentCaptured(e) => (
            &e.order_id,
            Some(Input::PaymentCaptured {
                payment_id: e.payment_id.clone(),
            }),
            format!(
                "{} {} ref {}",
                e.amount_minor, e.currency, e.provider_reference
            ),
        ),
        ShopEvent::PaymentFailed(e) => (
            &e.order_id,
            Some(Input::PaymentFailed {
                because_cancelled: e.reason == PaymentFailureReason::OrderCancelled,
            }),
            format!("{:?} {}", e.reason, e.detail.clone().unwrap_or_default()),
        ),
        ShopEvent::PaymentRefunded(e) => (
            &e.order_id,
            None,
            format!("{} {}", e.amount_minor, e.currency),
        ),
        ShopEvent::ShipmentScheduled(e) => (
            &e.order_id,
            Some(Input::ShipmentScheduled),
            format!("carrier {}", e.carrier),
        ),
        _ => return None,
    })
}

impl Handler for OrderHandler {
    fn knows(&self, event_type: &str) -> bool {
        ShopEvent::is_known(event_type)
    }

    async fn handle(&self, tx: &mut PgConnection, event: &Incoming) -> Result<(), HandlerError> {
        let Some(decoded) =
            ShopEvent::decode(&self.codec, &event.metadata.event_type, &event.value).await?
        else {
            tracing::debug!(event_type = %event.metadata.event_type, "not an event the order service knows");
            return Ok(());
        };
        let Some((order_id, input, detail)) = interpret(&decoded) else {
            return Ok(());
        };
        let Some(row) = store::lock(tx, order_id).await? else {
            return Err(HandlerError::Rejected(format!(
                "{} for unknown order {order_id}",
                decoded.name()
            )));
        };
        let short = decoded.name().rsplit('.').next().unwrap_or_default();
        saga::record(
            tx,
            order_id,
            short,
            &event.metadata.producer,
            event.metadata.occurred_at,
            detail,
        )
        .await?;
        if let Some(input) = input {
            self.saga
                .apply(tx, &row, &input, Some(&Cause::from(&event.metadata)))
                .await?;
        }
        Ok(())
    }
}
