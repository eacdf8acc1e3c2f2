//! Examples of the books: replays, refunds, pending charges, voids and paging.

use std::time::Duration;

use super::*;

fn charge(key: &str, amount_minor: i64) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: key.into(),
        order_id: "o1".into(),
        customer_id: "cus_1".into(),
        amount_minor,
        currency: "EUR".into(),
    }
}

fn refund(key: &str, charge_id: &str, amount_minor: i64) -> RefundRequest {
    RefundRequest {
        idempotency_key: key.into(),
        charge_id: charge_id.into(),
        amount_minor,
    }
}

#[test]
fn a_replayed_key_returns_the_first_answer_and_a_changed_request_conflicts() {
    let mut ledger = Ledger::default();
    let first = ledger.record_charge(&charge("k", 100), NewCharge::Captured);
    assert_eq!(ledger.replay_charge(&charge("k", 100)), Some(Ok(first)));
    assert!(matches!(
        ledger.replay_charge(&charge("k", 101)),
        Some(Err(LedgerError::Conflict(_)))
    ));
    assert_eq!(ledger.replay_charge(&charge("other", 100)), None);
}

#[test]
fn refunds_never_exceed_the_captured_amount() {
    let mut ledger = Ledger::default();
    let captured = ledger.record_charge(&charge("k", 100), NewCharge::Captured);
    assert!(ledger
        .refund(&refund("r1", &captured.charge_id, 60))
        .is_ok());
    assert!(matches!(
        ledger.refund(&refund("r2", &captured.charge_id, 41)),
        Err(LedgerError::Conflict(_))
    ));
    assert!(ledger
        .refund(&refund("r3", &captured.charge_id, 40))
        .is_ok());
    assert_eq!(ledger.stats().amount_refunded_minor, 100);
    assert_eq!(ledger.charge(&captured.charge_id).unwrap().refunds.len(), 2);
}

#[test]
fn declined_and_unknown_charges_cannot_be_refunded() {
    let mut ledger = Ledger::default();
    let declined = ledger.record_charge(
        &charge("k", 100),
        NewCharge::Declined {
            code: "card_declined",
        },
    );
    assert!(matches!(
        ledger.refund(&refund("r1", &declined.charge_id, 1)),
        Err(LedgerError::Conflict(_))
    ));
    assert!(matches!(
        ledger.refund(&refund("r2", "ch_nope", 1)),
        Err(LedgerError::NotFound(_))
    ));
    assert_eq!(ledger.stats().charges_declined, 1);
    assert_eq!(ledger.stats().refunds, 0);
}

#[test]
fn a_pending_charge_replays_pending_until_it_expires_then_declined() {
    let mut ledger = Ledger::default();
    let start = Instant::now();
    let until = start + Duration::from_secs(60);
    let pending = ledger.record_charge(&charge("k", 100), NewCharge::Pending { until });
    assert_eq!(pending.status, ChargeStatus::Pending);
    assert_eq!(pending.decline_code, None);
    assert_eq!(ledger.stats().charges_pending, 1);

    ledger.expire(until - Duration::from_millis(1));
    assert_eq!(
        ledger.replay_charge(&charge("k", 100)),
        Some(Ok(pending.clone()))
    );

    ledger.expire(until);
    let expired = ledger.replay_charge(&charge("k", 100)).unwrap().unwrap();
    assert_eq!(expired.charge_id, pending.charge_id);
    assert_eq!(expired.status, ChargeStatus::Declined);
    assert_eq!(
        expired.decline_code.as_deref(),
        Some(AUTHENTICATION_TIMEOUT)
    );
    let shown = ledger.charge(&pending.charge_id).unwrap();
    assert_eq!(shown.status, ChargeStatus::Declined);
    let stats = ledger.stats();
    assert_eq!((stats.charges_pending, stats.charges_declined), (0, 1));
    assert_eq!(stats.charges_captured, 0);
}

#[test]
fn a_pending_charge_cannot_be_refunded() {
    let mut ledger = Ledger::default();
    let until = Instant::now() + Duration::from_secs(60);
    let pending = ledger.record_charge(&charge("k", 100), NewCharge::Pending { until });
    assert!(matches!(
        ledger.refund(&refund("r1", &pending.charge_id, 1)),
        Err(LedgerError::Conflict(m)) if m.contains("pending")
    ));
    assert_eq!(ledger.stats().refunds, 0);
}

#[test]
fn a_void_settles_a_pending_charge_and_leaves_a_capture_as_it_is() {
    let mut ledger = Ledger::default();
    let until = Instant::now() + Duration::from_secs(60);
    let pending = ledger.record_charge(&charge("p", 100), NewCharge::Pending { until });
    let voided = ledger.void(&charge("p", 100)).unwrap();
    assert_eq!(
        (voided.charge_id.as_str(), voided.status),
        (pending.charge_id.as_str(), ChargeStatus::Voided)
    );
    ledger.expire(until);
    assert_eq!(
        ledger.charge(&pending.charge_id).unwrap().status,
        ChargeStatus::Voided
    );

    let captured = ledger.record_charge(&charge("c", 100), NewCharge::Captured);
    assert_eq!(ledger.void(&charge("c", 100)), Ok(captured));
    assert!(matches!(
        ledger.void(&charge("c", 101)),
        Err(LedgerError::Conflict(_))
    ));
    let stats = ledger.stats();
    assert_eq!((stats.charges_pending, stats.charges_voided), (0, 1));
    assert_eq!((stats.charges_captured, stats.captured_minor), (1, 100));
}

#[test]
fn a_void_under_an_unused_key_takes_it_so_no_later_charge_captures() {
    let mut ledger = Ledger::default();
    let voided = ledger.void(&charge("k", 100)).unwrap();
    assert_eq!(voided.status, ChargeStatus::Voided);
    assert_eq!(ledger.replay_charge(&charge("k", 100)), Some(Ok(voided)));
    assert_eq!(ledger.stats().captured_minor, 0);
}

#[test]
fn charges_are_found_by_key_and_paged_in_creation_order() {
    let mut ledger = Ledger::default();
    for key in ["a", "b", "c"] {
        ledger.record_charge(&charge(key, 100), NewCharge::Captured);
    }
    assert_eq!(ledger.charge_by_key("b").unwrap().seq, 2);
    assert!(ledger.charge_by_key("z").is_none());
    let first = ledger.page(0, 2);
    let keys: Vec<_> = first
        .charges
        .iter()
        .map(|c| c.idempotency_key.as_str())
        .collect();
    assert_eq!((keys, first.next_after), (vec!["a", "b"], Some(2)));
    let last = ledger.page(2, 2);
    assert_eq!((last.charges.len(), last.next_after), (1, None));
    assert_eq!(ledger.page(3, 2).charges.len(), 0);
    assert_eq!(ledger.page(99, 2).next_after, None);
}
