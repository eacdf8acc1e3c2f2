//! Turns the domain's [`Effect`]s into the service's outgoing events, written to the outbox in
//! the caller's transaction: PaymentCaptured, PaymentFailed and PaymentRefunded on
//! `shop.payments.v1`, keyed by order id. Effects that are not events are left to the caller.

use choreo::avro::Event;
use choreo::envelope::Cause;
use choreo::outbox::{Outbox, OutboxError};
use shop_events::{
    PaymentCaptured, PaymentFailed, PaymentFailureReason, PaymentRefunded, RefundReason,
};
use sqlx::PgConnection;

use crate::domain::{Effect, FailureReason};
use crate::store::Payment;

/// Adds the events among `effects` for `payment` to the outbox; `cause` is the event that led
/// to them: the consumed one, or the one kept with the payment for work done later (none for a
/// row that kept none: its events are written without a causation).
pub async fn events(
    outbox: &Outbox,
    tx: &mut PgConnection,
    payment: &Payment,
    effects: &[Effect],
    cause: Option<&Cause>,
) -> Result<(), OutboxError> {
    let now = chrono::Utc::now().timestamp_millis();
    for effect in effects {
        match effect {
            Effect::PublishCaptured { charge_id } => {
                let event = PaymentCaptured {
                    order_id: payment.order_id.clone(),
                    payment_id: payment.payment_id.to_string(),
                    currency: payment.currency.clone(),
                    amount_minor: payment.amount_minor,
                    provider_reference: charge_id.clone(),
                    captured_at: now,
                };
                add(outbox, tx, payment, &event, cause).await?;
            }
            Effect::PublishFailed { reason, detail } => {
                let event = PaymentFailed {
                    order_id: payment.order_id.clone(),
                    payment_id: payment.payment_id.to_string(),
                    reason: match reason {
                        FailureReason::Declined => PaymentFailureReason::Declined,
                        FailureReason::ProviderUnavailable => {
                            PaymentFailureReason::ProviderUnavailable
                        }
                        FailureReason::OrderCancelled => PaymentFailureReason::OrderCancelled,
                    },
                    detail: detail.clone(),
                    failed_at: now,
                };
                add(outbox, tx, payment, &event, cause).await?;
            }
            Effect::PublishRefunded { refund_id } => {
                let event = PaymentRefunded {
                    order_id: payment.order_id.clone(),
                    payment_id: payment.payment_id.to_string(),
                    currency: payment.currency.clone(),
                    amount_minor: payment.amount_minor,
                    reason: RefundReason::OrderCancelled,
                    provider_reference: refund_id.clone(),
                    refunded_at: now,
                };
                add(outbox, tx, payment, &event, cause).await?;
            }
            Effect::RetryLater { .. } => {}
        }
    }
    Ok(())
}

async fn add<E: Event>(
    outbox: &Outbox,
    tx: &mut PgConnection,
    payment: &Payment,
    event: &E,
    cause: Option<&Cause>,
) -> Result<(), OutboxError> {
    let key = payment.order_id.as_str();
    let mut metadata = outbox.metadata::<E>(key);
    if let Some(cause) = cause {
        metadata = metadata.caused_by(cause);
    }
    let written = outbox.add(tx, key, event, metadata).await?;
    tracing::debug!(order_id = key, event_id = %written.event_id, event_type = E::NAME, "event written");
    Ok(())
}
