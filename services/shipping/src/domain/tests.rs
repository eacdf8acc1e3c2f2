//! Unit tests and properties of the shipping rules.

use super::*;
use proptest::prelude::*;
use shop_events::values::Currency;

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap()).unwrap()
}

#[test]
fn the_carrier_follows_the_order_total() {
    assert_eq!(carrier_for(eur(0)), Carrier::Post);
    assert_eq!(carrier_for(eur(1_999)), Carrier::Post);
    assert_eq!(carrier_for(eur(2_000)), Carrier::Dhl);
    assert_eq!(carrier_for(eur(9_999)), Carrier::Dhl);
    assert_eq!(carrier_for(eur(10_000)), Carrier::Ups);
}

#[test]
fn a_confirmed_order_is_scheduled_once() {
    assert_eq!(decide(None, eur(500)), Decision::Schedule(Carrier::Post));
    assert_eq!(
        decide(Some(Status::Scheduled), eur(500)),
        Decision::AlreadyScheduled
    );
}

#[test]
fn statuses_round_trip_their_names() {
    let name = serde_json::to_string(&Status::Scheduled).unwrap();
    assert_eq!(name, r#""scheduled""#);
    assert_eq!(
        serde_json::from_str::<Status>(&name).unwrap(),
        Status::Scheduled
    );
    assert!(serde_json::from_str::<Status>(r#""lost""#).is_err());
}

proptest! {
    #[test]
    fn a_larger_total_never_gets_a_lesser_carrier(a in 0i64..1_000_000, b in 0i64..1_000_000) {
        let (low, high) = (a.min(b), a.max(b));
        prop_assert!(carrier_for(eur(low)) <= carrier_for(eur(high)));
    }

    #[test]
    fn an_order_with_a_shipment_is_never_scheduled_again(minor in 0i64..i64::MAX) {
        prop_assert_eq!(decide(Some(Status::Scheduled), eur(minor)), Decision::AlreadyScheduled);
        prop_assert_eq!(decide(None, eur(minor)), decide(None, eur(minor)));
    }
}
