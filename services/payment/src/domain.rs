//! The payment state machine, pure: [`decide`] takes what is known of an order's payment and one
//! input (an event consumed, a worker's claim, the provider's answer) and returns the next state
//! and the effects (events to publish, a retry to schedule); [`follow_up`] says what the worker
//! asks next when a lookup did not settle a payment in doubt; [`reconcile`] compares one charge
//! of the provider's ledger with our payment. No I/O, no clock: the store loads and saves
//! [`State`], the handler and the worker turn [`Effect`]s into outbox rows.
//!
//! The rules that keep money right: a payment is captured at most once; a capture of a cancelled
//! order is always refunded, whichever came first; a final state never publishes; nothing is
//! refunded that was not captured. And an outcome we did not see is unknown, not failed: once a
//! charge request may have reached the provider (a timeout, a 5xx, a pending charge, a worker
//! lost mid-call), the payment is [`Status::InDoubt`] and leaves it only on the provider's
//! definite word (captured, declined, voided), never by a guess, a cancellation or a timer.

use std::fmt;

pub mod reconcile;

/// Where a payment stands. `None` in [`State::status`] means no payment exists yet. Stored as
/// text; a value it does not name fails to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Status {
    /// Waiting for a worker to charge it; no charge request was ever sent.
    Pending,
    /// A worker is sending the first charge request.
    Charging,
    /// A charge request may have reached the provider, with no definite answer yet: a worker
    /// asks the provider (by idempotency key) until it says captured, declined or voided.
    InDoubt,
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
    pub const ALL: [Status; 8] = [
        Status::Pending,
        Status::Charging,
        Status::InDoubt,
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
            Status::InDoubt => "in_doubt",
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

/// What the provider said about a charge: the answer to a charge request, a lookup by
/// idempotency key or a void by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeResult {
    Captured {
        charge_id: String,
    },
    Declined {
        code: String,
    },
    /// Voided at the provider (we voided it: the order was cancelled, or we gave up): nothing
    /// was captured and nothing can be under the payment's key. `detail` says why we voided.
    Voided {
        detail: String,
    },
    /// The charge exists but is neither captured nor declined yet (the customer must still
    /// authenticate): ask again later, or void it.
    Pending {
        charge_id: String,
    },
    /// A lookup found no charge under the payment's key.
    NotFound,
    /// No answer. `in_doubt`: the request may have reached the provider (a timeout, a 5xx, a
    /// connection lost after sending); false only when it surely did not (refused connection,
    /// open breaker, a 4xx). `give_up`: the payment has waited long enough (see [`gives_up`]).
    Unavailable {
        detail: String,
        in_doubt: bool,
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
        // Never sent: nothing can have been captured.
        (Some(Pending), Input::Cancelled) => {
            next.cancelled = true;
            next.status = Some(Voided);
            effects.push(cancelled_failure());
        }
        // The provider may have it: the worker settles it (voiding it, or refunding a capture).
        (Some(Charging | InDoubt), Input::Cancelled) => next.cancelled = true,
        (Some(Captured), Input::Cancelled) => {
            next.cancelled = true;
            next.status = Some(RefundPending);
        }
        (Some(Pending), Input::Claimed) => next.status = Some(Charging),
        // A worker's lease ran out mid-call: its request may have reached the provider.
        (Some(Charging | InDoubt), Input::Claimed) => next.status = Some(InDoubt),
        (Some(status @ (Pending | Charging | InDoubt)), Input::Charge(result)) => {
            charge_answered(state, status, result, &mut next, &mut effects)
        }
        // A capture that answers after the payment was given up or voided (an overtaken
        // attempt, or one the reconciliation found): the money was taken, and PaymentFailed was
        // already announced; pay it back quietly.
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

/// The provider's answer to a payment not yet settled (`status` pending, charging or in doubt).
fn charge_answered(
    state: &State,
    status: Status,
    result: ChargeResult,
    next: &mut State,
    effects: &mut Vec<Effect>,
) {
    match result {
        ChargeResult::Captured { charge_id } => {
            next.charge_id = Some(charge_id.clone());
            next.status = Some(if state.cancelled {
                Status::RefundPending
            } else {
                Status::Captured
            });
            effects.push(Effect::PublishCaptured { charge_id });
        }
        ChargeResult::Declined { code } => {
            next.status = Some(Status::Failed);
            effects.push(Effect::PublishFailed {
                reason: FailureReason::Declined,
                detail: Some(code),
            });
        }
        ChargeResult::Voided { detail } => {
            if state.cancelled {
                next.status = Some(Status::Voided);
                effects.push(cancelled_failure());
            } else {
                next.status = Some(Status::Failed);
                effects.push(Effect::PublishFailed {
                    reason: FailureReason::ProviderUnavailable,
                    detail: Some(detail),
                });
            }
        }
        ChargeResult::Pending { charge_id } => {
            next.status = Some(Status::InDoubt);
            effects.push(Effect::RetryLater {
                detail: format!("charge {charge_id} is pending at the provider"),
            });
        }
        ChargeResult::NotFound => {
            next.status = Some(Status::InDoubt);
            effects.push(Effect::RetryLater {
                detail: "no charge under the payment's key yet".into(),
            });
        }
        // Surely not sent, and nothing was sent before (the payment was never in doubt):
        // nothing can have been captured, so it may be voided or given up.
        ChargeResult::Unavailable {
            detail,
            in_doubt: false,
            give_up,
        } if status != Status::InDoubt => {
            if state.cancelled {
                next.status = Some(Status::Voided);
                effects.push(cancelled_failure());
            } else if give_up {
                next.status = Some(Status::Failed);
                effects.push(Effect::PublishFailed {
                    reason: FailureReason::ProviderUnavailable,
                    detail: Some(detail),
                });
            } else {
                next.status = Some(Status::Pending);
                effects.push(Effect::RetryLater { detail });
            }
        }
        // The provider may have it: only its word settles it.
        ChargeResult::Unavailable { detail, .. } => {
            next.status = Some(Status::InDoubt);
            effects.push(Effect::RetryLater { detail });
        }
    }
}

/// What the worker asks after a lookup by key found `found` for a payment in doubt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// Void by key: the order was cancelled, or the payment waited long enough; the void's
    /// answer (voided, or the capture it could not undo) settles the payment.
    Void,
    /// No charge exists and the order still wants one: charge again under the same key.
    Charge,
}

/// After a lookup for a payment in doubt: `None` when the lookup's answer is to be recorded as
/// it is (captured, declined, voided, no answer, or pending while the order still waits).
pub fn follow_up(state: &State, give_up: bool, found: &ChargeResult) -> Option<FollowUp> {
    let stop = state.cancelled || give_up;
    match found {
        ChargeResult::NotFound | ChargeResult::Pending { .. } if stop => Some(FollowUp::Void),
        ChargeResult::NotFound => Some(FollowUp::Charge),
        _ => None,
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
