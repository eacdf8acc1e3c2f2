//! The pure core of `choreo trace`: steps put in causal order, and the saga's verdict from the
//! events seen. No I/O: the steps come from [`super::run`], which reads them from Kafka.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value as Json;

/// One event of the order, as read from its topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub event_id: Option<String>,
    pub causation_id: Option<String>,
    /// The full record name, e.g. `shop.order.OrderPlaced`.
    pub event_type: String,
    pub producer: Option<String>,
    /// When it happened (the occurred_at header, else the Kafka timestamp), ms since the epoch.
    pub occurred_at_ms: Option<i64>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The decoded value (null when it could not be decoded).
    pub value: Json,
}

impl Step {
    /// The type's short name, e.g. `OrderPlaced`.
    pub fn short_type(&self) -> &str {
        self.event_type
            .rsplit('.')
            .next()
            .unwrap_or(&self.event_type)
    }

    /// A text field of the value (an enum symbol, a string), if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.value.get(name)?.as_str()
    }
}

/// Puts steps in causal order: an event after the one that caused it (causation_id names the
/// parent's event_id), otherwise by time, then topic and offset. A cause not among the steps
/// (e.g. an HTTP request, or an event before --since) imposes nothing.
pub fn causal_order(mut steps: Vec<Step>) -> Vec<Step> {
    let time_key = |s: &Step| {
        (
            s.occurred_at_ms.unwrap_or(i64::MAX),
            s.topic.clone(),
            s.partition,
            s.offset,
        )
    };
    steps.sort_by_key(time_key);
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((s.event_id.as_deref()?, i)))
        .collect();
    let parent: Vec<Option<usize>> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = *index.get(s.causation_id.as_deref()?)?;
            (p != i).then_some(p)
        })
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            children[*p].push(i);
        }
    }
    // Kahn's algorithm; the ready set is ordered by position in time order. A cycle (corrupt
    // headers) is broken by taking the earliest remaining step.
    let mut waiting: Vec<bool> = parent.iter().map(Option::is_some).collect();
    let mut ready: BTreeSet<usize> = (0..steps.len()).filter(|&i| !waiting[i]).collect();
    let mut placed = vec![false; steps.len()];
    let mut order = Vec::with_capacity(steps.len());
    while order.len() < steps.len() {
        let next = match ready.pop_first() {
            Some(next) => next,
            None => (0..steps.len())
                .find(|&i| !placed[i])
                .expect("a step is left"),
        };
        if placed[next] {
            continue;
        }
        placed[next] = true;
        order.push(next);
        for &child in &children[next] {
            if waiting[child] {
                waiting[child] = false;
                ready.insert(child);
            }
        }
    }
    let mut slots: Vec<Option<Step>> = steps.drain(..).map(Some).collect();
    order
        .into_iter()
        .map(|i| slots[i].take().expect("each step once"))
        .collect()
}

/// How the order's saga stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verdict {
    /// Confirmed and shipment scheduled.
    Completed,
    /// Cancelled; compensations seen and still missing.
    Cancelled {
        reason: String,
        compensated: Vec<String>,
        missing: Vec<String>,
    },
    /// Neither: the saga waits for something since its last event.
    Stuck {
        since_ms: Option<i64>,
        waiting_for: String,
    },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Completed => write!(f, "completed"),
            Verdict::Cancelled {
                reason,
                compensated,
                missing,
            } => {
                write!(f, "cancelled ({reason})")?;
                let list = |items: &[String]| {
                    if items.is_empty() {
                        "none".to_owned()
                    } else {
                        items.join(", ")
                    }
                };
                write!(f, "; compensations seen: {}", list(compensated))?;
                write!(f, "; missing: {}", list(missing))
            }
            Verdict::Stuck {
                since_ms,
                waiting_for,
            } => {
                let since = since_ms.map_or_else(|| "?".to_owned(), crate::inspect::format_ms);
                write!(f, "stuck since {since} waiting for {waiting_for}")
            }
        }
    }
}

