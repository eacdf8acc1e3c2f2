//! Unit tests and properties of the inventory's pure core.

use super::*;
use proptest::collection::btree_map;
use proptest::prelude::*;
use shop_events::{OrderLine, OrderPlaced};

pub(super) fn sku(text: &str) -> Sku {
    Sku::parse(text).unwrap()
}

pub(super) fn levels(available: i32) -> Levels {
    Levels {
        available,
        reserved: 0,
        sold: 0,
        received: available,
    }
}

fn placed(lines: &[(&str, i32)]) -> OrderPlaced {
    OrderPlaced {
        order_id: "order-1".into(),
        customer_id: "alice".into(),
        lines: lines
            .iter()
            .map(|(sku, quantity)| OrderLine {
                sku: (*sku).into(),
                quantity: *quantity,
                unit_price_minor: 250,
            })
            .collect(),
        currency: "EUR".into(),
        total_minor: 1000,
        placed_at: 0,
        deadline_at: 0,
    }
}

/// The request of an `OrderPlaced`, parsed as the handler parses it.
fn request(event: &OrderPlaced) -> Result<Request, InvalidValue> {
    Request::from_placed(&PlacedOrder::try_from(event)?)
}

#[test]
fn lines_of_one_sku_are_summed() {
    let request = request(&placed(&[("MUG", 2), ("TEA", 1), ("MUG", 3)])).unwrap();
    assert_eq!(
        request.items,
        BTreeMap::from([(sku("MUG"), 5), (sku("TEA"), 1)])
    );
    assert_eq!(request.total.minor(), 1000);
}

#[test]
fn an_order_with_a_bad_line_is_not_a_request() {
    assert!(request(&placed(&[("mug", 1)])).is_err());
    assert!(request(&placed(&[("MUG", 0)])).is_err());
    assert!(request(&placed(&[])).is_err());
}

#[test]
fn an_order_that_fits_moves_units_from_available_to_reserved() {
    let items = BTreeMap::from([(sku("MUG"), 2)]);
    let stock = BTreeMap::from([(sku("MUG"), levels(5))]);
    let Reservation::Reserve(after) = reserve(&items, &stock) else {
        panic!("expected a reservation")
    };
    assert_eq!(
        after[&sku("MUG")],
        Levels {
            available: 3,
            reserved: 2,
            sold: 0,
            received: 5
        }
    );
}

#[test]
fn an_unknown_sku_rejects_the_whole_order() {
    let items = BTreeMap::from([(sku("MUG"), 1), (sku("NOPE"), 1)]);
    let stock = BTreeMap::from([(sku("MUG"), levels(5))]);
    assert_eq!(
        reserve(&items, &stock),
        Reservation::Reject {
            reason: Rejection::UnknownSku,
            shortfalls: vec![Shortfall {
                sku: sku("NOPE"),
                requested: 1,
                available: 0
            }],
        }
    );
}

#[test]
fn a_shortage_rejects_the_order_and_names_what_is_short() {
    let items = BTreeMap::from([(sku("MUG"), 1), (sku("TEA"), 4)]);
    let stock = BTreeMap::from([(sku("MUG"), levels(5)), (sku("TEA"), levels(3))]);
    assert_eq!(
        reserve(&items, &stock),
        Reservation::Reject {
            reason: Rejection::OutOfStock,
            shortfalls: vec![Shortfall {
                sku: sku("TEA"),
                requested: 4,
                available: 3
            }],
        }
    );
}

#[test]
fn only_a_held_reservation_is_released_or_sold_and_only_once() {
    let release = Settlement::Release(ReleaseReason::PaymentFailed);
    assert_eq!(Status::Reserved.settle(release), Some(Status::Released));
    assert_eq!(
        Status::Reserved.settle(Settlement::Sell),
        Some(Status::Sold)
    );
    for done in [Status::Released, Status::Sold, Status::Rejected] {
        assert_eq!(done.settle(release), None);
        assert_eq!(done.settle(Settlement::Sell), None);
    }
}

#[test]
fn statuses_round_trip_their_names() {
    for status in [
        Status::Reserved,
        Status::Released,
        Status::Sold,
        Status::Rejected,
    ] {
        assert_eq!(Status::parse(status.as_str()), Some(status));
    }
    assert_eq!(Status::parse("lost"), None);
}

