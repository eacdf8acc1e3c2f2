//! The order's state machine, pure: what an order is, how it is priced, and [`decide`], which
//! says for an order's status and something that happened to it what the order becomes and what
//! it announces. No I/O here; the handler, the HTTP routes and the deadline sweeper wrap it.
//!
//! An order is `placed`, then `reserved` (inventory holds its lines), then `confirmed` (payment
//! captured) and `shipped`; or `cancelled` with a reason. Cancelled is final: an outcome that
//! arrives after it (a late capture, a late reservation) changes nothing here, and the service
//! that owns the resource compensates it on `OrderCancelled`. A customer may cancel until the
//! order is confirmed, which hands it to shipping.

use std::collections::BTreeMap;

use shop_events::request::{Lines, OrderLine};
use shop_events::values::{Currency, CustomerId, InvalidValue, Money, OrderId, Quantity, Sku};

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Placed,
    Reserved,
    Confirmed,
    Shipped,
    Cancelled(CancelReason),
}

/// A status as stored in its own column: [`Status`] without the cancel reason, which is stored
/// beside it. A value it does not name fails to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum StatusKind {
    Placed,
    Reserved,
    Confirmed,
    Shipped,
    Cancelled,
}

/// Why an order was cancelled. Stored as text; a value it does not name fails to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum CancelReason {
    OutOfStock,
    PaymentFailed,
    CustomerRequest,
    Timeout,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Placed => "placed",
            Status::Reserved => "reserved",
            Status::Confirmed => "confirmed",
            Status::Shipped => "shipped",
            Status::Cancelled(_) => "cancelled",
        }
    }

    /// The status as stored: its kind, and its cancel reason beside it.
    pub fn kind(self) -> StatusKind {
        match self {
            Status::Placed => StatusKind::Placed,
            Status::Reserved => StatusKind::Reserved,
            Status::Confirmed => StatusKind::Confirmed,
            Status::Shipped => StatusKind::Shipped,
            Status::Cancelled(_) => StatusKind::Cancelled,
        }
    }

    /// Reads a stored status and cancel reason; `None` for a cancellation without a reason.
    pub fn from_parts(kind: StatusKind, reason: Option<CancelReason>) -> Option<Self> {
        Some(match kind {
            StatusKind::Placed => Status::Placed,
            StatusKind::Reserved => Status::Reserved,
            StatusKind::Confirmed => Status::Confirmed,
            StatusKind::Shipped => Status::Shipped,
            StatusKind::Cancelled => Status::Cancelled(reason?),
        })
    }

    /// The saga is over for the order service: no outcome can change it any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Confirmed | Status::Shipped | Status::Cancelled(_)
        )
    }

    pub fn cancel_reason(self) -> Option<CancelReason> {
        match self {
            Status::Cancelled(reason) => Some(reason),
            _ => None,
        }
    }
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::OutOfStock => "out_of_stock",
            CancelReason::PaymentFailed => "payment_failed",
            CancelReason::CustomerRequest => "customer_request",
            CancelReason::Timeout => "timeout",
        }
    }

    #[allow(clippy::should_implement_trait)]
    pub fn from_str(value: &str) -> Option<Self> {
        Some(match value {
            "out_of_stock" => CancelReason::OutOfStock,
            "payment_failed" => CancelReason::PaymentFailed,
            "customer_request" => CancelReason::CustomerRequest,
            "timeout" => CancelReason::Timeout,
            _ => return None,
        })
    }

    pub fn to_event(self) -> shop_events::CancelReason {
        match self {
            CancelReason::OutOfStock => shop_events::CancelReason::OutOfStock,
            CancelReason::PaymentFailed => shop_events::CancelReason::PaymentFailed,
            CancelReason::CustomerRequest => shop_events::CancelReason::CustomerRequest,
            CancelReason::Timeout => shop_events::CancelReason::Timeout,
        }
    }
}

/// Something that happened to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    InventoryReserved,
    InventoryRejected,
    PaymentCaptured {
        payment_id: String,
    },
    /// A payment failure; `because_cancelled` when payment only reports the order's own
    /// cancellation back.
    PaymentFailed {
        because_cancelled: bool,
    },
    ShipmentScheduled,
    CancelRequested,
    DeadlinePassed,
}

