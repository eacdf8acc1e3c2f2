//! The shapes a client may send, parsed rather than validated: a [`Sku`], a [`Quantity`], a
//! [`Currency`] and the [`Lines`] of an order can only be built through constructors that refuse
//! bad values, and serde goes through those constructors, so no handler ever sees an invalid one.
//!
//! The rules themselves are the shop's shared value types ([`shop_events::values`]); these
//! wrappers add serde, the OpenAPI schema and messages worded for an HTTP caller. Prices, stock
//! and order rules are not here: they belong to the order service.

use serde::{Deserialize, Serialize};
use shop_events::values;
use utoipa::ToSchema;

/// Why a value was refused, worded for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(String);

/// A stock-keeping unit: 1 to 32 of `A-Z`, `0-9` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[A-Z0-9-]{1,32}$", example = "SKU-1")]
pub struct Sku(String);

impl Sku {
    pub fn parse(value: String) -> Result<Self, Invalid> {
        if values::Sku::parse(&value).is_ok() {
            Ok(Self(value))
        } else {
            Err(Invalid(format!(
                "sku {value:?} is not 1 to 32 characters of A-Z, 0-9 and -"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sku {
    type Error = Invalid;
    fn try_from(value: String) -> Result<Self, Invalid> {
        Self::parse(value)
    }
}

impl From<Sku> for String {
    fn from(sku: Sku) -> Self {
        sku.0
    }
}

/// How many of one sku: 1 to 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "i64", into = "u16")]
#[schema(value_type = u16)]
pub struct Quantity(u16);

impl Quantity {
    pub const MAX: u16 = values::Quantity::MAX as u16;

    pub fn parse(value: i64) -> Result<Self, Invalid> {
        match values::Quantity::new(value) {
            Ok(q) => Ok(Self(q.get() as u16)),
            Err(_) => Err(Invalid(format!(
                "quantity {value} is not between 1 and {}",
                Self::MAX
            ))),
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = Invalid;
    fn try_from(value: i64) -> Result<Self, Invalid> {
        Self::parse(value)
    }
}

impl From<Quantity> for u16 {
    fn from(quantity: Quantity) -> Self {
        quantity.0
    }
}

/// An ISO 4217-shaped currency code: three uppercase letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
pub struct Currency(String);

impl Currency {
    pub fn parse(value: String) -> Result<Self, Invalid> {
        if values::Currency::parse(&value).is_ok() {
            Ok(Self(value))
        } else {
            Err(Invalid(format!(
                "currency {value:?} is not three uppercase letters"
            )))
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = Invalid;
    fn try_from(value: String) -> Result<Self, Invalid> {
        Self::parse(value)
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> Self {
        currency.0
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub sku: Sku,
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: Quantity,
}

/// The lines of an order: 1 to 50 of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "Vec<OrderLine>", into = "Vec<OrderLine>")]
#[schema(value_type = Vec<OrderLine>)]
pub struct Lines(Vec<OrderLine>);

impl Lines {
    pub const MAX: usize = 50;

    pub fn parse(lines: Vec<OrderLine>) -> Result<Self, Invalid> {
        if (1..=Self::MAX).contains(&lines.len()) {
            Ok(Self(lines))
        } else {
            Err(Invalid(format!(
                "an order has 1 to {} lines, not {}",
                Self::MAX,
                lines.len()
            )))
        }
    }

    pub fn as_slice(&self) -> &[OrderLine] {
        &self.0
    }
}

impl TryFrom<Vec<OrderLine>> for Lines {
    type Error = Invalid;
    fn try_from(lines: Vec<OrderLine>) -> Result<Self, Invalid> {
        Self::parse(lines)
    }
}

impl From<Lines> for Vec<OrderLine> {
    fn from(lines: Lines) -> Self {
        lines.0
    }
}

/// What a client sends to place an order; the customer comes from the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    #[schema(min_items = 1, max_items = 50)]
    pub lines: Lines,
    pub currency: Currency,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn place(json: &str) -> Result<PlaceOrder, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn a_well_formed_order_is_accepted() {
        let order = place(r#"{"lines":[{"sku":"SKU-1","quantity":2}],"currency":"EUR"}"#).unwrap();
        assert_eq!(order.lines.as_slice()[0].sku.as_str(), "SKU-1");
        assert_eq!(order.lines.as_slice()[0].quantity.get(), 2);
    }

    #[test]
    fn skus_outside_the_alphabet_or_length_are_refused() {
        for bad in ["", "sku-1", "SKU_1", "SKU 1", &"A".repeat(33), "ÄBC"] {
            assert!(Sku::parse(bad.into()).is_err(), "{bad:?}");
        }
        assert!(Sku::parse("A".repeat(32)).is_ok());
    }

    #[test]
    fn currencies_must_be_three_uppercase_letters() {
        for bad in ["", "eur", "EU", "EURO", "E1R"] {
            assert!(Currency::parse(bad.into()).is_err(), "{bad:?}");
        }
        assert!(Currency::parse("EUR".into()).is_ok());
    }

    #[test]
    fn an_order_needs_one_to_fifty_lines() {
        assert!(place(r#"{"lines":[],"currency":"EUR"}"#).is_err());
        let line = r#"{"sku":"A","quantity":1}"#;
        let many = |n: usize| vec![line; n].join(",");
        let json = |n| format!(r#"{{"lines":[{}],"currency":"EUR"}}"#, many(n));
        assert!(place(&json(50)).is_ok());
        assert!(place(&json(51)).is_err());
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        assert!(place(r#"{"lines":[{"sku":"A","quantity":1}],"currency":"EUR","x":1}"#).is_err());
        assert!(place(r#"{"lines":[{"sku":"A","quantity":1,"x":1}],"currency":"EUR"}"#).is_err());
    }

    proptest! {
        #[test]
        fn any_accepted_line_round_trips(sku in "[A-Z0-9-]{1,32}", quantity in 1i64..=1000) {
            let line = OrderLine {
                sku: Sku::parse(sku.clone()).unwrap(),
                quantity: Quantity::parse(quantity).unwrap(),
            };
            let json = serde_json::to_string(&line).unwrap();
            let back: OrderLine = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back.sku.as_str(), sku.as_str());
            prop_assert_eq!(i64::from(back.quantity.get()), quantity);
        }

        #[test]
        fn any_out_of_range_quantity_is_refused(
            quantity in prop_oneof![i64::MIN..=0, 1001i64..=i64::MAX]
        ) {
            prop_assert!(Quantity::parse(quantity).is_err());
            let json = format!(r#"{{"sku":"A","quantity":{quantity}}}"#);
            prop_assert!(serde_json::from_str::<OrderLine>(&json).is_err());
        }
    }
}
