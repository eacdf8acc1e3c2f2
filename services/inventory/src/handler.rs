//! The inventory's part in the order saga: [`InventoryHandler`] applies `OrderPlaced`
//! (reserve every line or none), `PaymentFailed` and `OrderCancelled` (release a held
//! reservation), and `OrderConfirmed` (sell it), each inside the consumer's transaction together
//! with the events it publishes through the outbox.
//!
//! Every transition is guarded by the order's row in `reservations`: an event the reservation's
//! status does not allow (a second `OrderPlaced`, a release after a sale, an unknown order) is
//! passed over with a debug log, so handling is idempotent. The rules are in [`crate::domain`],
//! the SQL in [`crate::store`]; this file only sequences them.

use std::collections::BTreeMap;
use std::sync::Arc;

use choreo::avro::{Codec, Event};
use choreo::consumer::{traced, BatchFailure, Handler, HandlerError, Incoming};
use choreo::outbox::Outbox;
use shop_events::values::Sku;
use shop_events::{
    InventoryRejected, InventoryReleased, InventoryReserved, OrderPlaced, RejectReason,
    ReleaseReason, ReleasedItem, ReservedItem, ShopEvent, Shortage,
};
use sqlx::PgConnection;

use crate::domain::{self, Rejection, Request, Reservation, Settlement, Status};
use crate::store::{self, NewReservation};

/// Applies the saga's events to the inventory.
#[derive(Clone)]
pub struct InventoryHandler {
    codec: Arc<Codec>,
    outbox: Outbox,
}

impl InventoryHandler {
    pub fn new(codec: Arc<Codec>, outbox: Outbox) -> Self {
        Self { codec, outbox }
    }

    async fn publish<E: Event>(
        &self,
        tx: &mut PgConnection,
        order_id: &str,
        event: &E,
        cause: &Incoming,
    ) -> Result<(), HandlerError> {
        let metadata = self
            .outbox
            .metadata::<E>(order_id)
            .caused_by(&cause.metadata);
        self.outbox.add(tx, order_id, event, metadata).await?;
        Ok(())
    }

    /// Reserves every line of the order or none, and says which.
    #[tracing::instrument(skip_all, fields(order_id = %placed.order_id), err)]
    async fn on_placed(
        &self,
        tx: &mut PgConnection,
        incoming: &Incoming,
        placed: &OrderPlaced,
    ) -> Result<(), HandlerError> {
        let request = Request::from_placed(placed)
            .map_err(|invalid| HandlerError::Rejected(format!("OrderPlaced: {invalid}")))?;
        let order_id = request.order_id.as_str();
        if store::reservation_exists(tx, order_id).await? {
            tracing::debug!("order already seen; passed over");
            return Ok(());
        }
        let stock = store::lock_stock(tx, request.items.keys()).await?;
        let now = chrono::Utc::now().timestamp_millis();
        let currency = request.total.currency();
        let mut record = NewReservation {
            order_id,
            reservation_id: None,
            status: Status::Rejected,
            items: &request.items,
            currency: currency.as_str(),
            amount_minor: request.total.minor(),
            reason: None,
        };
        match domain::reserve(&request.items, &stock) {
            Reservation::Reserve(levels) => {
                let reservation_id = uuid::Uuid::now_v7().to_string();
                record.reservation_id = Some(&reservation_id);
                record.status = Status::Reserved;
                if !store::insert_reservation(tx, &record).await? {
                    return Ok(());
                }
                store::write_levels(tx, &levels).await?;
                let event = InventoryReserved {
                    order_id: order_id.to_owned(),
                    reservation_id: reservation_id.clone(),
                    items: reserved_items(&request.items),
                    currency: record.currency.to_owned(),
                    amount_minor: record.amount_minor,
                    reserved_at: now,
                };
                self.publish(tx, order_id, &event, incoming).await?;
                tracing::debug!(%reservation_id, "reserved");
            }
            Reservation::Reject { reason, shortfalls } => {
                let reason = match reason {
                    Rejection::UnknownSku => RejectReason::UnknownSku,
                    Rejection::OutOfStock => RejectReason::OutOfStock,
                };
                record.reason = Some(reject_reason_name(reason));
                if !store::insert_reservation(tx, &record).await? {
                    return Ok(());
                }
                let event = InventoryRejected {
                    order_id: order_id.to_owned(),
                    reason,
                    shortages: shortfalls
                        .into_iter()
                        .map(|s| Shortage {
                            sku: s.sku.to_string(),
                            requested: s.requested,
                            available: s.available,
                        })
                        .collect(),
                    rejected_at: now,
                };
                self.publish(tx, order_id, &event, incoming).await?;
                tracing::debug!(reason = record.reason, "rejected");
            }
        }
        Ok(())
    }

