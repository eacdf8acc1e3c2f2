//! Examples and properties of the payment state machine.

use proptest::prelude::*;

use super::*;

fn run(inputs: impl IntoIterator<Item = Input>) -> (State, Vec<Effect>) {
    let mut state = State::default();
    let mut all = Vec::new();
    for input in inputs {
        let (next, effects) = decide(&state, input);
        state = next;
        all.extend(effects);
    }
    (state, all)
}

fn captured(id: &str) -> Input {
    Input::Charge(ChargeResult::Captured {
        charge_id: id.into(),
    })
}

fn unavailable(in_doubt: bool, give_up: bool) -> Input {
    Input::Charge(ChargeResult::Unavailable {
        detail: "503".into(),
        in_doubt,
        give_up,
    })
}

fn pending() -> Input {
    Input::Charge(ChargeResult::Pending {
        charge_id: "ch_p".into(),
    })
}

fn voided() -> Input {
    Input::Charge(ChargeResult::Voided {
        detail: "gave up".into(),
    })
}

#[test]
fn a_reserved_order_is_charged_and_captured_once() {
    let (state, effects) = run([Input::Reserved, Input::Claimed, captured("ch_1")]);
    assert_eq!(state.status, Some(Status::Captured));
    assert_eq!(
        effects,
        [Effect::PublishCaptured {
            charge_id: "ch_1".into()
        }]
    );
}

#[test]
fn a_redelivered_reservation_changes_nothing() {
    let (state, _) = run([Input::Reserved, Input::Claimed]);
    assert_eq!(decide(&state, Input::Reserved), (state.clone(), vec![]));
}

#[test]
fn a_declined_charge_fails_with_the_providers_code() {
    let declined = Input::Charge(ChargeResult::Declined {
        code: "card_declined".into(),
    });
    let (state, effects) = run([Input::Reserved, Input::Claimed, declined]);
    assert_eq!(state.status, Some(Status::Failed));
    assert_eq!(
        effects,
        [Effect::PublishFailed {
            reason: FailureReason::Declined,
            detail: Some("card_declined".into())
        }]
    );
}

#[test]
fn an_order_cancelled_before_its_reservation_is_voided_without_a_charge() {
    let (state, effects) = run([Input::Cancelled, Input::Reserved]);
    assert_eq!(state.status, Some(Status::Voided));
    assert!(matches!(
        effects.as_slice(),
        [Effect::PublishFailed {
            reason: FailureReason::OrderCancelled,
            ..
        }]
    ));
    assert_eq!(decide(&state, Input::Claimed).0, state);
}

#[test]
fn a_capture_that_answers_after_the_cancellation_is_announced_and_refunded() {
    let (state, effects) = run([
        Input::Reserved,
        Input::Claimed,
        Input::Cancelled,
        captured("ch_1"),
    ]);
    assert_eq!(state.status, Some(Status::RefundPending));
    assert_eq!(
        effects,
        [Effect::PublishCaptured {
            charge_id: "ch_1".into()
        }]
    );
    let refunded = RefundResult::Refunded {
        refund_id: "re_1".into(),
    };
    let (state, effects) = decide(&state, Input::Refund(refunded));
    assert_eq!(state.status, Some(Status::Refunded));
    assert_eq!(
        effects,
        [Effect::PublishRefunded {
            refund_id: "re_1".into()
        }]
    );
}

#[test]
fn a_provider_that_surely_got_nothing_is_retried_until_the_payment_gives_up() {
    let (state, effects) = run([Input::Reserved, Input::Claimed, unavailable(false, false)]);
    assert_eq!(state.status, Some(Status::Pending));
    assert!(matches!(effects.as_slice(), [Effect::RetryLater { .. }]));
    let (state, effects) = run([Input::Reserved, Input::Claimed, unavailable(false, true)]);
    assert_eq!(state.status, Some(Status::Failed));
    assert!(matches!(
        effects.as_slice(),
        [Effect::PublishFailed {
            reason: FailureReason::ProviderUnavailable,
            ..
        }]
    ));
}

#[test]
fn a_charge_that_may_have_reached_the_provider_is_in_doubt_and_never_given_up_by_a_timer() {
    let (state, effects) = run([Input::Reserved, Input::Claimed, unavailable(true, true)]);
    assert_eq!(state.status, Some(Status::InDoubt));
    assert!(matches!(effects.as_slice(), [Effect::RetryLater { .. }]));
    // Not even when a later call surely reached nothing: an earlier one may have.
    let (state, _) = decide(&decide(&state, Input::Claimed).0, unavailable(false, true));
    assert_eq!(state.status, Some(Status::InDoubt));
    // Nor when the order is cancelled: the worker must ask first.
    let (state, effects) = decide(&state, Input::Cancelled);
    assert_eq!(
        (state.status, state.cancelled),
        (Some(Status::InDoubt), true)
    );
    assert!(effects.is_empty());
}

