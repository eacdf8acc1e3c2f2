//! Value types every service shares: built only through constructors that refuse bad values
//! (parse, don't validate), so neither an HTTP body nor a decoded event can make an invalid one.
//! Their serde forms go through the same constructors (an id, SKU or currency is a string, a
//! quantity a number), so a JSON body is parsed into them once, at the edge that reads it; with
//! the `openapi` feature they also describe themselves for an OpenAPI document. No behaviour of
//! any one service lives here.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that failed its constructor's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not valid: {why}")]
pub struct InvalidValue {
    pub what: &'static str,
    pub value: String,
    pub why: &'static str,
}

fn invalid(what: &'static str, value: impl Into<String>, why: &'static str) -> InvalidValue {
    InvalidValue {
        what,
        value: value.into(),
        why,
    }
}

/// An identifier made of 1 to 64 ASCII letters, digits, `-` and `_`.
fn checked_id(what: &'static str, value: &str) -> Result<String, InvalidValue> {
    if value.is_empty() || value.len() > 64 {
        return Err(invalid(what, value, "must be 1 to 64 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            what,
            value,
            "only letters, digits, - and _ are allowed",
        ));
    }
    Ok(value.to_owned())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, InvalidValue> {
                checked_id($what, value).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        text_serde!($name);
    };
}

/// Serde for a value written as a string: serialized as its text, deserialized through its
/// `parse`, so a refused value is a deserialization error naming why.
macro_rules! text_serde {
    ($name:ident) => {
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// An order's id; also the key of every event of its saga.
    OrderId,
    "order id"
);
id_type!(
    /// The customer an order belongs to (the gateway's token subject).
    CustomerId,
    "customer id"
);

/// A stock keeping unit: 1 to 32 of `A-Z`, `0-9` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(value_type = String, pattern = "^[A-Z0-9-]{1,32}$", example = "SKU-1")
)]
pub struct Sku(String);

impl Sku {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        if value.is_empty() || value.len() > 32 {
            return Err(invalid("sku", value, "must be 1 to 32 characters"));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid("sku", value, "only A-Z, 0-9 and - are allowed"));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

text_serde!(Sku);

/// How many units of one SKU a line asks for: 1 to [`Quantity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(value_type = u16)
)]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: u32 = 1000;

    pub fn new(value: i64) -> Result<Self, InvalidValue> {
        match u32::try_from(value) {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Self(n)),
            _ => Err(invalid("quantity", value.to_string(), "must be 1 to 1000")),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = i64::deserialize(deserializer)?;
        Self::new(number).map_err(serde::de::Error::custom)
    }
}

/// An ISO 4217 currency code: three uppercase letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")
)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        match value.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => Ok(Self([*a, *b, *c])),
            _ => Err(invalid(
                "currency",
                value,
                "must be three uppercase letters",
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII by construction")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

text_serde!(Currency);

/// An exact, non-negative amount in minor units of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Result<Self, InvalidValue> {
        if minor < 0 {
            return Err(invalid("amount", minor.to_string(), "must not be negative"));
        }
        Ok(Self { minor, currency })
    }

    pub fn minor(self) -> i64 {
        self.minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }

    /// `self * quantity`, or `None` on overflow.
    pub fn times(self, quantity: Quantity) -> Option<Self> {
        self.minor
            .checked_mul(i64::from(quantity.get()))
            .map(|minor| Self { minor, ..self })
    }

    /// The sum, or `None` on overflow or when the currencies differ.
    pub fn plus(self, other: Self) -> Option<Self> {
        if self.currency != other.currency {
            return None;
        }
        self.minor
            .checked_add(other.minor)
            .map(|minor| Self { minor, ..self })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.minor, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_refuse_empty_long_and_odd_characters() {
        assert!(OrderId::parse("0199a-b_c").is_ok());
        assert!(OrderId::parse("").is_err());
        assert!(OrderId::parse(&"a".repeat(65)).is_err());
        assert!(CustomerId::parse("cus alice").is_err());
    }

    #[test]
    fn skus_are_upper_case_digits_and_dashes() {
        assert!(Sku::parse("MUG-01").is_ok());
        assert!(Sku::parse("mug-01").is_err());
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse(&"A".repeat(33)).is_err());
    }

    #[test]
    fn currencies_are_three_upper_case_letters() {
        assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
        for bad in ["eur", "EU", "EURO", "E1R", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn money_of_two_currencies_does_not_add() {
        let eur = Money::new(100, Currency::parse("EUR").unwrap()).unwrap();
        let usd = Money::new(100, Currency::parse("USD").unwrap()).unwrap();
        assert_eq!(eur.plus(usd), None);
        assert_eq!(eur.plus(eur).unwrap().minor(), 200);
        assert!(Money::new(-1, eur.currency()).is_err());
    }

    #[test]
    fn values_read_from_json_through_their_constructors() {
        let sku: Sku = serde_json::from_str(r#""MUG-01""#).unwrap();
        assert_eq!(serde_json::to_string(&sku).unwrap(), r#""MUG-01""#);
        assert!(serde_json::from_str::<Sku>(r#""mug""#).is_err());
        let quantity: Quantity = serde_json::from_str("3").unwrap();
        assert_eq!(serde_json::to_string(&quantity).unwrap(), "3");
        let refused = serde_json::from_str::<Quantity>("0")
            .unwrap_err()
            .to_string();
        assert!(refused.contains("quantity"), "{refused}");
        assert!(serde_json::from_str::<Currency>(r#""eur""#).is_err());
        assert!(serde_json::from_str::<OrderId>(r#""""#).is_err());
    }

    proptest! {
        #[test]
        fn a_quantity_exists_exactly_in_its_range(n in -5_000i64..5_000) {
            prop_assert_eq!(Quantity::new(n).is_ok(), (1..=1000).contains(&n));
        }

        #[test]
        fn any_accepted_sku_round_trips(s in "[A-Z0-9-]{1,32}") {
            let sku = Sku::parse(&s).unwrap();
            prop_assert_eq!(sku.as_str(), s.as_str());
        }

        #[test]
        fn multiplying_never_overflows_silently(minor in 0i64..i64::MAX, q in 1i64..=1000) {
            let money = Money::new(minor, Currency::parse("EUR").unwrap()).unwrap();
            let product = money.times(Quantity::new(q).unwrap());
            prop_assert_eq!(product.map(Money::minor), minor.checked_mul(q));
        }
    }
}
