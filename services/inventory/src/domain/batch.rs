//! A batch of saga events decided in memory, in order, against one locked reading of the stock
//! and of the batch's stored reservations.
//!
//! This is what lets a flash sale through: every order of a hot SKU needs that SKU's stock row,
//! and a batch takes the row once, decides all its orders here, and writes the row once, so the
//! row is held for a few statements and a commit per *batch* rather than per order. Later
//! events of a batch see what earlier ones decided (an order placed and cancelled in one batch
//! is reserved, then released).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use shop_events::values::Sku;
use shop_events::ReleaseReason;

use super::{
    reserve, settle, Levels, NotHeld, Rejection, Request, Reservation, Settlement, Shortfall,
    Status,
};

/// One event of a batch, as the inventory reads it.
#[derive(Debug, Clone)]
pub enum Step {
    /// `OrderPlaced`: reserve every line or none.
    Place(Request),
    /// `PaymentFailed`, `OrderCancelled` (release) or `OrderConfirmed` (sell).
    Settle {
        order_id: String,
        settlement: Settlement,
    },
    /// An event the inventory has nothing to do with.
    Other,
}

/// A reservation as stored, or as decided earlier in the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub reservation_id: Option<String>,
    pub status: Status,
    pub items: BTreeMap<Sku, i32>,
}

/// What one step decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Reserved {
        reservation_id: String,
    },
    Rejected {
        reason: Rejection,
        shortfalls: Vec<Shortfall>,
    },
    Settled {
        reservation_id: Option<String>,
        items: BTreeMap<Sku, i32>,
        settlement: Settlement,
    },
    /// Nothing to do (an order seen before, no reservation, one not held): why.
    PassedOver(&'static str),
}

/// Why a reservation row says what it says, for its `reason` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Rejected(Rejection),
    Released(ReleaseReason),
}

/// A reservation row to write: a new one (`new`: from the `Place` step at that index) or a
/// stored one whose status changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub order_id: String,
    pub held: Held,
    pub new: Option<usize>,
    pub reason: Option<Reason>,
}

/// The batch's decisions, one per step, and what to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub decisions: Vec<Decision>,
    /// Reservation rows to insert or update, by order id.
    pub rows: BTreeMap<String, Row>,
    /// The new levels of every SKU the batch changed.
    pub levels: BTreeMap<Sku, Levels>,
}