#[test]
fn a_worker_lost_mid_call_leaves_its_payment_in_doubt() {
    let (state, _) = run([Input::Reserved, Input::Claimed, Input::Claimed]);
    assert_eq!(state.status, Some(Status::InDoubt));
}

#[test]
fn a_payment_in_doubt_is_settled_by_what_the_provider_says() {
    let in_doubt = run([Input::Reserved, Input::Claimed, unavailable(true, false)]).0;
    let (state, effects) = decide(&in_doubt, captured("ch_1"));
    assert_eq!(state.status, Some(Status::Captured));
    assert_eq!(
        effects,
        [Effect::PublishCaptured {
            charge_id: "ch_1".into()
        }]
    );
    let (state, _) = decide(&in_doubt, voided());
    assert_eq!(state.status, Some(Status::Failed));
    let (state, _) = decide(&in_doubt, Input::Charge(ChargeResult::NotFound));
    assert_eq!(
        state.status,
        Some(Status::InDoubt),
        "not found is no outcome"
    );
}

#[test]
fn a_lookup_that_does_not_settle_is_followed_by_a_void_or_a_charge_under_the_same_key() {
    let in_doubt = run([Input::Reserved, Input::Claimed, unavailable(true, false)]).0;
    let not_found = ChargeResult::NotFound;
    let pending = ChargeResult::Pending {
        charge_id: "ch_p".into(),
    };
    assert_eq!(
        follow_up(&in_doubt, false, &not_found),
        Some(FollowUp::Charge)
    );
    assert_eq!(follow_up(&in_doubt, false, &pending), None, "keep asking");
    assert_eq!(follow_up(&in_doubt, true, &pending), Some(FollowUp::Void));
    assert_eq!(follow_up(&in_doubt, true, &not_found), Some(FollowUp::Void));
    let cancelled = decide(&in_doubt, Input::Cancelled).0;
    assert_eq!(
        follow_up(&cancelled, false, &not_found),
        Some(FollowUp::Void)
    );
    let found = ChargeResult::Captured {
        charge_id: "ch_1".into(),
    };
    assert_eq!(follow_up(&cancelled, true, &found), None);
}

#[test]
fn a_pending_charge_is_in_doubt_until_the_provider_settles_or_voids_it() {
    let (state, effects) = run([Input::Reserved, Input::Claimed, pending()]);
    assert_eq!(state.status, Some(Status::InDoubt));
    assert_eq!(state.charge_id, None, "pending is not captured");
    assert_eq!(
        effects,
        [Effect::RetryLater {
            detail: "charge ch_p is pending at the provider".into()
        }]
    );
    let (state, effects) = decide(&decide(&state, Input::Claimed).0, voided());
    assert_eq!(state.status, Some(Status::Failed));
    assert_eq!(state.charge_id, None);
    assert_eq!(
        effects,
        [Effect::PublishFailed {
            reason: FailureReason::ProviderUnavailable,
            detail: Some("gave up".into())
        }]
    );
}

#[test]
fn a_pending_charge_of_a_cancelled_order_is_voided_at_the_provider_before_it_is_voided_here() {
    let (state, effects) = run([Input::Reserved, Input::Claimed, pending(), Input::Cancelled]);
    assert_eq!(
        (state.status, state.cancelled),
        (Some(Status::InDoubt), true)
    );
    assert!(matches!(effects.as_slice(), [Effect::RetryLater { .. }]));
    let (state, effects) = decide(&state, voided());
    assert_eq!(
        (state.status, state.charge_id),
        (Some(Status::Voided), None)
    );
    assert!(matches!(
        effects.as_slice(),
        [Effect::PublishFailed {
            reason: FailureReason::OrderCancelled,
            ..
        }]
    ));
}

#[test]
fn giving_up_waits_the_whole_time() {
    use std::time::Duration;
    assert!(!gives_up(
        Duration::from_secs(119),
        Duration::from_secs(120)
    ));
    assert!(gives_up(Duration::from_secs(120), Duration::from_secs(120)));
}

#[test]
fn statuses_round_trip_through_text() {
    for status in Status::ALL {
        assert_eq!(Status::parse(status.as_str()), Some(status));
    }
    assert_eq!(Status::parse("paid"), None);
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        Just(Input::Reserved),
        Just(Input::Cancelled),
        Just(Input::Claimed),
        "ch_[a-c]".prop_map(|charge_id| Input::Charge(ChargeResult::Captured { charge_id })),
        Just(Input::Charge(ChargeResult::Declined {
            code: "card_declined".into()
        })),
        (any::<bool>(), any::<bool>())
            .prop_map(|(in_doubt, give_up)| unavailable(in_doubt, give_up)),
        Just(pending()),
        Just(voided()),
        Just(Input::Charge(ChargeResult::NotFound)),
        "re_[a-c]".prop_map(|refund_id| Input::Refund(RefundResult::Refunded { refund_id })),
        Just(Input::Refund(RefundResult::NotYet {
            detail: "503".into()
        })),
    ]
}

