//! The inventory's part in the order saga: [`InventoryHandler`] applies `OrderPlaced`
//! (reserve every line or none), `PaymentFailed` and `OrderCancelled` (release a held
//! reservation), and `OrderConfirmed` (sell it), each inside the consumer's transaction together
//! with the events it publishes through the outbox.
//!
//! Every transition is guarded by the order's row in `reservations`: an event the reservation's
//! status does not allow (a second `OrderPlaced`, a release after a sale, an unknown order) is
//! passed over with a debug log, so handling is idempotent. A batch is decided as a whole in
//! memory ([`crate::domain::batch`]) against one locked reading of its stock rows, which are
//! written once per batch: hot SKUs are held per batch, not per order. The rules are in
//! [`crate::domain`], the SQL in [`crate::store`]; this file only sequences them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use choreo::avro::{Codec, Event};
use choreo::consumer::{traced, BatchFailure, Handler, HandlerError, Incoming};
use choreo::outbox::Outbox;
use shop_events::typed::PlacedOrder;
use shop_events::values::Sku;
use shop_events::{
    InventoryRejected, InventoryReleased, InventoryReserved, RejectReason, ReleaseReason,
    ReleasedItem, ReservedItem, ShopEvent, Shortage,
};
use sqlx::PgConnection;

use crate::domain::batch::{self, Decision, Reason, Step};
use crate::domain::{Rejection, Request, Settlement};
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

    /// Reads a batch's events as steps; fails with the index of one that cannot be read.
    async fn steps(&self, events: &[Incoming]) -> Result<Vec<Step>, BatchFailure> {
        let mut steps = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            let failed = |error| BatchFailure { index, error };
            let decoded = ShopEvent::decode(&self.codec, &event.metadata.event_type, &event.value)
                .await
                .map_err(|e| failed(e.into()))?;
            let settle = |order_id, settlement| Step::Settle {
                order_id,
                settlement,
            };
            steps.push(match decoded {
                Some(ShopEvent::OrderPlaced(placed)) => {
                    // The event's values are parsed once, here, as it is taken in.
                    let request = PlacedOrder::try_from(&placed)
                        .and_then(|placed| Request::from_placed(&placed))
                        .map_err(|invalid| {
                            failed(HandlerError::Rejected(format!("OrderPlaced: {invalid}")))
                        })?;
                    Step::Place(request)
                }
                Some(ShopEvent::PaymentFailed(e)) => settle(
                    e.order_id,
                    Settlement::Release(ReleaseReason::PaymentFailed),
                ),
                Some(ShopEvent::OrderCancelled(e)) => settle(
                    e.order_id,
                    Settlement::Release(ReleaseReason::OrderCancelled),
                ),
                Some(ShopEvent::OrderConfirmed(e)) => settle(e.order_id, Settlement::Sell),
                Some(_) | None => Step::Other,
            });
        }
        Ok(steps)
    }

    /// Applies a batch: reads it, locks the stored reservations of its orders and then the stock
    /// rows of their SKUs (each in one statement, in key order), decides every event in memory
    /// ([`batch::plan`]), writes the reservations and the levels in one statement each and
    /// announces each decision. The stock rows are locked last and held only for the writes.
    async fn apply(&self, tx: &mut PgConnection, events: &[Incoming]) -> Result<(), BatchFailure> {
        let steps = self.steps(events).await?;
        let whole = |error: HandlerError| BatchFailure { index: 0, error };
        let order_ids: BTreeSet<&str> = steps
            .iter()
            .filter_map(|step| match step {
                Step::Place(request) => Some(request.order_id.as_str()),
                Step::Settle { order_id, .. } => Some(order_id.as_str()),
                Step::Other => None,
            })
            .collect();
        let order_ids: Vec<&str> = order_ids.into_iter().collect();
        let stored = store::lock_reservations(tx, &order_ids)
            .await
            .map_err(|e| whole(e.into()))?;
        let mut skus: BTreeSet<&Sku> = BTreeSet::new();
        for step in &steps {
            match step {
                Step::Place(request) => skus.extend(request.items.keys()),
                Step::Settle { order_id, .. } => {
                    skus.extend(
                        stored
                            .get(order_id)
                            .into_iter()
                            .flat_map(|h| h.items.keys()),
                    );
                }
                Step::Other => {}
            }
        }
        let stock = store::lock_stock(tx, skus)
            .await
            .map_err(|e| whole(e.into()))?;
        let plan = batch::plan(&steps, &stored, &stock, || uuid::Uuid::now_v7().to_string())
            .map_err(|(index, broken)| {
                tracing::error!(%broken, "stored stock contradicts the reservation");
                BatchFailure {
                    index,
                    error: HandlerError::Rejected(broken.to_string()),
                }
            })?;
        self.write(tx, &steps, &plan).await.map_err(whole)?;
        for (index, (decision, event)) in plan.decisions.iter().zip(events).enumerate() {
            traced(event, self.announce(tx, event, &steps[index], decision))
                .await
                .map_err(|error| BatchFailure { index, error })?;
        }
        Ok(())
    }

    /// Writes the plan's reservation rows and stock levels.
    async fn write(
        &self,
        tx: &mut PgConnection,
        steps: &[Step],
        plan: &batch::Plan,
    ) -> Result<(), HandlerError> {
        let request = |index: usize| match &steps[index] {
            Step::Place(request) => request,
            _ => unreachable!("a new reservation comes from a Place step"),
        };
        let currencies: Vec<(usize, String)> = plan
            .rows
            .values()
            .filter_map(|row| row.new)
            .map(|index| (index, request(index).total.currency().as_str().to_owned()))
            .collect();
        let mut new = Vec::new();
        let mut changed = Vec::new();
        for row in plan.rows.values() {
            let reason = row.reason.map(reason_name);
            match row.new {
                Some(index) => {
                    let currency = &currencies
                        .iter()
                        .find(|(i, _)| *i == index)
                        .expect("above")
                        .1;
                    new.push(NewReservation {
                        order_id: &row.order_id,
                        reservation_id: row.held.reservation_id.as_deref(),
                        status: row.held.status,
                        items: &row.held.items,
                        currency,
                        amount_minor: request(index).total.minor(),
                        reason,
                    });
                }
                None => changed.push((row.order_id.as_str(), row.held.status, reason)),
            }
        }
        if store::insert_reservations(tx, &new).await? != new.len() as u64 {
            // Another transaction recorded one of these orders meanwhile: decide again.
            return Err(HandlerError::Transient(
                "a reservation of this batch was recorded concurrently".into(),
            ));
        }
        store::set_statuses(tx, &changed).await?;
        store::write_levels(tx, &plan.levels).await?;
        Ok(())
    }

    /// Publishes what `decision` says about `event`'s order.
    async fn announce(
        &self,
        tx: &mut PgConnection,
        event: &Incoming,
        step: &Step,
        decision: &Decision,
    ) -> Result<(), HandlerError> {
        let now = chrono::Utc::now().timestamp_millis();
        match (step, decision) {
            (Step::Place(request), Decision::Reserved { reservation_id }) => {
                let order_id = request.order_id.as_str();
                let reserved = InventoryReserved {
                    order_id: order_id.to_owned(),
                    reservation_id: reservation_id.clone(),
                    items: reserved_items(&request.items),
                    currency: request.total.currency().as_str().to_owned(),
                    amount_minor: request.total.minor(),
                    reserved_at: now,
                };
                self.publish(tx, order_id, &reserved, event).await?;
                tracing::debug!(order_id, %reservation_id, "reserved");
            }
            (Step::Place(request), Decision::Rejected { reason, shortfalls }) => {
                let order_id = request.order_id.as_str();
                let rejected = InventoryRejected {
                    order_id: order_id.to_owned(),
                    reason: reject_reason(*reason),
                    shortages: shortfalls
                        .iter()
                        .map(|s| Shortage {
                            sku: s.sku.to_string(),
                            requested: s.requested,
                            available: s.available,
                        })
                        .collect(),
                    rejected_at: now,
                };
                self.publish(tx, order_id, &rejected, event).await?;
                tracing::debug!(order_id, ?reason, "rejected");
            }
            (
                Step::Settle { order_id, .. },
                Decision::Settled {
                    reservation_id,
                    items,
                    settlement,
                },
            ) => {
                if let Settlement::Release(reason) = settlement {
                    let released = InventoryReleased {
                        order_id: order_id.clone(),
                        reservation_id: reservation_id.clone().unwrap_or_default(),
                        items: released_items(items),
                        reason: *reason,
                        released_at: now,
                    };
                    self.publish(tx, order_id, &released, event).await?;
                }
                tracing::debug!(%order_id, ?settlement, "settled");
            }
            (_, Decision::PassedOver(why)) => {
                tracing::debug!(event_type = %event.metadata.event_type, why, "passed over");
            }
            (step, decision) => unreachable!("{decision:?} does not follow from {step:?}"),
        }
        Ok(())
    }
}

impl Handler for InventoryHandler {
    fn knows(&self, event_type: &str) -> bool {
        ShopEvent::is_known(event_type)
    }

    /// The whole batch at once ([`InventoryHandler::apply`]): in a flash sale every order needs
    /// the same few stock rows, and a batch holds them for one set of writes, not per order.
    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        events: &[Incoming],
    ) -> Result<(), BatchFailure> {
        self.apply(tx, events).await
    }

    async fn handle(&self, tx: &mut PgConnection, event: &Incoming) -> Result<(), HandlerError> {
        self.apply(tx, std::slice::from_ref(event))
            .await
            .map_err(|failure| failure.error)
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

/// The `reservations.reason` of a row.
fn reason_name(reason: Reason) -> &'static str {
    match reason {
        Reason::Rejected(rejection) => reject_reason_name(reject_reason(rejection)),
        Reason::Released(reason) => release_reason_name(reason),
    }
}

fn reject_reason(rejection: Rejection) -> RejectReason {
    match rejection {
        Rejection::UnknownSku => RejectReason::UnknownSku,
        Rejection::OutOfStock => RejectReason::OutOfStock,
    }
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
