//! Reconciliation, pure: one charge of the provider's ledger against the payment made under its
//! idempotency key (the payment id). [`verdict`] says whether the books agree, whether one side
//! is still settling (look again later), whether the provider holds a capture our payment does
//! not know (record it: [`super::decide`] then owes it back), or whether the difference is one
//! no rule can fix and a person must look at. The loop that pages through the ledger and applies
//! the verdicts is [`crate::reconciler`].

use super::{State, Status};

/// A charge's status in the provider's ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderStatus {
    Captured,
    Declined,
    Pending,
    Voided,
}

/// A charge as the provider's ledger shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCharge {
    pub charge_id: String,
    pub status: ProviderStatus,
    pub amount_minor: i64,
    pub refunded_minor: i64,
}

/// Our payment under the charge's key, as far as reconciliation looks at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ours {
    pub state: State,
    pub amount_minor: i64,
}

/// A difference no rule fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// A capture under a key that is no payment of ours.
    UnknownCharge,
    /// Our payment names another charge than the one made under its key (or none, while it
    /// holds the payment captured).
    ChargeIdDiffers,
    /// The provider captured another amount than the payment's.
    AmountDiffers,
    /// We hold the payment captured (or refunded) but the provider declined or voided it.
    CapturedOnlyHere,
    /// We hold the payment refunded but the provider did not refund the capture in full.
    RefundedOnlyHere,
}

impl Mismatch {
    /// The metric label and log word.
    pub fn as_str(self) -> &'static str {
        match self {
            Mismatch::UnknownCharge => "unknown_charge",
            Mismatch::ChargeIdDiffers => "charge_id_differs",
            Mismatch::AmountDiffers => "amount_differs",
            Mismatch::CapturedOnlyHere => "captured_only_here",
            Mismatch::RefundedOnlyHere => "refunded_only_here",
        }
    }
}

/// What reconciliation does with one charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The books agree; this charge needs no second look.
    Agree,
    /// One side is still settling (a charge pending at the provider, a payment a worker is
    /// still settling): look again next time.
    Unsettled,
    /// The provider holds a capture our payment does not know (it ended failed or voided):
    /// record it as a late capture, which makes it owed back (refunded by the worker, with
    /// PaymentRefunded).
    RecordCapture,
    /// A difference for a person: log it and count it.
    Report(Mismatch),
}