/// Money moved by one step: (captured, refunded), one unit per capture or refund.
fn money(before: &State, after: &State) -> (u32, u32) {
    (
        u32::from(before.charge_id.is_none() && after.charge_id.is_some()),
        u32::from(before.refund_id.is_none() && after.refund_id.is_some()),
    )
}

proptest! {
    #[test]
    fn a_payment_is_captured_at_most_once(inputs in prop::collection::vec(input(), 0..40)) {
        let mut state = State::default();
        let (mut captures, mut announced) = (0, 0);
        for input in inputs {
            let (next, effects) = decide(&state, input);
            captures += money(&state, &next).0;
            if let Some(before) = &state.charge_id {
                prop_assert_eq!(next.charge_id.as_ref(), Some(before));
            }
            announced += effects
                .iter()
                .filter(|e| matches!(e, Effect::PublishCaptured { .. }))
                .count();
            state = next;
        }
        prop_assert!(captures <= 1);
        prop_assert!(announced <= 1);
    }

    #[test]
    fn a_capture_of_a_cancelled_order_is_always_refunded(inputs in prop::collection::vec(input(), 0..40)) {
        let mut state = State::default();
        for input in inputs {
            state = decide(&state, input).0;
            if state.cancelled && state.charge_id.is_some() {
                prop_assert!(matches!(
                    state.status,
                    Some(Status::RefundPending | Status::Refunded)
                ));
            }
        }
        // Once owed, a successful refund settles it.
        if state.status == Some(Status::RefundPending) {
            let refunded = RefundResult::Refunded { refund_id: "re_z".into() };
            let (done, effects) = decide(&state, Input::Refund(refunded));
            prop_assert_eq!(done.status, Some(Status::Refunded));
            prop_assert_eq!(effects.len(), 1);
        }
    }

    #[test]
    fn a_final_state_publishes_nothing(inputs in prop::collection::vec(input(), 0..40), last in input()) {
        let state = run(inputs).0;
        if state.status.is_some_and(Status::is_final) {
            let (next, effects) = decide(&state, last);
            prop_assert!(effects.iter().all(|e| !e.is_event()), "{:?}", effects);
            // Only a late capture leaves a final state, to pay the money back.
            if next.status != state.status {
                prop_assert_eq!(next.status, Some(Status::RefundPending));
            }
        }
    }

    #[test]
    fn nothing_is_refunded_that_was_not_captured(inputs in prop::collection::vec(input(), 0..40)) {
        let mut state = State::default();
        let (mut captured, mut refunded) = (0u32, 0u32);
        for input in inputs {
            let (next, _) = decide(&state, input);
            let (c, r) = money(&state, &next);
            captured += c;
            refunded += r;
            prop_assert!(captured >= refunded);
            state = next;
        }
    }

    #[test]
    fn every_reservation_gets_exactly_one_outcome_event(inputs in prop::collection::vec(input(), 0..40)) {
        // PaymentCaptured or PaymentFailed, never both, never twice.
        let (_, effects) = run(std::iter::once(Input::Reserved).chain(inputs));
        let outcomes = effects
            .iter()
            .filter(|e| matches!(e, Effect::PublishCaptured { .. } | Effect::PublishFailed { .. }))
            .count();
        prop_assert!(outcomes <= 1);
    }

    #[test]
    fn no_unknown_outcome_ever_becomes_failed_or_voided_without_the_provider_saying_so(
        inputs in prop::collection::vec(input(), 0..40),
    ) {
        // Once a charge request may have reached the provider, the payment leaves "not settled"
        // for failed or voided only on the provider's definite word: declined, or voided (by a
        // void whose answer says nothing was captured).
        let mut state = State::default();
        let mut may_exist = false;
        for input in inputs {
            let definite_no = matches!(
                input,
                Input::Charge(ChargeResult::Declined { .. } | ChargeResult::Voided { .. })
            );
            let (next, _) = decide(&state, input.clone());
            let unsettled = matches!(
                state.status,
                Some(Status::Pending | Status::Charging | Status::InDoubt)
            );
            if may_exist && unsettled && matches!(next.status, Some(Status::Failed | Status::Voided)) {
                prop_assert!(definite_no, "{:?} -> {:?} on {:?}", state.status, next.status, input);
            }
            if next.status == Some(Status::InDoubt) {
                may_exist = true;
            }
            if let Input::Charge(ChargeResult::Unavailable { in_doubt: true, .. }) = input {
                may_exist |= unsettled;
            }
            state = next;
        }
    }
}