#[test]
fn settling_units_that_are_not_held_is_refused() {
    let items = BTreeMap::from([(sku("MUG"), 2)]);
    let stock = BTreeMap::from([(sku("MUG"), levels(5))]);
    assert!(settle(Settlement::Sell, &items, &stock).is_err());
    assert!(settle(Settlement::Sell, &items, &BTreeMap::new()).is_err());
}

#[test]
fn a_receipt_quantity_is_one_to_a_million() {
    assert!(ReceiptQuantity::new(0).is_err());
    assert!(ReceiptQuantity::new(1_000_001).is_err());
    assert_eq!(ReceiptQuantity::new(1_000_000).unwrap().get(), 1_000_000);
    let full = levels(i32::MAX - 1);
    assert_eq!(full.receive(ReceiptQuantity::new(2).unwrap()), None);
}

fn any_sku() -> impl Strategy<Value = Sku> {
    "[A-D]".prop_map(|s| Sku::parse(&s).unwrap())
}

fn any_levels() -> impl Strategy<Value = Levels> {
    (0..50i32, 0..50i32, 0..50i32).prop_map(|(available, reserved, sold)| Levels {
        available,
        reserved,
        sold,
        received: available + reserved + sold,
    })
}

fn any_stock() -> impl Strategy<Value = BTreeMap<Sku, Levels>> {
    btree_map(any_sku(), any_levels(), 0..4)
}

fn any_items() -> impl Strategy<Value = BTreeMap<Sku, i32>> {
    btree_map(any_sku(), 1..60i32, 1..4)
}

fn received(stock: &BTreeMap<Sku, Levels>, sku: &Sku) -> i32 {
    stock[sku].received
}

proptest! {
    #[test]
    fn a_reservation_never_makes_available_negative(items in any_items(), stock in any_stock()) {
        if let Reservation::Reserve(after) = reserve(&items, &stock) {
            prop_assert!(after.values().all(|levels| levels.available >= 0));
        }
    }

    #[test]
    fn every_decision_conserves_the_units_of_every_sku(
        items in any_items(),
        stock in any_stock(),
        sell in any::<bool>(),
    ) {
        if let Reservation::Reserve(after) = reserve(&items, &stock) {
            for (sku, levels) in &after {
                prop_assert!(levels.is_consistent());
                prop_assert_eq!(levels.received, received(&stock, sku));
            }
            let settlement = if sell {
                Settlement::Sell
            } else {
                Settlement::Release(ReleaseReason::OrderCancelled)
            };
            let settled = settle(settlement, &items, &after).unwrap();
            for (sku, levels) in &settled {
                prop_assert!(levels.is_consistent());
                prop_assert_eq!(levels.received, received(&stock, sku));
            }
        }
    }

    #[test]
    fn reserving_then_releasing_restores_the_levels_exactly(
        items in any_items(),
        stock in any_stock(),
    ) {
        if let Reservation::Reserve(after) = reserve(&items, &stock) {
            let release = Settlement::Release(ReleaseReason::PaymentFailed);
            let restored = settle(release, &items, &after).unwrap();
            for (sku, levels) in &restored {
                prop_assert_eq!(levels, &stock[sku]);
            }
        }
    }

    #[test]
    fn an_order_is_reserved_whole_or_rejected_with_its_reason(
        items in any_items(),
        stock in any_stock(),
    ) {
        let fits = |sku: &Sku, n: i32| stock.get(sku).is_some_and(|l| l.available >= n);
        match reserve(&items, &stock) {
            Reservation::Reserve(after) => {
                prop_assert!(items.iter().all(|(sku, &n)| fits(sku, n)));
                prop_assert_eq!(after.keys().collect::<Vec<_>>(), items.keys().collect::<Vec<_>>());
                for (sku, &n) in &items {
                    prop_assert_eq!(after[sku].reserved, stock[sku].reserved + n);
                }
            }
            Reservation::Reject { reason, shortfalls } => {
                // Nothing to write: a rejection carries no levels, so none changes.
                prop_assert!(!shortfalls.is_empty());
                prop_assert!(shortfalls.iter().all(|s| !fits(&s.sku, s.requested)));
                let unknown = items.keys().any(|sku| !stock.contains_key(sku));
                let expected = if unknown { Rejection::UnknownSku } else { Rejection::OutOfStock };
                prop_assert_eq!(reason, expected);
            }
        }
    }
}