/// Decides `steps` in order. `stored` holds the stored reservations of the batch's orders and
/// `stock` the levels of every SKU they touch; `new_id` names each new reservation. Fails with
/// the index of a step whose stored state breaks an invariant (held units that are not there).
pub fn plan(
    steps: &[Step],
    stored: &HashMap<String, Held>,
    stock: &BTreeMap<Sku, Levels>,
    mut new_id: impl FnMut() -> String,
) -> Result<Plan, (usize, NotHeld)> {
    let mut stock = stock.clone();
    let mut changed = BTreeSet::new();
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut decisions = Vec::with_capacity(steps.len());
    for (index, step) in steps.iter().enumerate() {
        let decision = match step {
            Step::Other => Decision::PassedOver("not for inventory"),
            Step::Place(request) => {
                let order_id = request.order_id.as_str();
                if rows.contains_key(order_id) || stored.contains_key(order_id) {
                    Decision::PassedOver("order already seen")
                } else {
                    let (held, reason, decision) = match reserve(&request.items, &stock) {
                        Reservation::Reserve(levels) => {
                            changed.extend(levels.keys().cloned());
                            stock.extend(levels);
                            let reservation_id = new_id();
                            let held = Held {
                                reservation_id: Some(reservation_id.clone()),
                                status: Status::Reserved,
                                items: request.items.clone(),
                            };
                            (held, None, Decision::Reserved { reservation_id })
                        }
                        Reservation::Reject { reason, shortfalls } => {
                            let held = Held {
                                reservation_id: None,
                                status: Status::Rejected,
                                items: request.items.clone(),
                            };
                            let decision = Decision::Rejected { reason, shortfalls };
                            (held, Some(Reason::Rejected(reason)), decision)
                        }
                    };
                    let row = Row {
                        order_id: order_id.to_owned(),
                        held,
                        new: Some(index),
                        reason,
                    };
                    rows.insert(order_id.to_owned(), row);
                    decision
                }
            }
            Step::Settle {
                order_id,
                settlement,
            } => {
                let current = match rows.get(order_id) {
                    Some(row) => Some((row.held.clone(), row.new)),
                    None => stored.get(order_id).map(|held| (held.clone(), None)),
                };
                match current {
                    None => Decision::PassedOver("no reservation for this order"),
                    Some((held, new)) => match held.status.settle(*settlement) {
                        None => Decision::PassedOver("reservation not held"),
                        Some(next) => {
                            let levels = settle(*settlement, &held.items, &stock)
                                .map_err(|broken| (index, broken))?;
                            changed.extend(levels.keys().cloned());
                            stock.extend(levels);
                            let decision = Decision::Settled {
                                reservation_id: held.reservation_id.clone(),
                                items: held.items.clone(),
                                settlement: *settlement,
                            };
                            let reason = match settlement {
                                Settlement::Release(why) => Some(Reason::Released(*why)),
                                Settlement::Sell => None,
                            };
                            let row = Row {
                                order_id: order_id.clone(),
                                held: Held {
                                    status: next,
                                    ..held
                                },
                                new,
                                reason,
                            };
                            rows.insert(order_id.clone(), row);
                            decision
                        }
                    },
                }
            }
        };
        decisions.push(decision);
    }
    let levels = changed
        .into_iter()
        .map(|sku| {
            let levels = stock[&sku];
            (sku, levels)
        })
        .collect();
    Ok(Plan {
        decisions,
        rows,
        levels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use shop_events::values::{Currency, Money, OrderId};

    use crate::domain::tests::{levels, sku};

    fn place(order: &str, lines: &[(&str, i32)]) -> Step {
        Step::Place(Request {
            order_id: OrderId::parse(order).unwrap(),
            items: lines.iter().map(|(s, q)| (sku(s), *q)).collect(),
            total: Money::new(100, Currency::parse("EUR").unwrap()).unwrap(),
        })
    }

    fn settle_step(order: &str, settlement: Settlement) -> Step {
        Step::Settle {
            order_id: order.to_owned(),
            settlement,
        }
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("res-{n}")
        }
    }

    /// A stored reservation of one unit of SKU `A` for `order`.
    fn one_of_a(order: &str, status: Status) -> HashMap<String, Held> {
        let held = Held {
            reservation_id: Some("r".into()),
            status,
            items: BTreeMap::from([(sku("A"), 1)]),
        };
        HashMap::from([(order.to_owned(), held)])
    }

    const CANCELLED: Settlement = Settlement::Release(ReleaseReason::OrderCancelled);

    #[test]
    fn orders_of_a_hot_sku_are_served_in_order_until_it_runs_out() {
        let stock = BTreeMap::from([(sku("HOT-1"), levels(2))]);
        let steps = [
            place("o-1", &[("HOT-1", 1)]),
            place("o-2", &[("HOT-1", 1)]),
            place("o-3", &[("HOT-1", 1)]),
        ];
        let plan = plan(&steps, &HashMap::new(), &stock, ids()).unwrap();
        assert!(matches!(plan.decisions[0], Decision::Reserved { .. }));
        assert!(matches!(plan.decisions[1], Decision::Reserved { .. }));
        assert!(matches!(
            plan.decisions[2],
            Decision::Rejected {
                reason: Rejection::OutOfStock,
                ..
            }
        ));
        assert_eq!(plan.levels[&sku("HOT-1")].available, 0);
        assert_eq!(plan.levels[&sku("HOT-1")].reserved, 2);
        assert_eq!(plan.rows["o-3"].held.status, Status::Rejected);
    }

    #[test]
    fn an_order_placed_and_cancelled_in_one_batch_is_inserted_released() {
        let stock = BTreeMap::from([(sku("A"), levels(5))]);
        let steps = [place("o-1", &[("A", 2)]), settle_step("o-1", CANCELLED)];
        let plan = plan(&steps, &HashMap::new(), &stock, ids()).unwrap();
        assert!(matches!(plan.decisions[1], Decision::Settled { .. }));
        let row = &plan.rows["o-1"];
        assert_eq!((row.held.status, row.new), (Status::Released, Some(0)));
        assert_eq!(plan.levels[&sku("A")], levels(5));
    }

    #[test]
    fn a_second_placement_and_a_settlement_of_nothing_are_passed_over() {
        let stock = BTreeMap::from([(sku("A"), levels(5))]);
        let stored = one_of_a("o-1", Status::Sold);
        let steps = [
            place("o-1", &[("A", 1)]),
            settle_step("o-1", CANCELLED),
            settle_step("o-2", Settlement::Sell),
            Step::Other,
        ];
        let plan = plan(&steps, &stored, &stock, ids()).unwrap();
        assert!(plan
            .decisions
            .iter()
            .all(|d| matches!(d, Decision::PassedOver(_))));
        assert!(plan.rows.is_empty() && plan.levels.is_empty());
    }

    #[test]
    fn held_units_that_are_missing_fail_the_step_that_needs_them() {
        let stock = BTreeMap::from([(sku("A"), levels(5))]); // nothing reserved
        let stored = one_of_a("o-1", Status::Reserved);
        let steps = [Step::Other, settle_step("o-1", Settlement::Sell)];
        let (index, _) = plan(&steps, &stored, &stock, ids()).unwrap_err();
        assert_eq!(index, 1);
    }

    proptest! {
        /// Whatever the batch, units are conserved per SKU and never go negative; deciding the
        /// batch as one equals deciding it in two halves.
        #[test]
        fn a_batch_conserves_stock_and_splits_without_changing_the_outcome(
            ops in prop::collection::vec((0u8..3, 0usize..6, 0usize..3, 1i32..4), 1..40),
            split in 0usize..40,
        ) {
            let skus = ["A", "B", "C"];
            let stock: BTreeMap<Sku, Levels> = skus.iter().map(|s| (sku(s), levels(6))).collect();
            let steps: Vec<Step> = ops.iter().map(|(kind, order, s, q)| {
                let order = format!("o-{order}");
                match kind {
                    0 => place(&order, &[(skus[*s], *q)]),
                    1 => settle_step(&order, CANCELLED),
                    _ => settle_step(&order, Settlement::Sell),
                }
            }).collect();
            let whole = plan(&steps, &HashMap::new(), &stock, ids()).unwrap();
            for (sku, l) in &whole.levels {
                prop_assert!(l.available >= 0 && l.reserved >= 0 && l.sold >= 0);
                prop_assert_eq!(l.available + l.reserved + l.sold, stock[sku].received);
            }
            // The same steps in two batches, the second reading what the first wrote.
            let split = split.min(steps.len());
            let first = plan(&steps[..split], &HashMap::new(), &stock, ids()).unwrap();
            let mut stock2 = stock.clone();
            stock2.extend(first.levels.clone());
            let stored: HashMap<String, Held> =
                first.rows.iter().map(|(id, row)| (id.clone(), row.held.clone())).collect();
            let second = plan(&steps[split..], &stored, &stock2, ids()).unwrap();
            let mut after = stock2;
            after.extend(second.levels);
            let mut expected = stock.clone();
            expected.extend(whole.levels.clone());
            prop_assert_eq!(after, expected);
            let decided = |d: &Decision| !matches!(d, Decision::PassedOver(_));
            let halves = first.decisions.iter().chain(&second.decisions).filter(|d| decided(d)).count();
            prop_assert_eq!(halves, whole.decisions.iter().filter(|d| decided(d)).count());
        }
    }
}