/// The verdict from the events seen (in any order).
pub fn verdict(steps: &[Step]) -> Verdict {
    let seen = |name: &str| steps.iter().any(|s| s.short_type() == name);
    let first = |name: &str| steps.iter().find(|s| s.short_type() == name);
    if let Some(cancelled) = first("OrderCancelled") {
        let reason = cancelled.field("reason").unwrap_or("unknown").to_owned();
        let mut compensated = Vec::new();
        let mut missing = Vec::new();
        let reserved = seen("InventoryReserved");
        if seen("InventoryReleased") {
            compensated.push("InventoryReleased".to_owned());
        } else if reserved {
            missing.push("InventoryReleased (the reservation was not released)".to_owned());
        }
        let captured = seen("PaymentCaptured");
        let voided = steps.iter().any(|s| {
            s.short_type() == "PaymentFailed" && s.field("reason") == Some("ORDER_CANCELLED")
        });
        let failed = seen("PaymentFailed");
        if seen("PaymentRefunded") {
            compensated.push("PaymentRefunded".to_owned());
        } else if captured {
            missing.push("PaymentRefunded (the capture was not refunded)".to_owned());
        }
        if voided {
            compensated.push("payment voided (PaymentFailed ORDER_CANCELLED)".to_owned());
        } else if reserved && !captured && !failed {
            missing.push(
                "a payment outcome (a void as PaymentFailed ORDER_CANCELLED, or a capture to \
                 refund)"
                    .to_owned(),
            );
        }
        return Verdict::Cancelled {
            reason,
            compensated,
            missing,
        };
    }
    if seen("OrderConfirmed") && seen("ShipmentScheduled") {
        return Verdict::Completed;
    }
    let waiting_for = if seen("OrderConfirmed") {
        "ShipmentScheduled (confirmed but not shipped)"
    } else if seen("PaymentCaptured") {
        "OrderConfirmed (payment captured but the order not confirmed)"
    } else if seen("PaymentFailed") || seen("InventoryRejected") {
        "OrderCancelled (the saga failed but the order was not cancelled)"
    } else if seen("InventoryReserved") {
        "a payment outcome (PaymentCaptured or PaymentFailed)"
    } else if seen("OrderPlaced") {
        "a reservation outcome (InventoryReserved or InventoryRejected)"
    } else {
        "OrderPlaced (no event of the order's start was seen)"
    };
    Verdict::Stuck {
        since_ms: steps.iter().filter_map(|s| s.occurred_at_ms).max(),
        waiting_for: waiting_for.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(id: &str, cause: Option<&str>, event_type: &str, at: i64, value: Json) -> Step {
        Step {
            event_id: Some(id.into()),
            causation_id: cause.map(Into::into),
            event_type: event_type.into(),
            producer: None,
            occurred_at_ms: Some(at),
            topic: "t".into(),
            partition: 0,
            offset: at,
            value,
        }
    }

    fn types(steps: &[Step]) -> Vec<&str> {
        steps.iter().map(Step::short_type).collect()
    }

    #[test]
    fn a_child_comes_after_its_cause_even_with_an_earlier_clock() {
        let steps = vec![
            step(
                "b",
                Some("a"),
                "shop.inventory.InventoryReserved",
                5,
                json!({}),
            ),
            step("a", None, "shop.order.OrderPlaced", 10, json!({})),
            step("c", Some("b"), "shop.payment.PaymentCaptured", 7, json!({})),
        ];
        assert_eq!(
            types(&causal_order(steps)),
            ["OrderPlaced", "InventoryReserved", "PaymentCaptured"]
        );
    }

    #[test]
    fn siblings_and_unlinked_steps_are_ordered_by_time() {
        let steps = vec![
            step("c", Some("a"), "x.C", 30, json!({})),
            step("b", Some("a"), "x.B", 20, json!({})),
            step("a", None, "x.A", 10, json!({})),
            step("d", Some("missing"), "x.D", 25, json!({})),
        ];
        assert_eq!(types(&causal_order(steps)), ["A", "B", "D", "C"]);
    }

    #[test]
    fn a_cycle_does_not_lose_steps() {
        let steps = vec![
            step("a", Some("b"), "x.A", 10, json!({})),
            step("b", Some("a"), "x.B", 20, json!({})),
        ];
        assert_eq!(causal_order(steps).len(), 2);
    }

    #[test]
    fn a_confirmed_and_shipped_order_is_completed() {
        let steps = vec![
            step("1", None, "shop.order.OrderPlaced", 1, json!({})),
            step("2", None, "shop.inventory.InventoryReserved", 2, json!({})),
            step("3", None, "shop.payment.PaymentCaptured", 3, json!({})),
            step("4", None, "shop.order.OrderConfirmed", 4, json!({})),
            step("5", None, "shop.shipping.ShipmentScheduled", 5, json!({})),
        ];
        assert_eq!(verdict(&steps), Verdict::Completed);
    }

    #[test]
    fn a_cancelled_order_lists_the_compensations_seen_and_missing() {
        let steps = vec![
            step("1", None, "shop.order.OrderPlaced", 1, json!({})),
            step("2", None, "shop.inventory.InventoryReserved", 2, json!({})),
            step("3", None, "shop.payment.PaymentCaptured", 3, json!({})),
            step(
                "4",
                None,
                "shop.order.OrderCancelled",
                4,
                json!({"reason": "TIMEOUT"}),
            ),
            step("5", None, "shop.inventory.InventoryReleased", 5, json!({})),
        ];
        let Verdict::Cancelled {
            reason,
            compensated,
            missing,
        } = verdict(&steps)
        else {
            panic!("cancelled")
        };
        assert_eq!(reason, "TIMEOUT");
        assert_eq!(compensated, ["InventoryReleased"]);
        assert_eq!(missing.len(), 1);
        assert!(missing[0].starts_with("PaymentRefunded"), "{missing:?}");
    }

    #[test]
    fn a_voided_payment_counts_as_a_compensation() {
        let steps = vec![
            step("1", None, "shop.order.OrderPlaced", 1, json!({})),
            step("2", None, "shop.inventory.InventoryReserved", 2, json!({})),
            step(
                "3",
                None,
                "shop.order.OrderCancelled",
                3,
                json!({"reason": "CUSTOMER_REQUEST"}),
            ),
            step(
                "4",
                None,
                "shop.payment.PaymentFailed",
                4,
                json!({"reason": "ORDER_CANCELLED"}),
            ),
            step("5", None, "shop.inventory.InventoryReleased", 5, json!({})),
        ];
        assert_eq!(
            verdict(&steps),
            Verdict::Cancelled {
                reason: "CUSTOMER_REQUEST".into(),
                compensated: vec![
                    "InventoryReleased".into(),
                    "payment voided (PaymentFailed ORDER_CANCELLED)".into()
                ],
                missing: vec![],
            }
        );
    }

    #[test]
    fn an_out_of_stock_cancellation_needs_no_compensation() {
        let steps = vec![
            step("1", None, "shop.order.OrderPlaced", 1, json!({})),
            step("2", None, "shop.inventory.InventoryRejected", 2, json!({})),
            step(
                "3",
                None,
                "shop.order.OrderCancelled",
                3,
                json!({"reason": "OUT_OF_STOCK"}),
            ),
        ];
        let verdict = verdict(&steps);
        assert_eq!(
            verdict.to_string(),
            "cancelled (OUT_OF_STOCK); compensations seen: none; missing: none"
        );
    }

    #[test]
    fn a_stuck_order_says_what_it_waits_for_since_its_last_event() {
        let placed = step("1", None, "shop.order.OrderPlaced", 1_000, json!({}));
        let reserved = step(
            "2",
            None,
            "shop.inventory.InventoryReserved",
            2_000,
            json!({}),
        );
        let confirmed = step("3", None, "shop.order.OrderConfirmed", 3_000, json!({}));
        let waiting = |steps: &[Step]| match verdict(steps) {
            Verdict::Stuck {
                since_ms,
                waiting_for,
            } => (since_ms, waiting_for),
            other => panic!("not stuck: {other:?}"),
        };
        let (since, what) = waiting(std::slice::from_ref(&placed));
        assert_eq!(since, Some(1_000));
        assert!(what.starts_with("a reservation outcome"), "{what}");
        let (since, what) = waiting(&[placed.clone(), reserved.clone()]);
        assert_eq!(since, Some(2_000));
        assert!(what.starts_with("a payment outcome"), "{what}");
        let (_, what) = waiting(&[placed, reserved, confirmed]);
        assert!(what.starts_with("ShipmentScheduled"), "{what}");
    }
}
