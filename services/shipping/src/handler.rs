//! The shipping service's part in the order saga: [`ShippingHandler`] schedules a shipment for
//! each `OrderConfirmed` and announces it with `ShipmentScheduled`, in the consumer's transaction
//! through the outbox. An order that already has a shipment is passed over with a debug log, so a
//! redelivered or repeated confirmation schedules nothing twice; every other event is passed over.
//! The rules are in [`crate::domain`], the SQL in [`crate::store`]; the event's values are parsed
//! once, as it is decoded ([`shop_events::typed`]).

use std::sync::Arc;

use choreo::avro::Codec;
use choreo::consumer::{Handler, HandlerError, Incoming};
use choreo::outbox::Outbox;
use chrono::{DateTime, Utc};
use shop_events::typed::ConfirmedOrder;
use shop_events::{ShipmentScheduled, ShopEvent};
use sqlx::PgConnection;

use crate::domain::{self, Decision, Status};
use crate::store::{self, ShipmentRow};

/// Applies the saga's events to shipping.
#[derive(Clone)]
pub struct ShippingHandler {
    codec: Arc<Codec>,
    outbox: Outbox,
}

impl ShippingHandler {
    pub fn new(codec: Arc<Codec>, outbox: Outbox) -> Self {
        Self { codec, outbox }
    }

    /// Schedules the order's shipment unless it has one.
    #[tracing::instrument(skip_all, fields(order_id = %confirmed.order_id), err)]
    async fn on_confirmed(
        &self,
        tx: &mut PgConnection,
        incoming: &Incoming,
        confirmed: &ConfirmedOrder,
    ) -> Result<(), HandlerError> {
        let (order_id, total) = (&confirmed.order_id, confirmed.total);
        let existing = store::lock_status(tx, order_id.as_str()).await?;
        let Decision::Schedule(carrier) = domain::decide(existing, total) else {
            tracing::debug!("already scheduled; passed over");
            return Ok(());
        };
        let now = Utc::now().timestamp_millis();
        let row = ShipmentRow {
            shipment_id: uuid::Uuid::now_v7().to_string(),
            order_id: order_id.to_string(),
            carrier: carrier.as_str().to_owned(),
            status: Status::Scheduled,
            scheduled_at: DateTime::from_timestamp_millis(now).unwrap_or_else(Utc::now),
        };
        if !store::insert(tx, &row).await? {
            tracing::debug!("already scheduled; passed over");
            return Ok(());
        }
        let event = ShipmentScheduled {
            order_id: row.order_id.clone(),
            shipment_id: row.shipment_id.clone(),
            carrier: row.carrier.clone(),
            scheduled_at: now,
        };
        let metadata = self
            .outbox
            .metadata::<ShipmentScheduled>(&row.order_id)
            .caused_by(&incoming.metadata);
        self.outbox.add(tx, &row.order_id, &event, metadata).await?;
        tracing::info!(shipment_id = %row.shipment_id, carrier = %row.carrier, "scheduled");
        Ok(())
    }
}

impl Handler for ShippingHandler {
    fn knows(&self, event_type: &str) -> bool {
        ShopEvent::is_known(event_type)
    }

    async fn handle(&self, tx: &mut PgConnection, event: &Incoming) -> Result<(), HandlerError> {
        let decoded =
            ShopEvent::decode(&self.codec, &event.metadata.event_type, &event.value).await?;
        match decoded {
            Some(ShopEvent::OrderConfirmed(confirmed)) => {
                let confirmed = ConfirmedOrder::try_from(&confirmed)?;
                self.on_confirmed(tx, event, &confirmed).await
            }
            Some(_) | None => {
                tracing::debug!(event_type = %event.metadata.event_type, "not for shipping");
                Ok(())
            }
        }
    }
}
