//! The payment state machine, pure: [`decide`] takes what is known of an order's payment and one
//! input (an event consumed, a worker's claim, the provider's answer) and returns the next state
//! and the effects (events to publish, a retry to schedule). A charge the provider answers
//! pending (the customer must still authenticate) is asked again later, like one it did not
//! answer, and given up at the same time. No I/O, no clock: the store loads and
//! saves [`State`], the handler and the worker turn [`Effect`]s into outbox rows.
//!
//! The rules that keep money right: a payment is captured at most once; a capture of a cancelled
//! order is always refunded, whichever came first; a final state never publishes; nothing is
//! refunded that was not captured.

use std::fmt;

/// Where a payment stands. `None` in [`State::status`] means no payment exists yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Waiting for a worker to charge it.
    Pending,
    /// A worker is calling the provider.
    Charging,
    Captured,
    /// Declined, or the provider stayed unavailable; nothing was captured.
    Failed,
    /// The order was cancelled before the charge; nothing was captured.
    Voided,
    /// Captured for an order that was cancelled: a worker refunds it.
    RefundPending,
    Refunded,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Charging,
        Status::Captured,
        Status::Failed,
        Status::Voided,
        Status::RefundPending,
        Status::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Charging => "charging",
            Status::Captured => "captured",
            Status::Failed => "failed",
            Status::Voided => "voided",
            Status::RefundPending => "refund_pending",
            Status::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// No input but a late capture ever moves a payment out of a final state.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Failed | Status::Voided | Status::Refunded)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known of one order's payment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// `None`: no payment yet (stock not reserved).
    pub status: Option<Status>,
    /// The order was cancelled (before the payment existed, or while it was being charged).
    pub cancelled: bool,
    /// The provider's id of the capture, once captured.
    pub charge_id: Option<String>,
    /// The provider's id of the refund, once refunded.
    pub refund_id: Option<String>,
}

/// Why a charge failed, as announced in `PaymentFailed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    Declined,
    ProviderUnavailable,
    OrderCancelled,
}

/// What the provider said about a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeResult {
    Captured {
        charge_id: String,
    },
    Declined {
        code: String,
    },
    /// Neither captured nor declined yet: the customer must still authenticate. Not an outage,
    /// but the same wait: ask again later; `give_up` as for `Unavailable`.
    Pending {
        charge_id: String,
        give_up: bool,
    },
    /// No answer; `give_up` when the payment has waited long enough (see [`gives_up`]).
    Unavailable {
        detail: String,
        give_up: bool,
    },
}

/// What the provider said about a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundResult {
    Refunded {
        refund_id: String,
    },
    /// No answer, or a refusal a person must look at: the refund is still owed.
    NotYet {
        detail: String,
    },
}

/// One thing that happens to a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// InventoryReserved: the order's stock is held; charge it.
    Reserved,
    /// OrderCancelled.
    Cancelled,
    /// A worker takes the payment to call the provider.
    Claimed,
    Charge(ChargeResult),
    Refund(RefundResult),
}

/// What the caller must do besides saving the new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Publish PaymentCaptured with this charge id.
    PublishCaptured { charge_id: String },
    /// Publish PaymentFailed.
    PublishFailed {
        reason: FailureReason,
        detail: Option<String>,
    },
    /// Publish PaymentRefunded with this refund id.
    PublishRefunded { refund_id: String },
    /// Call the provider again later (after a backoff); `detail` says why not now.
    RetryLater { detail: String },
}

impl Effect {
    pub fn is_event(&self) -> bool {
        !matches!(self, Effect::RetryLater { .. })
    }
}

/// The next state and effects of `state` on `input`. Inputs that do not apply to the state
/// (a redelivery, a stale answer) change nothing.
pub fn decide(state: &State, input: Input) -> (State, Vec<Effect>) {
    use Status::*;
    let mut next = state.clone();
    let mut effects = Vec::new();
    match (state.status, input) {
        (None, Input::Reserved) if state.cancelled => {
            next.status = Some(Voided);
            effects.push(cancelled_failure());
        }
        (None, Input::Reserved) => next.status = Some(Pending),
        (None, Input::Cancelled) => next.cancelled = true,
        (Some(Pending), Input::Cancelled) => {
            next.cancelled = true;
            next.status = Some(Voided);
            effects.push(cancelled_failure());
        }
        (Some(Charging), Input::Cancelled) => next.cancelled = true,
        (Some(Captured), Input::Cancelled) => {
            next.cancelled = true;
            next.status = Some(RefundPending);
        }
        (Some(Pending | Charging), Input::Claimed) => next.status = Some(Charging),
        // A stale answer can find the payment back in pending (its lease ran out and a later
        // attempt was answered unavailable); the provider's answer still counts.
        (Some(Pending | Charging), Input::Charge(result)) => match result {
            ChargeResult::Captured { charge_id } => {
                next.charge_id = Some(charge_id.clone());
                next.status = Some(if state.cancelled {
                    RefundPending
                } else {
                    Captured
                });
                effects.push(Effect::PublishCaptured { charge_id });
            }
            ChargeResult::Declined { code } => {
                next.status = Some(Failed);
                effects.push(Effect::PublishFailed {
                    reason: FailureReason::Declined,
                    detail: Some(code),
                });
            }
            ChargeResult::Pending { charge_id, give_up } => {
                let detail = format!("charge {charge_id} is pending at the provider");
                let (status, effect) = not_yet(state, detail, give_up);
                next.status = Some(status);
                effects.push(effect);
            }
            ChargeResult::Unavailable { detail, give_up } => {
                let (status, effect) = not_yet(state, detail, give_up);
                next.status = Some(status);
                effects.push(effect);
            }
        },
        // A capture that answers after the payment was given up (an overtaken attempt): the
        // money was taken, and PaymentFailed was already announced; pay it back quietly.
        (Some(Failed | Voided), Input::Charge(ChargeResult::Captured { charge_id }))
            if state.charge_id.is_none() =>
        {
            next.charge_id = Some(charge_id);
            next.status = Some(RefundPending);
        }
        (Some(RefundPending), Input::Refund(result)) => match result {
            RefundResult::Refunded { refund_id } => {
                next.refund_id = Some(refund_id.clone());
                next.status = Some(Refunded);
                effects.push(Effect::PublishRefunded { refund_id });
            }
            RefundResult::NotYet { detail } => effects.push(Effect::RetryLater { detail }),
        },
        _ => {}
    }
    (next, effects)
}

/// A charge not settled by this call (no answer, or pending): try again later, or stop.
fn not_yet(state: &State, detail: String, give_up: bool) -> (Status, Effect) {
    if state.cancelled {
        // Nobody waits for the payment of a cancelled order: stop trying.
        (Status::Voided, cancelled_failure())
    } else if give_up {
        let effect = Effect::PublishFailed {
            reason: FailureReason::ProviderUnavailable,
            detail: Some(detail),
        };
        (Status::Failed, effect)
    } else {
        (Status::Pending, Effect::RetryLater { detail })
    }
}

fn cancelled_failure() -> Effect {
    Effect::PublishFailed {
        reason: FailureReason::OrderCancelled,
        detail: Some("the order was cancelled before the charge".into()),
    }
}

/// Whether a payment created `age` ago has waited long enough for the provider.
pub fn gives_up(age: std::time::Duration, give_up_after: std::time::Duration) -> bool {
    age >= give_up_after
}

#[cfg(test)]
mod tests;