/// Compares `charge` with our payment made under its key (`None`: no payment has that id).
pub fn verdict(charge: &ProviderCharge, ours: Option<&Ours>) -> Verdict {
    use Status::*;
    let paid_back = charge.refunded_minor >= charge.amount_minor;
    let Some(ours) = ours else {
        return match charge.status {
            ProviderStatus::Captured if !paid_back => Verdict::Report(Mismatch::UnknownCharge),
            _ => Verdict::Agree,
        };
    };
    let status = ours.state.status.unwrap_or(Pending);
    let settling = matches!(status, Pending | Charging | InDoubt);
    let ours_id = ours.state.charge_id.as_deref();
    if ours_id.is_some_and(|id| id != charge.charge_id) {
        return Verdict::Report(Mismatch::ChargeIdDiffers);
    }
    match charge.status {
        ProviderStatus::Pending => Verdict::Unsettled,
        ProviderStatus::Captured if charge.amount_minor != ours.amount_minor => {
            Verdict::Report(Mismatch::AmountDiffers)
        }
        ProviderStatus::Captured if settling => Verdict::Unsettled,
        ProviderStatus::Captured if ours_id.is_none() => match status {
            Failed | Voided if paid_back => Verdict::Agree,
            Failed | Voided => Verdict::RecordCapture,
            // Captured or refunded here without naming the charge: not a state we write.
            _ => Verdict::Report(Mismatch::ChargeIdDiffers),
        },
        ProviderStatus::Captured if status == Refunded && !paid_back => {
            Verdict::Report(Mismatch::RefundedOnlyHere)
        }
        ProviderStatus::Captured => Verdict::Agree,
        ProviderStatus::Declined | ProviderStatus::Voided if settling => Verdict::Unsettled,
        ProviderStatus::Declined | ProviderStatus::Voided if ours_id.is_some() => {
            Verdict::Report(Mismatch::CapturedOnlyHere)
        }
        ProviderStatus::Declined | ProviderStatus::Voided => Verdict::Agree,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::{decide, ChargeResult, Input};

    fn charge(status: ProviderStatus, refunded_minor: i64) -> ProviderCharge {
        ProviderCharge {
            charge_id: "ch_1".into(),
            status,
            amount_minor: 100,
            refunded_minor,
        }
    }

    fn ours(status: Status, charge_id: Option<&str>) -> Ours {
        Ours {
            state: State {
                status: Some(status),
                cancelled: false,
                charge_id: charge_id.map(Into::into),
                refund_id: None,
            },
            amount_minor: 100,
        }
    }

    #[test]
    fn a_capture_behind_a_voided_payment_is_recorded_and_then_agrees() {
        let captured = charge(ProviderStatus::Captured, 0);
        let voided = ours(Status::Voided, None);
        assert_eq!(verdict(&captured, Some(&voided)), Verdict::RecordCapture);

        let (state, effects) = decide(
            &voided.state,
            Input::Charge(ChargeResult::Captured {
                charge_id: "ch_1".into(),
            }),
        );
        assert_eq!(state.status, Some(Status::RefundPending));
        assert!(effects.is_empty(), "PaymentFailed was announced already");
        let recorded = Ours { state, ..voided };
        assert_eq!(verdict(&captured, Some(&recorded)), Verdict::Agree);
    }

    #[test]
    fn a_payment_still_settling_is_looked_at_again_later() {
        for status in [Status::Pending, Status::Charging, Status::InDoubt] {
            for provider in [ProviderStatus::Captured, ProviderStatus::Declined] {
                assert_eq!(
                    verdict(&charge(provider, 0), Some(&ours(status, None))),
                    Verdict::Unsettled
                );
            }
        }
        let pending = charge(ProviderStatus::Pending, 0);
        assert_eq!(
            verdict(&pending, Some(&ours(Status::Failed, None))),
            Verdict::Unsettled
        );
    }

    #[test]
    fn differences_no_rule_fixes_are_reported() {
        let captured = charge(ProviderStatus::Captured, 0);
        assert_eq!(
            verdict(&captured, None),
            Verdict::Report(Mismatch::UnknownCharge)
        );
        assert_eq!(
            verdict(&captured, Some(&ours(Status::Captured, Some("ch_2")))),
            Verdict::Report(Mismatch::ChargeIdDiffers)
        );
        assert_eq!(
            verdict(&captured, Some(&ours(Status::Refunded, Some("ch_1")))),
            Verdict::Report(Mismatch::RefundedOnlyHere)
        );
        assert_eq!(
            verdict(
                &charge(ProviderStatus::Declined, 0),
                Some(&ours(Status::Captured, Some("ch_1")))
            ),
            Verdict::Report(Mismatch::CapturedOnlyHere)
        );
        let more = Ours {
            amount_minor: 90,
            ..ours(Status::Captured, Some("ch_1"))
        };
        assert_eq!(
            verdict(&captured, Some(&more)),
            Verdict::Report(Mismatch::AmountDiffers)
        );
    }

    #[test]
    fn a_capture_paid_back_in_full_agrees_with_a_failed_payment() {
        let refunded = charge(ProviderStatus::Captured, 100);
        assert_eq!(
            verdict(&refunded, Some(&ours(Status::Failed, None))),
            Verdict::Agree
        );
        assert_eq!(verdict(&refunded, None), Verdict::Agree);
    }

    fn provider_status() -> impl Strategy<Value = ProviderStatus> {
        prop_oneof![
            Just(ProviderStatus::Captured),
            Just(ProviderStatus::Declined),
            Just(ProviderStatus::Pending),
            Just(ProviderStatus::Voided),
        ]
    }

    fn any_ours() -> impl Strategy<Value = Ours> {
        (
            prop::sample::select(Status::ALL.to_vec()),
            any::<bool>(),
            prop::option::of(prop::sample::select(vec!["ch_1", "ch_2"])),
            prop::sample::select(vec![90i64, 100]),
        )
            .prop_map(|(status, cancelled, charge_id, amount_minor)| Ours {
                state: State {
                    status: Some(status),
                    cancelled,
                    charge_id: charge_id.map(Into::into),
                    refund_id: None,
                },
                amount_minor,
            })
    }

    proptest! {
        #[test]
        fn reconciliation_records_only_captures_our_payment_ended_without(
            status in provider_status(),
            refunded_minor in prop::sample::select(vec![0i64, 50, 100]),
            ours in any_ours(),
        ) {
            let charge = ProviderCharge { refunded_minor, ..charge(status, 0) };
            let found = verdict(&charge, Some(&ours));
            if found == Verdict::RecordCapture {
                prop_assert_eq!(status, ProviderStatus::Captured);
                prop_assert!(ours.state.charge_id.is_none());
                prop_assert!(matches!(ours.state.status, Some(Status::Failed | Status::Voided)));
                // Recording it makes it owed back, and the books then agree.
                let (state, _) = decide(
                    &ours.state,
                    Input::Charge(ChargeResult::Captured { charge_id: charge.charge_id.clone() }),
                );
                prop_assert_eq!(state.status, Some(Status::RefundPending));
                prop_assert_eq!(verdict(&charge, Some(&Ours { state, ..ours })), Verdict::Agree);
            }
            // A payment a worker is still settling is never touched.
            if matches!(ours.state.status, Some(Status::Pending | Status::Charging | Status::InDoubt)) {
                prop_assert!(matches!(found, Verdict::Unsettled | Verdict::Report(_)));
            }
        }
    }
}
