//! The pure core of the inventory: stock levels and the rules that move units between
//! available, reserved and sold, the all-or-nothing reservation decision, and the state machine of
//! one order's reservation. No I/O lives here; [`crate::handler`] loads the rows, asks these
//! functions and writes back what they decide.
//!
//! Units are never made or lost by a decision: `available + reserved + sold = received` holds for
//! every SKU before and after (only a receipt adds units, to `available` and `received`).

use std::collections::BTreeMap;

use shop_events::typed::PlacedOrder;
use shop_events::values::{InvalidValue, Money, OrderId, Sku};
use shop_events::ReleaseReason;

/// The stock of one SKU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Levels {
    pub available: i32,
    pub reserved: i32,
    pub sold: i32,
    pub received: i32,
}

impl Levels {
    /// Whether no level is negative and every unit received is accounted for.
    pub fn is_consistent(&self) -> bool {
        self.available >= 0
            && self.reserved >= 0
            && self.sold >= 0
            && i64::from(self.available) + i64::from(self.reserved) + i64::from(self.sold)
                == i64::from(self.received)
    }

    /// Holds `quantity` units for an order, if that many are available.
    pub fn reserve(self, quantity: i32) -> Option<Self> {
        (quantity >= 0 && self.available >= quantity).then(|| Self {
            available: self.available - quantity,
            reserved: self.reserved + quantity,
            ..self
        })
    }

    /// Gives `quantity` held units back, if that many are held.
    pub fn release(self, quantity: i32) -> Option<Self> {
        (quantity >= 0 && self.reserved >= quantity).then(|| Self {
            available: self.available + quantity,
            reserved: self.reserved - quantity,
            ..self
        })
    }

    /// Turns `quantity` held units into sold ones, if that many are held.
    pub fn sell(self, quantity: i32) -> Option<Self> {
        (quantity >= 0 && self.reserved >= quantity).then(|| Self {
            reserved: self.reserved - quantity,
            sold: self.sold + quantity,
            ..self
        })
    }

    /// Adds a receipt of new units; `None` if a level would overflow.
    pub fn receive(self, quantity: ReceiptQuantity) -> Option<Self> {
        Some(Self {
            available: self.available.checked_add(quantity.get())?,
            received: self.received.checked_add(quantity.get())?,
            ..self
        })
    }
}

/// How many units one goods receipt adds: 1 to [`ReceiptQuantity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptQuantity(i32);

impl ReceiptQuantity {
    pub const MAX: i64 = 1_000_000;

    pub fn new(value: i64) -> Result<Self, InvalidValue> {
        if (1..=Self::MAX).contains(&value) {
            Ok(Self(value as i32))
        } else {
            Err(InvalidValue {
                what: "quantity",
                value: value.to_string(),
                why: "must be 1 to 1000000",
            })
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// What an order asks of the inventory: one quantity per SKU, and its total to pass on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub order_id: OrderId,
    /// Quantities by SKU; lines of one SKU are summed.
    pub items: BTreeMap<Sku, i32>,
    pub total: Money,
}

impl Request {
    /// What a placed order (its values parsed as it was decoded) asks: its lines summed by SKU.
    pub fn from_placed(event: &PlacedOrder) -> Result<Self, InvalidValue> {
        let mut items: BTreeMap<Sku, i32> = BTreeMap::new();
        for line in &event.lines {
            let quantity = line.quantity;
            let sum = items.entry(line.sku.clone()).or_default();
            // Quantity::MAX fits an i32; only millions of lines of one SKU could overflow.
            *sum = sum
                .checked_add(quantity.get() as i32)
                .ok_or_else(|| InvalidValue {
                    what: "quantity",
                    value: quantity.get().to_string(),
                    why: "the lines of one SKU add up to too many units",
                })?;
        }
        Ok(Self {
            order_id: event.order_id.clone(),
            items,
            total: event.total,
        })
    }
}

/// Why an order could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Some SKU is not stocked at all.
    UnknownSku,
    /// Every SKU is stocked, but some has fewer units available than ordered.
    OutOfStock,
}

/// One SKU that cannot be served (`available` is 0 for an unknown SKU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub sku: Sku,
    pub requested: i32,
    pub available: i32,
}