/// What the order announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announce {
    Confirmed { payment_id: String },
    Cancelled(CancelReason),
}

/// What [`decide`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The order moves to `to`, announcing `announce` if any.
    Move {
        to: Status,
        announce: Option<Announce>,
    },
    /// Nothing changes (a duplicate, or an outcome after the saga ended); why, for the log.
    Ignore(&'static str),
    /// A request the order's state does not allow, with the reason to show the caller.
    Refuse(&'static str),
}

/// The order's transition for `input` in `status`.
pub fn decide(status: Status, input: &Input) -> Decision {
    use Decision::{Ignore, Move, Refuse};
    use Status::*;
    let open = matches!(status, Placed | Reserved);
    match input {
        Input::InventoryReserved if status == Placed => Move {
            to: Reserved,
            announce: None,
        },
        Input::InventoryReserved => Ignore("reservation after the order moved on"),
        Input::InventoryRejected if open => cancel(CancelReason::OutOfStock),
        Input::InventoryRejected => Ignore("rejection after the order ended"),
        // Capture can overtake the reservation: they come on different topics.
        Input::PaymentCaptured { payment_id } if open => Move {
            to: Confirmed,
            announce: Some(Announce::Confirmed {
                payment_id: payment_id.clone(),
            }),
        },
        Input::PaymentCaptured { .. } => {
            Ignore("capture after the order ended; payment refunds it")
        }
        Input::PaymentFailed {
            because_cancelled: false,
        } if open => cancel(CancelReason::PaymentFailed),
        Input::PaymentFailed { .. } => Ignore("payment failure after the order ended"),
        Input::ShipmentScheduled if status == Confirmed => Move {
            to: Shipped,
            announce: None,
        },
        Input::ShipmentScheduled => Ignore("shipment for an order that is not confirmed"),
        Input::CancelRequested if open => cancel(CancelReason::CustomerRequest),
        Input::CancelRequested if status == Cancelled(CancelReason::CustomerRequest) => {
            Ignore("already cancelled by the customer")
        }
        Input::CancelRequested if matches!(status, Cancelled(_)) => {
            Refuse("the order is already cancelled")
        }
        Input::CancelRequested => {
            Refuse("the order is confirmed and handed to shipping; it can no longer be cancelled")
        }
        Input::DeadlinePassed if open => cancel(CancelReason::Timeout),
        Input::DeadlinePassed => Ignore("deadline of an order that already ended"),
    }
}

fn cancel(reason: CancelReason) -> Decision {
    Decision::Move {
        to: Status::Cancelled(reason),
        announce: Some(Announce::Cancelled(reason)),
    }
}

/// A priced line of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub sku: Sku,
    pub quantity: u32,
    pub unit_price: Money,
}

/// A new order, checked and priced, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub currency: Currency,
    pub lines: Vec<Line>,
    pub total: Money,
}

/// Why an order cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    #[error("an order needs at least one line")]
    NoLines,
    #[error("an order has at most {max} lines", max = Lines::MAX)]
    TooManyLines,
    #[error("unknown sku {0}")]
    UnknownSku(Sku),
    #[error("sku {sku} is sold in {sold_in}, not in {asked}")]
    WrongCurrency {
        sku: Sku,
        sold_in: Currency,
        asked: Currency,
    },
    #[error("{sku}: at most {max} units per order", max = Quantity::MAX)]
    TooMany { sku: Sku },
    #[error("the order's total is too large")]
    Overflow,
}

