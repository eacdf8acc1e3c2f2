//! The simulator's books, in memory: charges in the order they were made, refunds, the
//! idempotency keys each was made under, and the running totals `/stats` reports. A charge is
//! found by its id, by its idempotency key, or paged through in creation order; a void by key
//! settles a charge that is pending, or takes a key no charge was made under so that no later
//! charge under it can capture. Plain data, no I/O, no locking and no clock of its own: the HTTP
//! layer holds it behind a mutex and tells it the time, so pending charges whose time ran out are
//! declined ([`Ledger::expire`]) before anyone looks.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use serde::Serialize;

use crate::request::{ChargeRequest, RefundRequest};

/// The decline code of a pending charge whose customer never authenticated.
pub const AUTHENTICATION_TIMEOUT: &str = "authentication_timeout";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChargeStatus {
    Captured,
    Declined,
    /// Waiting for the customer to authenticate; declined when the pending time is over.
    Pending,
    /// Voided by the merchant before any capture: nothing was taken, and nothing can be under
    /// its idempotency key.
    Voided,
}

/// How a new charge is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewCharge<'a> {
    Captured,
    Declined {
        code: &'a str,
    },
    /// Pending until `until`, then declined with [`AUTHENTICATION_TIMEOUT`].
    Pending {
        until: Instant,
    },
    /// A void under a key no charge was made under: the key is taken, nothing is captured.
    Voided,
}

/// The answer to a charge: its current state, which a repeated request with the same
/// idempotency key also gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChargeAnswer {
    pub charge_id: String,
    pub status: ChargeStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
}

/// The answer to a refund, stored under its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefundAnswer {
    pub refund_id: String,
    pub status: &'static str,
}

/// A charge as `GET /v1/charges/{id}` and `GET /v1/charges` show it.
#[derive(Debug, Clone, Serialize)]
pub struct Charge {
    pub charge_id: String,
    /// Its place in creation order, from 1: the cursor of `GET /v1/charges?after=`.
    pub seq: u64,
    pub idempotency_key: String,
    pub order_id: String,
    pub customer_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: ChargeStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    pub refunded_minor: i64,
    pub refunds: Vec<Refund>,
}

