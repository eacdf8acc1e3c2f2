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
mod tests;
