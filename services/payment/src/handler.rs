//! The consumer's handler: applies OrderPlaced, InventoryReserved and OrderCancelled to the
//! payment service's database, inside the consumer's transaction. It never calls the provider
//! (a slow provider must not stall a partition): it creates payments for the [`crate::worker`]
//! to charge, and voids or flags them when orders are cancelled. Other events are skipped. The
//! events' values are parsed once, as they are decoded ([`shop_events::typed`]).

use std::sync::Arc;

use choreo::avro::Codec;
use choreo::consumer::{Handler, HandlerError, Incoming};
use choreo::doorbell::Doorbell;
use choreo::envelope::{Cause, Metadata};
use choreo::outbox::{Outbox, OutboxError};
use shop_events::typed::{CancelledOrder, PlacedOrder, ReservedStock};
use shop_events::ShopEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{decide, Input, State};
use crate::store::{self, NewPayment};

/// Applies the events the payment service consumes.
#[derive(Clone)]
pub struct PaymentHandler {
    codec: Arc<Codec>,
    outbox: Outbox,
    /// The worker's doorbell, marked when a payment becomes workable.
    work: Option<Doorbell>,
}

impl PaymentHandler {
    pub fn new(codec: Arc<Codec>, outbox: Outbox) -> Self {
        Self {
            codec,
            outbox,
            work: None,
        }
    }

    /// Marks `work` (the worker's doorbell, rung after the batch commits) whenever a payment
    /// is created or changed, so the worker claims it at once.
    pub fn with_work(mut self, work: Doorbell) -> Self {
        self.work = Some(work);
        self
    }

    fn workable(&self) {
        self.work.iter().for_each(Doorbell::mark);
    }

    #[tracing::instrument(skip_all, fields(order_id = %event.order_id), err)]
    async fn order_placed(
        &self,
        tx: &mut PgConnection,
        event: &PlacedOrder,
    ) -> Result<(), HandlerError> {
        let total = event.total;
        store::lock_order(tx, event.order_id.as_str()).await?;
        store::remember_order(
            tx,
            event.order_id.as_str(),
            event.customer_id.as_str(),
            total.currency().as_str(),
            total.minor(),
        )
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(order_id = %event.order_id), err)]
    async fn inventory_reserved(
        &self,
        tx: &mut PgConnection,
        event: &ReservedStock,
        cause: &Metadata,
    ) -> Result<(), HandlerError> {
        let (order_id, amount) = (&event.order_id, event.amount);
        let order = store::lock_order(tx, order_id.as_str()).await?;
        if store::payment_of_order(tx, order_id.as_str())
            .await?
            .is_some()
        {
            tracing::info!("the order already has a payment; nothing to do");
            return Ok(());
        }
        let before = State {
            cancelled: order.cancelled,
            ..State::default()
        };
        let (state, effects) = decide(&before, Input::Reserved);
        // Kept with the payment: the worker's charge continues this event's trace, and the
        // events it writes name it.
        let cause = Cause::from(cause);
        let payment = store::insert_payment(
            tx,
            &NewPayment {
                payment_id: Uuid::now_v7(),
                order_id: order_id.as_str(),
                amount_minor: amount.minor(),
                currency: amount.currency().as_str(),
                customer_id: order.customer_id.as_deref(),
                state: &state,
                cause: &cause,
            },
        )
        .await?;
        tracing::debug!(payment_id = %payment.payment_id, status = %payment.status, "payment created");
        self.workable();
        crate::publish::events(&self.outbox, tx, &payment, &effects, Some(&cause))
            .await
            .map_err(outbox_error)
    }

    #[tracing::instrument(skip_all, fields(order_id = %event.order_id), err)]
    async fn order_cancelled(
        &self,
        tx: &mut PgConnection,
        event: &CancelledOrder,
        cause: &Metadata,
    ) -> Result<(), HandlerError> {
        let order_id = &event.order_id;
        store::lock_order(tx, order_id.as_str()).await?;
        let Some(payment) = store::payment_of_order(tx, order_id.as_str()).await? else {
            store::mark_cancelled(tx, order_id.as_str()).await?;
            return Ok(());
        };
        let before = payment.state();
        let (state, effects) = decide(&before, Input::Cancelled);
        if state == before {
            return Ok(());
        }
        store::save(tx, payment.payment_id, &state, None).await?;
        // A refund (or a void) the worker makes later names this cancellation.
        let cause = Cause::from(cause);
        store::keep_refund_cause(tx, payment.payment_id, &cause).await?;
        self.workable();
        tracing::info!(
            payment_id = %payment.payment_id,
            from = %payment.status,
            to = ?state.status,
            "payment cancelled"
        );
        crate::publish::events(&self.outbox, tx, &payment, &effects, Some(&cause))
            .await
            .map_err(outbox_error)
    }
}

impl Handler for PaymentHandler {
    fn knows(&self, event_type: &str) -> bool {
        ShopEvent::is_known(event_type)
    }

    async fn handle(&self, tx: &mut PgConnection, event: &Incoming) -> Result<(), HandlerError> {
        let decoded =
            ShopEvent::decode(&self.codec, &event.metadata.event_type, &event.value).await?;
        match decoded {
            Some(ShopEvent::OrderPlaced(e)) => {
                self.order_placed(tx, &PlacedOrder::try_from(&e)?).await
            }
            Some(ShopEvent::InventoryReserved(e)) => {
                let reserved = ReservedStock::try_from(&e)?;
                self.inventory_reserved(tx, &reserved, &event.metadata)
                    .await
            }
            Some(ShopEvent::OrderCancelled(e)) => {
                let cancelled = CancelledOrder::try_from(&e)?;
                self.order_cancelled(tx, &cancelled, &event.metadata).await
            }
            _ => Ok(()),
        }
    }
}

fn outbox_error(error: OutboxError) -> HandlerError {
    match error {
        OutboxError::Encode(e) => HandlerError::Codec(e),
        OutboxError::Database(e) => HandlerError::Database(e),
    }
}
