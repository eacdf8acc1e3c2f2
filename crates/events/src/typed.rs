//! The events as handlers work with them: every field that carries one of the shop's
//! [`values`](crate::values) (ids, SKUs, quantities, money) parsed, once, right where a decoded
//! event is taken in (`PlacedOrder::try_from(&order_placed)?`), so no handler or domain rule
//! parses a string of an event again. The Avro types stay as the schemas make them (the wire
//! format does not change); these are views built from them.
//!
//! An event whose values do not parse can never be applied: the [`InvalidValue`] becomes a
//! rejection ([`HandlerError::Rejected`]), which dead-letters it.

use choreo::consumer::HandlerError;

use crate::values::{Currency, CustomerId, InvalidValue, Money, OrderId, Quantity, Sku};
use crate::{CancelReason, InventoryReserved, OrderCancelled, OrderConfirmed, OrderPlaced};

impl From<InvalidValue> for HandlerError {
    /// A value that does not parse will not parse on a retry either.
    fn from(error: InvalidValue) -> Self {
        HandlerError::Rejected(error.to_string())
    }
}

/// One line of a placed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedLine {
    pub sku: Sku,
    pub quantity: Quantity,
    pub unit_price: Money,
}

/// [`OrderPlaced`], parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedOrder {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    /// At least one.
    pub lines: Vec<PlacedLine>,
    pub total: Money,
    pub placed_at: i64,
    pub deadline_at: i64,
}

impl TryFrom<&OrderPlaced> for PlacedOrder {
    type Error = InvalidValue;

    fn try_from(event: &OrderPlaced) -> Result<Self, InvalidValue> {
        let currency = Currency::parse(&event.currency)?;
        if event.lines.is_empty() {
            return Err(InvalidValue {
                what: "lines",
                value: String::new(),
                why: "an order has at least one line",
            });
        }
        let lines = event
            .lines
            .iter()
            .map(|line| {
                Ok(PlacedLine {
                    sku: Sku::parse(&line.sku)?,
                    quantity: Quantity::new(i64::from(line.quantity))?,
                    unit_price: Money::new(line.unit_price_minor, currency)?,
                })
            })
            .collect::<Result<_, InvalidValue>>()?;
        Ok(Self {
            order_id: OrderId::parse(&event.order_id)?,
            customer_id: CustomerId::parse(&event.customer_id)?,
            lines,
            total: Money::new(event.total_minor, currency)?,
            placed_at: event.placed_at,
            deadline_at: event.deadline_at,
        })
    }
}

/// [`InventoryReserved`], parsed (its items are the inventory's own record; the amount is what
/// payment captures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedStock {
    pub order_id: OrderId,
    pub reservation_id: String,
    pub items: Vec<(Sku, Quantity)>,
    pub amount: Money,
    pub reserved_at: i64,
}

impl TryFrom<&InventoryReserved> for ReservedStock {
    type Error = InvalidValue;

    fn try_from(event: &InventoryReserved) -> Result<Self, InvalidValue> {
        let items = event
            .items
            .iter()
            .map(|item| {
                Ok((
                    Sku::parse(&item.sku)?,
                    Quantity::new(i64::from(item.quantity))?,
                ))
            })
            .collect::<Result<_, InvalidValue>>()?;
        Ok(Self {
            order_id: OrderId::parse(&event.order_id)?,
            reservation_id: event.reservation_id.clone(),
            items,
            amount: Money::new(event.amount_minor, Currency::parse(&event.currency)?)?,
            reserved_at: event.reserved_at,
        })
    }
}

/// [`OrderConfirmed`], parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmedOrder {
    pub order_id: OrderId,
    pub payment_id: String,
    pub total: Money,
    pub confirmed_at: i64,
}

impl TryFrom<&OrderConfirmed> for ConfirmedOrder {
    type Error = InvalidValue;

    fn try_from(event: &OrderConfirmed) -> Result<Self, InvalidValue> {
        Ok(Self {
            order_id: OrderId::parse(&event.order_id)?,
            payment_id: event.payment_id.clone(),
            total: Money::new(event.total_minor, Currency::parse(&event.currency)?)?,
            confirmed_at: event.confirmed_at,
        })
    }
}

/// [`OrderCancelled`], parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelledOrder {
    pub order_id: OrderId,
    pub reason: CancelReason,
    pub detail: Option<String>,
    pub cancelled_at: i64,
}

impl TryFrom<&OrderCancelled> for CancelledOrder {
    type Error = InvalidValue;

    fn try_from(event: &OrderCancelled) -> Result<Self, InvalidValue> {
        Ok(Self {
            order_id: OrderId::parse(&event.order_id)?,
            reason: event.reason,
            detail: event.detail.clone(),
            cancelled_at: event.cancelled_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(lines: &[(&str, i32)]) -> OrderPlaced {
        OrderPlaced {
            order_id: "o-1".into(),
            customer_id: "cus_a".into(),
            lines: lines
                .iter()
                .map(|(sku, quantity)| crate::OrderLine {
                    sku: (*sku).into(),
                    quantity: *quantity,
                    unit_price_minor: 250,
                })
                .collect(),
            currency: "EUR".into(),
            total_minor: 500,
            placed_at: 1,
            deadline_at: 2,
        }
    }

    #[test]
    fn a_placed_order_is_parsed_with_its_lines_and_money() {
        let order = PlacedOrder::try_from(&placed(&[("MUG-01", 2)])).unwrap();
        assert_eq!(order.order_id.as_str(), "o-1");
        assert_eq!(order.lines[0].sku.as_str(), "MUG-01");
        assert_eq!(order.lines[0].quantity.get(), 2);
        assert_eq!(order.lines[0].unit_price.minor(), 250);
        assert_eq!(order.total.minor(), 500);
        assert_eq!(order.total.currency().as_str(), "EUR");
    }

    #[test]
    fn a_placed_order_with_a_bad_value_or_no_line_is_refused() {
        assert!(PlacedOrder::try_from(&placed(&[("mug", 1)])).is_err());
        assert!(PlacedOrder::try_from(&placed(&[("MUG", 0)])).is_err());
        assert!(PlacedOrder::try_from(&placed(&[])).is_err());
        let mut bad_currency = placed(&[("MUG", 1)]);
        bad_currency.currency = "eur".into();
        assert!(PlacedOrder::try_from(&bad_currency).is_err());
    }

    #[test]
    fn a_refused_value_is_a_rejection_that_is_dead_lettered() {
        let invalid = PlacedOrder::try_from(&placed(&[])).unwrap_err();
        assert!(matches!(
            HandlerError::from(invalid),
            HandlerError::Rejected(_)
        ));
    }

    #[test]
    fn a_confirmed_order_carries_its_total_as_money() {
        let confirmed = OrderConfirmed {
            order_id: "o-1".into(),
            payment_id: "p-1".into(),
            currency: "EUR".into(),
            total_minor: 700,
            confirmed_at: 3,
        };
        let order = ConfirmedOrder::try_from(&confirmed).unwrap();
        assert_eq!(order.total.minor(), 700);
        let negative = OrderConfirmed {
            total_minor: -1,
            ..confirmed
        };
        assert!(ConfirmedOrder::try_from(&negative).is_err());
    }
}