impl Charge {
    fn answer(&self) -> ChargeAnswer {
        ChargeAnswer {
            charge_id: self.charge_id.clone(),
            status: self.status,
            decline_code: self.decline_code.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Refund {
    pub refund_id: String,
    pub amount_minor: i64,
}

/// One page of charges in creation order (`GET /v1/charges`).
#[derive(Debug, Clone, Serialize)]
pub struct ChargePage {
    pub charges: Vec<Charge>,
    /// The `after` of the next page; `None` when this page is the last.
    pub next_after: Option<u64>,
}

/// Running totals, for comparing with the shop's own numbers. Amounts add up minor units
/// across currencies; `charges_pending` is how many are pending now (an expired one moves to
/// `charges_declined`, a voided one to `charges_voided`). `captured_minor` and `refunded_minor`
/// are the money the books hold (the same sums as `amount_captured_minor` and
/// `amount_refunded_minor`, kept for older readers): captured minus refunded is what the shop
/// kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub charges_captured: u64,
    pub charges_declined: u64,
    pub charges_pending: u64,
    pub charges_voided: u64,
    pub refunds: u64,
    pub injected_failures: u64,
    /// Charge answers held back by the `answer_after_ms` fault.
    pub late_answers: u64,
    pub amount_captured_minor: i64,
    pub amount_refunded_minor: i64,
    pub captured_minor: i64,
    pub refunded_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

#[derive(Debug, Default)]
pub struct Ledger {
    charges: HashMap<String, Charge>,
    /// Charge ids in creation order; a charge's `seq` is its index plus one.
    created: Vec<String>,
    /// The first request under each key, and the id of the charge it made.
    charge_keys: HashMap<String, (ChargeRequest, String)>,
    refund_keys: HashMap<String, (RefundRequest, RefundAnswer)>,
    /// Pending charges by the time they are declined.
    pending: BTreeSet<(Instant, String)>,
    stats: Stats,
}

impl Ledger {
    /// Declines the pending charges whose time is over at `now` (code
    /// [`AUTHENTICATION_TIMEOUT`]).
    pub fn expire(&mut self, now: Instant) {
        while let Some(first) = self.pending.first() {
            if first.0 > now {
                break;
            }
            let (_, charge_id) = self.pending.pop_first().expect("a first entry");
            if let Some(charge) = self.charges.get_mut(&charge_id) {
                charge.status = ChargeStatus::Declined;
                charge.decline_code = Some(AUTHENTICATION_TIMEOUT.into());
                self.stats.charges_pending -= 1;
                self.stats.charges_declined += 1;
            }
        }
    }

    /// The charge's current state when this idempotency key was seen before; a conflict when
    /// it came with a different request.
    pub fn replay_charge(&self, req: &ChargeRequest) -> Option<Result<ChargeAnswer, LedgerError>> {
        let (first, charge_id) = self.charge_keys.get(&req.idempotency_key)?;
        Some(if first != req {
            Err(reused_key(&req.idempotency_key))
        } else {
            Ok(self.charges[charge_id].answer())
        })
    }

    /// Records a new charge in the state `new` says.
    pub fn record_charge(&mut self, req: &ChargeRequest, new: NewCharge<'_>) -> ChargeAnswer {
        let charge_id = format!("ch_{}", uuid::Uuid::new_v4().simple());
        let (status, decline_code) = match new {
            NewCharge::Captured => {
                self.stats.charges_captured += 1;
                self.stats.amount_captured_minor += req.amount_minor;
                self.stats.captured_minor += req.amount_minor;
                (ChargeStatus::Captured, None)
            }
            NewCharge::Declined { code } => {
                self.stats.charges_declined += 1;
                (ChargeStatus::Declined, Some(code.to_owned()))
            }
            NewCharge::Pending { until } => {
                self.stats.charges_pending += 1;
                self.pending.insert((until, charge_id.clone()));
                (ChargeStatus::Pending, None)
            }
            NewCharge::Voided => {
                self.stats.charges_voided += 1;
                (ChargeStatus::Voided, None)
            }
        };
        self.created.push(charge_id.clone());
        let charge = Charge {
            charge_id: charge_id.clone(),
            seq: self.created.len() as u64,
            idempotency_key: req.idempotency_key.clone(),
            order_id: req.order_id.clone(),
            customer_id: req.customer_id.clone(),
            amount_minor: req.amount_minor,
            currency: req.currency.clone(),
            status,
            decline_code,
            refunded_minor: 0,
            refunds: Vec::new(),
        };
        let answer = charge.answer();
        self.charges.insert(charge_id.clone(), charge);
        self.charge_keys
            .insert(req.idempotency_key.clone(), (req.clone(), charge_id));
        answer
    }

    /// Counts an injected failure; nothing else is recorded.
    pub fn record_failure(&mut self) {
        self.stats.injected_failures += 1;
    }

    /// Counts a charge answer held back past the client's patience.
    pub fn record_late_answer(&mut self) {
        self.stats.late_answers += 1;
    }

    /// Voids the charge made under the request's idempotency key, as a processor's cancel by
    /// merchant reference does: a pending charge becomes voided; a captured, declined or voided
    /// one stays as it is (the answer says which); a key no charge was made under is taken by a
    /// voided charge, so a charge request still on its way can never capture under it. A key
    /// used with a different request conflicts.
    pub fn void(&mut self, req: &ChargeRequest) -> Result<ChargeAnswer, LedgerError> {
        let Some((first, charge_id)) = self.charge_keys.get(&req.idempotency_key) else {
            return Ok(self.record_charge(req, NewCharge::Voided));
        };
        if first != req {
            return Err(reused_key(&req.idempotency_key));
        }
        let charge = self
            .charges
            .get_mut(charge_id)
            .expect("a keyed charge exists");
        if charge.status == ChargeStatus::Pending {
            charge.status = ChargeStatus::Voided;
            self.pending.retain(|(_, id)| id != &charge.charge_id);
            self.stats.charges_pending -= 1;
            self.stats.charges_voided += 1;
        }
        Ok(charge.answer())
    }

    /// The charge made under `key`, if any.
    pub fn charge_by_key(&self, key: &str) -> Option<&Charge> {
        let (_, charge_id) = self.charge_keys.get(key)?;
        self.charges.get(charge_id)
    }

    /// Up to `limit` charges made after the `after`-th (0: from the first), in creation order.
    pub fn page(&self, after: u64, limit: usize) -> ChargePage {
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(self.created.len());
        let ids = &self.created[start..];
        let charges: Vec<Charge> = ids
            .iter()
            .take(limit)
            .map(|id| self.charges[id].clone())
            .collect();
        let next_after = (ids.len() > charges.len()).then(|| (start + charges.len()) as u64);
        ChargePage {
            charges,
            next_after,
        }
    }

    /// Refunds part or all of a captured charge, or replays the answer stored under the key.
    pub fn refund(&mut self, req: &RefundRequest) -> Result<RefundAnswer, LedgerError> {
        if let Some((first, answer)) = self.refund_keys.get(&req.idempotency_key) {
            return if first == req {
                Ok(answer.clone())
            } else {
                Err(reused_key(&req.idempotency_key))
            };
        }
        let charge = self
            .charges
            .get_mut(&req.charge_id)
            .ok_or_else(|| LedgerError::NotFound(format!("no charge {}", req.charge_id)))?;
        match charge.status {
            ChargeStatus::Captured => {}
            ChargeStatus::Declined => {
                return Err(LedgerError::Conflict(format!(
                    "charge {} was declined; there is nothing to refund",
                    req.charge_id
                )))
            }
            ChargeStatus::Pending => {
                return Err(LedgerError::Conflict(format!(
                    "charge {} is pending; there is nothing to refund yet",
                    req.charge_id
                )))
            }
            ChargeStatus::Voided => {
                return Err(LedgerError::Conflict(format!(
                    "charge {} was voided; there is nothing to refund",
                    req.charge_id
                )))
            }
        }
        let refundable = charge.amount_minor - charge.refunded_minor;
        if req.amount_minor > refundable {
            return Err(LedgerError::Conflict(format!(
                "refund of {} exceeds the {refundable} still refundable on {}",
                req.amount_minor, req.charge_id
            )));
        }
        let answer = RefundAnswer {
            refund_id: format!("re_{}", uuid::Uuid::new_v4().simple()),
            status: "refunded",
        };
        charge.refunded_minor += req.amount_minor;
        charge.refunds.push(Refund {
            refund_id: answer.refund_id.clone(),
            amount_minor: req.amount_minor,
        });
        self.stats.refunds += 1;
        self.stats.amount_refunded_minor += req.amount_minor;
        self.stats.refunded_minor += req.amount_minor;
        self.refund_keys
            .insert(req.idempotency_key.clone(), (req.clone(), answer.clone()));
        Ok(answer)
    }

    pub fn charge(&self, charge_id: &str) -> Option<&Charge> {
        self.charges.get(charge_id)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

fn reused_key(key: &str) -> LedgerError {
    LedgerError::Conflict(format!(
        "idempotency key {key:?} was already used with a different request"
    ))
}

#[cfg(test)]
mod tests {
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
}