/// The decision on an order's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Every line can be served: the new levels of each SKU of the order.
    Reserve(BTreeMap<Sku, Levels>),
    /// Nothing is held; the levels stay as they are.
    Reject {
        reason: Rejection,
        shortfalls: Vec<Shortfall>,
    },
}

/// Reserves every item or none. `stock` holds the current levels of the order's SKUs that exist.
/// Any unknown SKU rejects the order as [`Rejection::UnknownSku`]; else any shortage rejects it as
/// [`Rejection::OutOfStock`]. Either way the shortfalls name every SKU that cannot be served.
pub fn reserve(items: &BTreeMap<Sku, i32>, stock: &BTreeMap<Sku, Levels>) -> Reservation {
    let mut reserved = BTreeMap::new();
    let mut shortfalls = Vec::new();
    let mut unknown = false;
    for (sku, &requested) in items {
        let levels = stock.get(sku).copied();
        match levels.and_then(|levels| levels.reserve(requested)) {
            Some(after) => {
                reserved.insert(sku.clone(), after);
            }
            None => {
                unknown |= levels.is_none();
                shortfalls.push(Shortfall {
                    sku: sku.clone(),
                    requested,
                    available: levels.map_or(0, |l| l.available),
                });
            }
        }
    }
    match (shortfalls.is_empty(), unknown) {
        (true, _) => Reservation::Reserve(reserved),
        (false, true) => Reservation::Reject {
            reason: Rejection::UnknownSku,
            shortfalls,
        },
        (false, false) => Reservation::Reject {
            reason: Rejection::OutOfStock,
            shortfalls,
        },
    }
}

/// Held units that are not there to give back or sell: the stored state broke an invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SKU {sku} holds fewer units than reservation needs ({quantity})")]
pub struct NotHeld {
    pub sku: Sku,
    pub quantity: i32,
}

/// The new levels after `settlement` of the reserved `items`.
pub fn settle(
    settlement: Settlement,
    items: &BTreeMap<Sku, i32>,
    stock: &BTreeMap<Sku, Levels>,
) -> Result<BTreeMap<Sku, Levels>, NotHeld> {
    items
        .iter()
        .map(|(sku, &quantity)| {
            let levels = stock.get(sku).copied();
            let after = levels.and_then(|levels| match settlement {
                Settlement::Release(_) => levels.release(quantity),
                Settlement::Sell => levels.sell(quantity),
            });
            after
                .map(|after| (sku.clone(), after))
                .ok_or_else(|| NotHeld {
                    sku: sku.clone(),
                    quantity,
                })
        })
        .collect()
}

/// Where one order's reservation stands. Stored as text; a value it does not name fails to
/// decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Status {
    /// Units are held for the order.
    Reserved,
    /// The held units went back to stock (payment failed or the order was cancelled).
    Released,
    /// The held units were sold (the order was confirmed).
    Sold,
    /// Nothing was held: the order could not be served.
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Released => "released",
            Self::Sold => "sold",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Reserved, Self::Released, Self::Sold, Self::Rejected]
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// The status after `settlement`, or `None` where it is not allowed: only a held reservation
    /// is released or sold, once.
    pub fn settle(self, settlement: Settlement) -> Option<Self> {
        match (self, settlement) {
            (Self::Reserved, Settlement::Release(_)) => Some(Self::Released),
            (Self::Reserved, Settlement::Sell) => Some(Self::Sold),
            _ => None,
        }
    }
}

/// How a held reservation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Back to available stock, announced with this reason.
    Release(ReleaseReason),
    /// Sold: the order was confirmed.
    Sell,
}

pub mod batch;

#[cfg(test)]
mod tests;