    /// Releases or sells the order's held reservation, if it is held.
    #[tracing::instrument(skip_all, fields(order_id = %order_id, ?settlement), err)]
    async fn settle(
        &self,
        tx: &mut PgConnection,
        incoming: &Incoming,
        order_id: &str,
        settlement: Settlement,
    ) -> Result<(), HandlerError> {
        let Some(reservation) = store::lock_reservation(tx, order_id).await? else {
            tracing::debug!("no reservation for this order; passed over");
            return Ok(());
        };
        let Some(next) = reservation.status.settle(settlement) else {
            tracing::debug!(
                status = reservation.status.as_str(),
                "not held; passed over"
            );
            return Ok(());
        };
        let stock = store::lock_stock(tx, reservation.items.keys()).await?;
        let levels = domain::settle(settlement, &reservation.items, &stock).map_err(|broken| {
            tracing::error!(%broken, "stored stock contradicts the reservation");
            HandlerError::Rejected(broken.to_string())
        })?;
        store::write_levels(tx, &levels).await?;
        let reason = match settlement {
            Settlement::Release(reason) => Some(reason),
            Settlement::Sell => None,
        };
        store::set_status(tx, order_id, next, reason.map(release_reason_name)).await?;
        if let Some(reason) = reason {
            let event = InventoryReleased {
                order_id: order_id.to_owned(),
                reservation_id: reservation.reservation_id.unwrap_or_default(),
                items: released_items(&reservation.items),
                reason,
                released_at: chrono::Utc::now().timestamp_millis(),
            };
            self.publish(tx, order_id, &event, incoming).await?;
        }
        tracing::debug!(status = next.as_str(), "settled");
        Ok(())
    }
}

impl InventoryHandler {
    /// Every SKU a batch's events will touch: the lines of its new orders and the items of the
    /// reservations its other events settle.
    async fn skus_of(
        &self,
        tx: &mut PgConnection,
        events: &[Incoming],
    ) -> Result<Vec<Sku>, HandlerError> {
        let mut skus = std::collections::BTreeSet::new();
        let mut settled = Vec::new();
        for event in events {
            match ShopEvent::decode(&self.codec, &event.metadata.event_type, &event.value).await {
                Ok(Some(ShopEvent::OrderPlaced(placed))) => {
                    skus.extend(placed.lines.iter().filter_map(|l| Sku::parse(&l.sku).ok()));
                }
                Ok(Some(ShopEvent::PaymentFailed(e))) => settled.push(e.order_id),
                Ok(Some(ShopEvent::OrderCancelled(e))) => settled.push(e.order_id),
                Ok(Some(ShopEvent::OrderConfirmed(e))) => settled.push(e.order_id),
                // Its own handling reports what is wrong with it.
                _ => {}
            }
        }
        skus.extend(store::reserved_skus(tx, &settled).await?);
        Ok(skus.into_iter().collect())
    }
}

impl Handler for InventoryHandler {
    fn knows(&self, event_type: &str) -> bool {
        ShopEvent::is_known(event_type)
    }

    /// Locks every stock row the batch touches first, in one statement in SKU order, then
    /// applies the events one by one. Partitions are applied in parallel and every order
    /// shares a few hot SKUs: taking the rows event by event, two batches could each hold a
    /// row the other wants (a deadlock PostgreSQL breaks by failing one of them). Taken all at
    /// once and in one order, batches queue for the rows instead.
    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        events: &[Incoming],
    ) -> Result<(), BatchFailure> {
        let failed_at = |index| move |error| BatchFailure { index, error };
        let skus = self.skus_of(tx, events).await.map_err(failed_at(0))?;
        store::lock_stock(tx, &skus)
            .await
            .map_err(|e| failed_at(0)(e.into()))?;
        for (index, event) in events.iter().enumerate() {
            traced(event, self.handle(tx, event))
                .await
                .map_err(failed_at(index))?;
        }
        Ok(())
    }

    async fn handle(&self, tx: &mut PgConnection, event: &Incoming) -> Result<(), HandlerError> {
        let decoded =
            ShopEvent::decode(&self.codec, &event.metadata.event_type, &event.value).await?;
        match decoded {
            Some(ShopEvent::OrderPlaced(placed)) => self.on_placed(tx, event, &placed).await,
            Some(ShopEvent::PaymentFailed(failed)) => {
                let settlement = Settlement::Release(ReleaseReason::PaymentFailed);
                self.settle(tx, event, &failed.order_id, settlement).await
            }
            Some(ShopEvent::OrderCancelled(cancelled)) => {
                let settlement = Settlement::Release(ReleaseReason::OrderCancelled);
                self.settle(tx, event, &cancelled.order_id, settlement)
                    .await
            }
            Some(ShopEvent::OrderConfirmed(confirmed)) => {
                self.settle(tx, event, &confirmed.order_id, Settlement::Sell)
                    .await
            }
            Some(_) | None => {
                tracing::debug!(event_type = %event.metadata.event_type, "not for inventory");
                Ok(())
            }
        }
    }
}

fn reserved_items(items: &BTreeMap<Sku, i32>) -> Vec<ReservedItem> {
    items
        .iter()
        .map(|(sku, &quantity)| ReservedItem {
            sku: sku.to_string(),
            quantity,
        })
        .collect()
}

fn released_items(items: &BTreeMap<Sku, i32>) -> Vec<ReleasedItem> {
    items
        .iter()
        .map(|(sku, &quantity)| ReleasedItem {
            sku: sku.to_string(),
            quantity,
        })
        .collect()
}

/// The Avro symbol of a rejection reason, as stored in `reservations.reason`.
fn reject_reason_name(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::OutOfStock => "OUT_OF_STOCK",
        RejectReason::UnknownSku => "UNKNOWN_SKU",
        RejectReason::OrderCancelled => "ORDER_CANCELLED",
    }
}

/// The Avro symbol of a release reason, as stored in `reservations.reason`.
fn release_reason_name(reason: ReleaseReason) -> &'static str {
    match reason {
        ReleaseReason::PaymentFailed => "PAYMENT_FAILED",
        ReleaseReason::OrderCancelled => "ORDER_CANCELLED",
    }
}
