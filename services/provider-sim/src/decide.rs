//! The pure decision core: given the rules, a charge request and a random draw, what the
//! provider answers. No I/O, no clock, no randomness of its own; the HTTP layer draws and records.

use crate::request::ChargeRequest;

/// Customers whose id starts with this are always declined (`card_declined`).
pub const DECLINE_PREFIX: &str = "cus_decline";
/// Customers whose id starts with this fail at the flaky rate.
pub const FLAKY_PREFIX: &str = "cus_flaky";
/// Customers whose id starts with this must still authenticate (3-D Secure): their charges are
/// answered `pending` at once and never authenticated, so they end declined.
pub const PENDING_PREFIX: &str = "cus_pending";

/// The behaviour the simulator is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Fraction of charge calls answered 503.
    pub failure_rate: f64,
    /// Fraction of charge calls answered 503 for `cus_flaky*` customers.
    pub flaky_rate: f64,
    /// Amounts above this are declined with `amount_limit`.
    pub decline_above_minor: Option<i64>,
}

/// What the provider does with a new charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An injected failure: answer 503 and record nothing.
    Unavailable,
    Captured,
    Declined {
        code: &'static str,
    },
    /// Neither captured nor declined yet: the customer must authenticate first. The ledger
    /// declines it (`authentication_timeout`) when the pending time is over.
    Pending,
}

/// Decides a charge; `draw` is uniform in [0, 1) and decides injected failures.
pub fn decide(rules: &Rules, charge: &ChargeRequest, draw: f64) -> Decision {
    let failure_rate = if charge.customer_id.starts_with(FLAKY_PREFIX) {
        rules.failure_rate.max(rules.flaky_rate)
    } else {
        rules.failure_rate
    };
    if draw < failure_rate {
        Decision::Unavailable
    } else if charge.customer_id.starts_with(DECLINE_PREFIX) {
        Decision::Declined {
            code: "card_declined",
        }
    } else if rules
        .decline_above_minor
        .is_some_and(|limit| charge.amount_minor > limit)
    {
        Decision::Declined {
            code: "amount_limit",
        }
    } else if charge.customer_id.starts_with(PENDING_PREFIX) {
        Decision::Pending
    } else {
        Decision::Captured
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules() -> Rules {
        Rules {
            failure_rate: 0.0,
            flaky_rate: 0.5,
            decline_above_minor: Some(10_000),
        }
    }

    fn charge(customer_id: &str, amount_minor: i64) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: "k".into(),
            order_id: "o".into(),
            customer_id: customer_id.into(),
            amount_minor,
            currency: "EUR".into(),
        }
    }

    #[test]
    fn an_ordinary_charge_is_captured() {
        assert_eq!(
            decide(&rules(), &charge("cus_1", 500), 0.3),
            Decision::Captured
        );
    }

    #[test]
    fn decline_customers_are_declined_with_card_declined() {
        assert_eq!(
            decide(&rules(), &charge("cus_decline_7", 500), 0.9),
            Decision::Declined {
                code: "card_declined"
            }
        );
    }

    #[test]
    fn amounts_above_the_limit_are_declined_but_the_limit_itself_is_not() {
        let declined = decide(&rules(), &charge("cus_1", 10_001), 0.9);
        assert_eq!(
            declined,
            Decision::Declined {
                code: "amount_limit"
            }
        );
        assert_eq!(
            decide(&rules(), &charge("cus_1", 10_000), 0.9),
            Decision::Captured
        );
    }

    #[test]
    fn flaky_customers_fail_at_the_flaky_rate_and_others_do_not() {
        assert_eq!(
            decide(&rules(), &charge("cus_flaky_1", 5), 0.4),
            Decision::Unavailable
        );
        assert_eq!(
            decide(&rules(), &charge("cus_flaky_1", 5), 0.6),
            Decision::Captured
        );
        assert_eq!(
            decide(&rules(), &charge("cus_1", 5), 0.4),
            Decision::Captured
        );
    }

    #[test]
    fn pending_customers_are_pending_unless_declined_first() {
        assert_eq!(
            decide(&rules(), &charge("cus_pending_1", 500), 0.9),
            Decision::Pending
        );
        assert_eq!(
            decide(&rules(), &charge("cus_pending_1", 10_001), 0.9),
            Decision::Declined {
                code: "amount_limit"
            }
        );
    }

    #[test]
    fn an_injected_failure_comes_before_a_decline() {
        let rules = Rules {
            failure_rate: 1.0,
            ..rules()
        };
        assert_eq!(
            decide(&rules, &charge("cus_decline", 5), 0.99),
            Decision::Unavailable
        );
    }

    proptest! {
        #[test]
        fn rate_zero_never_fails_and_rate_one_always_fails(
            draw in 0.0f64..1.0,
            customer in "(cus_|cus_flaky|cus_decline|cus_pending)[a-z0-9]{0,8}",
            amount in 1i64..100_000,
        ) {
            let never = Rules { failure_rate: 0.0, flaky_rate: 0.0, decline_above_minor: None };
            prop_assert_ne!(decide(&never, &charge(&customer, amount), draw), Decision::Unavailable);
            let always = Rules { failure_rate: 1.0, flaky_rate: 0.0, decline_above_minor: None };
            prop_assert_eq!(decide(&always, &charge(&customer, amount), draw), Decision::Unavailable);
        }
    }
}
