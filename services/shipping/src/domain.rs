//! The pure core of shipping: which carrier takes a confirmed order, and whether an order's
//! confirmation schedules a shipment at all. No I/O lives here; [`crate::handler`] loads the
//! order's shipment, asks [`decide`] and writes back what it decides.
//!
//! The carrier rule looks only at the order's total in minor units (whatever the currency), so it
//! is deterministic and replaying a stream picks the same carriers: below 20.00 a parcel goes by
//! [`Carrier::Post`], from 20.00 below 100.00 by [`Carrier::Dhl`], and from 100.00 (worth
//! insuring and tracking door to door) by [`Carrier::Ups`].

use shop_events::values::Money;

/// A carrier that delivers parcels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Carrier {
    Post,
    Dhl,
    Ups,
}

impl Carrier {
    /// The name written in `ShipmentScheduled.carrier` and `shipments.carrier`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "post",
            Self::Dhl => "dhl",
            Self::Ups => "ups",
        }
    }
}

/// Totals from here (in minor units) go by DHL.
pub const DHL_FROM_MINOR: i64 = 2_000;
/// Totals from here (in minor units) go by UPS.
pub const UPS_FROM_MINOR: i64 = 10_000;

/// The carrier for an order of `total`.
pub fn carrier_for(total: Money) -> Carrier {
    match total.minor() {
        minor if minor >= UPS_FROM_MINOR => Carrier::Ups,
        minor if minor >= DHL_FROM_MINOR => Carrier::Dhl,
        _ => Carrier::Post,
    }
}

/// Where an order's shipment stands. Stored as text; a value it does not name fails to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type, serde::Serialize, serde::Deserialize)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Handed to a carrier; the order can no longer be cancelled.
    Scheduled,
}

/// What an order's confirmation leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Schedule a shipment with this carrier.
    Schedule(Carrier),
    /// The order already has a shipment: nothing to do.
    AlreadyScheduled,
}

/// Decides on an order's confirmation, given its shipment's status if it has one.
pub fn decide(existing: Option<Status>, total: Money) -> Decision {
    match existing {
        None => Decision::Schedule(carrier_for(total)),
        Some(Status::Scheduled) => Decision::AlreadyScheduled,
    }
}

#[cfg(test)]
mod tests;
