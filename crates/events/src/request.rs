//! The shape of an order as it is asked for, defined once for every edge that reads one: the
//! client's [`OrderRequest`] (lines and currency; the gateway adds who asks) and the
//! [`PlaceOrder`] the gateway sends the order service (the same, with the order and customer
//! ids). Both are made of the checked [`values`](crate::values), so deserializing a body parses
//! every value once and a refused one names its field; unknown fields are refused at every
//! level. Prices, stock and the order's rules are not here: they belong to the order service.

use serde::{Deserialize, Serialize};

use crate::values::{Currency, CustomerId, InvalidValue, OrderId, Quantity, Sku};

/// One line of an order: a SKU and how many of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub sku: Sku,
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = u16, minimum = 1, maximum = 1000)
    )]
    pub quantity: Quantity,
}

/// The lines of an order: 1 to [`Lines::MAX`] of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(value_type = Vec<OrderLine>)
)]
#[serde(try_from = "Vec<OrderLine>", into = "Vec<OrderLine>")]
pub struct Lines(Vec<OrderLine>);

impl Lines {
    pub const MAX: usize = 50;

    pub fn new(lines: Vec<OrderLine>) -> Result<Self, InvalidValue> {
        if (1..=Self::MAX).contains(&lines.len()) {
            Ok(Self(lines))
        } else {
            Err(InvalidValue {
                what: "number of lines",
                value: lines.len().to_string(),
                why: "an order has 1 to 50 lines",
            })
        }
    }

    pub fn as_slice(&self) -> &[OrderLine] {
        &self.0
    }
}

impl TryFrom<Vec<OrderLine>> for Lines {
    type Error = InvalidValue;
    fn try_from(lines: Vec<OrderLine>) -> Result<Self, InvalidValue> {
        Self::new(lines)
    }
}

impl From<Lines> for Vec<OrderLine> {
    fn from(lines: Lines) -> Self {
        lines.0
    }
}

/// What a client sends to place an order; who asks comes from elsewhere (the gateway's token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = PlaceOrder))]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 50))]
    pub lines: Lines,
    pub currency: Currency,
}

/// What the order service is asked to place: a client's request with the order's id and its
/// customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub lines: Lines,
    pub currency: Currency,
}

impl PlaceOrder {
    pub fn new(order_id: OrderId, customer_id: CustomerId, request: OrderRequest) -> Self {
        Self {
            order_id,
            customer_id,
            lines: request.lines,
            currency: request.currency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(json: &str) -> Result<OrderRequest, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn a_well_formed_request_is_parsed_into_values() {
        let order =
            request(r#"{"lines":[{"sku":"SKU-1","quantity":2}],"currency":"EUR"}"#).unwrap();
        assert_eq!(order.lines.as_slice()[0].sku.as_str(), "SKU-1");
        assert_eq!(order.lines.as_slice()[0].quantity.get(), 2);
        assert_eq!(order.currency.as_str(), "EUR");
    }

    #[test]
    fn a_refused_value_is_a_deserialization_error_that_says_why() {
        let refused = request(r#"{"lines":[{"sku":"sku-1","quantity":2}],"currency":"EUR"}"#)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("sku"), "{refused}");
        assert!(request(r#"{"lines":[{"sku":"A","quantity":1}],"currency":"eur"}"#).is_err());
    }

    #[test]
    fn an_order_needs_one_to_fifty_lines() {
        assert!(request(r#"{"lines":[],"currency":"EUR"}"#).is_err());
        let line = r#"{"sku":"A","quantity":1}"#;
        let many = |n: usize| vec![line; n].join(",");
        let json = |n| format!(r#"{{"lines":[{}],"currency":"EUR"}}"#, many(n));
        assert!(request(&json(50)).is_ok());
        assert!(request(&json(51)).is_err());
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        assert!(request(r#"{"lines":[{"sku":"A","quantity":1}],"currency":"EUR","x":1}"#).is_err());
        assert!(request(r#"{"lines":[{"sku":"A","quantity":1,"x":1}],"currency":"EUR"}"#).is_err());
    }

    #[test]
    fn the_order_service_is_sent_the_request_with_its_ids() {
        let order = request(r#"{"lines":[{"sku":"A","quantity":1}],"currency":"EUR"}"#).unwrap();
        let place = PlaceOrder::new(
            OrderId::parse("o-1").unwrap(),
            CustomerId::parse("cus_a").unwrap(),
            order,
        );
        let json = serde_json::to_value(&place).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "order_id": "o-1",
                "customer_id": "cus_a",
                "lines": [{"sku": "A", "quantity": 1}],
                "currency": "EUR",
            })
        );
        assert_eq!(serde_json::from_value::<PlaceOrder>(json).unwrap(), place);
    }

    proptest! {
        #[test]
        fn any_accepted_line_round_trips(sku in "[A-Z0-9-]{1,32}", quantity in 1i64..=1000) {
            let line = OrderLine {
                sku: Sku::parse(&sku).unwrap(),
                quantity: Quantity::new(quantity).unwrap(),
            };
            let json = serde_json::to_string(&line).unwrap();
            let back: OrderLine = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, line);
        }

        #[test]
        fn any_out_of_range_quantity_is_refused(
            quantity in prop_oneof![i64::MIN..=0, 1001i64..=i64::MAX]
        ) {
            let json = format!(r#"{{"sku":"A","quantity":{quantity}}}"#);
            prop_assert!(serde_json::from_str::<OrderLine>(&json).is_err());
        }
    }
}