/// Prices `wanted` (the lines as asked for, the request's own type) from `prices` (a SKU's unit
/// price), merging lines of one SKU, in SKU order.
pub fn price(
    order_id: OrderId,
    customer_id: CustomerId,
    currency: Currency,
    wanted: &[OrderLine],
    prices: &BTreeMap<Sku, Money>,
) -> Result<NewOrder, OrderError> {
    if wanted.is_empty() {
        return Err(OrderError::NoLines);
    }
    if wanted.len() > Lines::MAX {
        return Err(OrderError::TooManyLines);
    }
    let mut merged: BTreeMap<&Sku, u32> = BTreeMap::new();
    for line in wanted {
        *merged.entry(&line.sku).or_default() += line.quantity.get();
    }
    let mut lines = Vec::with_capacity(merged.len());
    let mut total = Money::new(0, currency).expect("zero is a valid amount");
    for (sku, quantity) in merged {
        let unit_price = *prices
            .get(sku)
            .ok_or_else(|| OrderError::UnknownSku(sku.clone()))?;
        if unit_price.currency() != currency {
            return Err(OrderError::WrongCurrency {
                sku: sku.clone(),
                sold_in: unit_price.currency(),
                asked: currency,
            });
        }
        let checked = Quantity::new(i64::from(quantity))
            .map_err(|_| OrderError::TooMany { sku: sku.clone() })?;
        let amount = unit_price.times(checked).ok_or(OrderError::Overflow)?;
        total = total.plus(amount).ok_or(OrderError::Overflow)?;
        lines.push(Line {
            sku: sku.clone(),
            quantity,
            unit_price,
        });
    }
    Ok(NewOrder {
        order_id,
        customer_id,
        currency,
        lines,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn captured() -> Input {
        Input::PaymentCaptured {
            payment_id: "pay-1".into(),
        }
    }

    #[test]
    fn the_happy_path_reserves_confirms_and_ships() {
        let mut status = Status::Placed;
        for input in [
            Input::InventoryReserved,
            captured(),
            Input::ShipmentScheduled,
        ] {
            match decide(status, &input) {
                Decision::Move { to, .. } => status = to,
                other => panic!("{input:?} in {status:?}: {other:?}"),
            }
        }
        assert_eq!(status, Status::Shipped);
    }

    #[test]
    fn a_capture_confirms_and_announces_its_payment() {
        assert_eq!(
            decide(Status::Reserved, &captured()),
            Decision::Move {
                to: Status::Confirmed,
                announce: Some(Announce::Confirmed {
                    payment_id: "pay-1".into()
                })
            }
        );
    }

    #[test]
    fn a_capture_that_overtakes_the_reservation_still_confirms() {
        assert!(matches!(
            decide(Status::Placed, &captured()),
            Decision::Move {
                to: Status::Confirmed,
                ..
            }
        ));
    }

    #[test]
    fn a_rejected_reservation_cancels_for_out_of_stock() {
        assert_eq!(
            decide(Status::Placed, &Input::InventoryRejected),
            cancel(CancelReason::OutOfStock)
        );
    }

    #[test]
    fn a_capture_after_a_timeout_changes_nothing() {
        let status = Status::Cancelled(CancelReason::Timeout);
        assert!(matches!(decide(status, &captured()), Decision::Ignore(_)));
    }

    #[test]
    fn payments_own_report_of_a_cancellation_is_not_a_second_cancellation() {
        let failed = Input::PaymentFailed {
            because_cancelled: true,
        };
        assert!(matches!(
            decide(Status::Cancelled(CancelReason::CustomerRequest), &failed),
            Decision::Ignore(_)
        ));
    }

    #[test]
    fn a_confirmed_order_cannot_be_cancelled_by_the_customer() {
        assert!(matches!(
            decide(Status::Confirmed, &Input::CancelRequested),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            decide(Status::Reserved, &Input::CancelRequested),
            Decision::Move {
                to: Status::Cancelled(CancelReason::CustomerRequest),
                ..
            }
        ));
    }

    #[test]
    fn cancelling_twice_is_idempotent_for_the_customer() {
        let status = Status::Cancelled(CancelReason::CustomerRequest);
        assert!(matches!(
            decide(status, &Input::CancelRequested),
            Decision::Ignore(_)
        ));
    }

    #[test]
    fn the_deadline_cancels_only_open_orders() {
        assert_eq!(
            decide(Status::Reserved, &Input::DeadlinePassed),
            cancel(CancelReason::Timeout)
        );
        assert!(matches!(
            decide(Status::Confirmed, &Input::DeadlinePassed),
            Decision::Ignore(_)
        ));
    }

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::parse("EUR").unwrap()).unwrap()
    }

    fn wanted(s: &str, q: i64) -> OrderLine {
        OrderLine {
            sku: sku(s),
            quantity: Quantity::new(q).unwrap(),
        }
    }

    fn new_order(lines: &[OrderLine]) -> Result<NewOrder, OrderError> {
        let prices = BTreeMap::from([(sku("MUG-01"), eur(1250)), (sku("TEE-01"), eur(1999))]);
        price(
            OrderId::parse("o-1").unwrap(),
            CustomerId::parse("cus_a").unwrap(),
            Currency::parse("EUR").unwrap(),
            lines,
            &prices,
        )
    }

    #[test]
    fn lines_of_one_sku_are_merged_and_priced() {
        let order = new_order(&[
            wanted("MUG-01", 2),
            wanted("TEE-01", 1),
            wanted("MUG-01", 1),
        ])
        .unwrap();
        assert_eq!(order.lines.len(), 2);
        assert_eq!(order.lines[0].quantity, 3);
        assert_eq!(order.total.minor(), 3 * 1250 + 1999);
    }

    #[test]
    fn an_unknown_sku_or_no_line_is_refused() {
        assert_eq!(
            new_order(&[wanted("CAP-99", 1)]),
            Err(OrderError::UnknownSku(sku("CAP-99")))
        );
        assert_eq!(new_order(&[]), Err(OrderError::NoLines));
        assert!(matches!(
            new_order(&[wanted("MUG-01", 600), wanted("MUG-01", 600)]),
            Err(OrderError::TooMany { .. })
        ));
    }

    fn any_status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::Placed),
            Just(Status::Reserved),
            Just(Status::Confirmed),
            Just(Status::Shipped),
            Just(Status::Cancelled(CancelReason::OutOfStock)),
            Just(Status::Cancelled(CancelReason::PaymentFailed)),
            Just(Status::Cancelled(CancelReason::CustomerRequest)),
            Just(Status::Cancelled(CancelReason::Timeout)),
        ]
    }

    fn any_input() -> impl Strategy<Value = Input> {
        prop_oneof![
            Just(Input::InventoryReserved),
            Just(Input::InventoryRejected),
            Just(captured()),
            any::<bool>().prop_map(|because_cancelled| Input::PaymentFailed { because_cancelled }),
            Just(Input::ShipmentScheduled),
            Just(Input::CancelRequested),
            Just(Input::DeadlinePassed),
        ]
    }

    proptest! {
        #[test]
        fn a_final_order_never_moves_back_to_an_open_state(
            inputs in proptest::collection::vec(any_input(), 0..20)
        ) {
            let mut status = Status::Placed;
            let mut ended = false;
            let mut announcements = 0;
            for input in &inputs {
                if let Decision::Move { to, announce } = decide(status, input) {
                    prop_assert!(!ended || to == Status::Shipped, "{status:?} -> {to:?}");
                    announcements += usize::from(announce.is_some());
                    status = to;
                }
                ended |= status.is_final();
            }
            // One saga, one outcome: confirmed or cancelled, announced once.
            prop_assert!(announcements <= 1);
        }

        #[test]
        fn every_cancellation_is_announced_with_its_reason(
            status in any_status(), input in any_input()
        ) {
            if let Decision::Move { to: Status::Cancelled(reason), announce } = decide(status, &input) {
                prop_assert_eq!(announce, Some(Announce::Cancelled(reason)));
            }
        }

        #[test]
        fn a_priced_total_is_the_sum_of_its_lines(
            quantities in proptest::collection::vec((0usize..2, 1i64..=400), 1..6)
        ) {
            let lines: Vec<OrderLine> = quantities
                .iter()
                .map(|(which, q)| wanted(["MUG-01", "TEE-01"][*which], *q))
                .collect();
            if let Ok(order) = new_order(&lines) {
                let sum: i64 = order.lines.iter().map(|l| l.unit_price.minor() * i64::from(l.quantity)).sum();
                prop_assert_eq!(order.total.minor(), sum);
                let asked: i64 = quantities.iter().map(|(_, q)| q).sum();
                prop_assert_eq!(order.lines.iter().map(|l| i64::from(l.quantity)).sum::<i64>(), asked);
            }
        }
    }
}
