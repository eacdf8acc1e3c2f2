//! The pure core of `choreo trace`: steps put in causal order, the topics and the saga that
//! apply, and the verdict on the events seen by the rules of the saga file
//! ([`choreo::saga`] evaluates them; nothing here knows any saga). No I/O: the steps come
//! from [`super::run`], which reads them from Kafka, and the saga from its file.

use std::collections::{BTreeSet, HashMap};

use choreo::saga::{short_name, Observed, Saga, Standing};
use serde::Serialize;
use serde_json::Value as Json;

use crate::topics::TopicSpec;

/// One event of the order, as read from its topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub event_id: Option<String>,
    pub causation_id: Option<String>,
    /// The full record name, e.g. `shop.order.OrderPlaced`.
    pub event_type: String,
    pub producer: Option<String>,
    /// The OpenTelemetry trace the event was written in (from its `traceparent`).
    pub trace_id: Option<String>,
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
        short_name(&self.event_type)
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

/// A break in the causal chain: after the first step, every event should name (causation_id)
/// an event of the same run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "gap", rename_all = "snake_case")]
pub enum Gap {
    /// The event names no cause.
    NoCause { event_id: Option<String> },
    /// The event names a cause that is not among the run's events (written before `--since`,
    /// or by another run: a wrong correlation).
    CauseNotSeen {
        event_id: Option<String>,
        causation_id: String,
    },
}

/// The breaks in the chain of `steps` (in causal order): the first step starts the run; every
/// later one must name an event of the run.
pub fn chain_gaps(steps: &[Step]) -> Vec<Gap> {
    let seen: BTreeSet<&str> = steps.iter().filter_map(|s| s.event_id.as_deref()).collect();
    steps
        .iter()
        .skip(1)
        .filter_map(|step| match step.causation_id.as_deref() {
            None => Some(Gap::NoCause {
                event_id: step.event_id.clone(),
            }),
            Some(cause) if !seen.contains(cause) => Some(Gap::CauseNotSeen {
                event_id: step.event_id.clone(),
                causation_id: cause.to_owned(),
            }),
            Some(_) => None,
        })
        .collect()
}

/// The traces the run's events were written in, with how many events each, most first.
pub fn traces(steps: &[Step]) -> Vec<(String, usize)> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in steps.iter().filter_map(|s| s.trace_id.as_deref()) {
        *counts.entry(id).or_default() += 1;
    }
    let mut out: Vec<(String, usize)> =
        counts.into_iter().map(|(k, n)| (k.to_owned(), n)).collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`), if well formed.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()) && trace != "0".repeat(32))
        .then(|| trace.to_ascii_lowercase())
}

/// How the run stands, as `choreo trace` says it: ended (the end's name, its reason, the
/// compensations seen and missing when the end owes any), or stuck waiting for a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ended {
        /// The end's name in the saga file (`completed`, `cancelled`).
        status: String,
        /// Why, when the end has reasons.
        reason: Option<String>,
        /// Seen and missing, when the end owes compensations.
        compensations: Option<Compensations>,
    },
    /// Not ended: the run waits for something since its last event.
    Stuck {
        since_ms: Option<i64>,
        waiting_for: String,
    },
}

/// The compensations an ended run owes: those seen, and those still missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compensations {
    pub seen: Vec<String>,
    pub missing: Vec<String>,
}

impl Serialize for Verdict {
    /// `{"status": <end>, "reason"?, "compensated"?, "missing"?}` or
    /// `{"status": "stuck", "since_ms", "waiting_for"}`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        match self {
            Verdict::Ended {
                status,
                reason,
                compensations,
            } => {
                map.serialize_entry("status", status)?;
                if let Some(reason) = reason {
                    map.serialize_entry("reason", reason)?;
                }
                if let Some(c) = compensations {
                    map.serialize_entry("compensated", &c.seen)?;
                    map.serialize_entry("missing", &c.missing)?;
                }
            }
            Verdict::Stuck {
                since_ms,
                waiting_for,
            } => {
                map.serialize_entry("status", "stuck")?;
                map.serialize_entry("since_ms", since_ms)?;
                map.serialize_entry("waiting_for", waiting_for)?;
            }
        }
        map.end()
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Ended {
                status,
                reason,
                compensations,
            } => {
                write!(f, "{status}")?;
                if let Some(reason) = reason {
                    write!(f, " ({reason})")?;
                }
                if let Some(c) = compensations {
                    let list = |items: &[String]| {
                        if items.is_empty() {
                            "none".to_owned()
                        } else {
                            items.join(", ")
                        }
                    };
                    write!(f, "; compensations seen: {}", list(&c.seen))?;
                    write!(f, "; missing: {}", list(&c.missing))?;
                }
                Ok(())
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

impl Observed for Step {
    fn event(&self) -> &str {
        &self.event_type
    }

    fn field(&self, name: &str) -> Option<&str> {
        Step::field(self, name)
    }

    fn at_ms(&self) -> Option<i64> {
        self.occurred_at_ms
    }
}

/// The verdict on the events seen (in any order), by the rules of `saga`.
pub fn verdict(saga: &Saga, steps: &[Step]) -> Verdict {
    match saga.evaluate(steps) {
        Standing::Ended(ending) => {
            let owes = saga
                .end(&ending.end)
                .is_some_and(|end| !end.compensations.is_empty());
            Verdict::Ended {
                compensations: owes.then_some(Compensations {
                    seen: ending.compensated,
                    missing: ending.missing,
                }),
                status: ending.end,
                reason: ending.reason,
            }
        }
        Standing::Waiting(waiting) => Verdict::Stuck {
            since_ms: waiting.since_ms,
            waiting_for: waiting.waiting_for,
        },
    }
}

/// The topics to read for `sagas`: those whose spec lists an event a saga names (by short
/// name), in the specs' order.
pub fn topics_for(sagas: &[Saga], specs: &[TopicSpec]) -> Vec<String> {
    specs
        .iter()
        .filter(|spec| {
            spec.events.iter().any(|event| {
                let event = short_name(event);
                sagas.iter().any(|saga| saga.events().contains(event))
            })
        })
        .map(|spec| spec.name.clone())
        .collect()
}

/// The saga whose rules judge `steps`: the only one, or the only one that names any of their
/// events; otherwise why none can be chosen.
pub fn choose<'a>(sagas: &'a [Saga], steps: &[Step]) -> Result<&'a Saga, String> {
    if let [saga] = sagas {
        return Ok(saga);
    }
    let names: Vec<&str> = sagas
        .iter()
        .filter(|saga| {
            let events = saga.events();
            steps.iter().any(|s| events.contains(s.short_type()))
        })
        .map(|saga| saga.name.as_str())
        .collect();
    match names.as_slice() {
        [name] => Ok(sagas
            .iter()
            .find(|s| s.name == *name)
            .expect("a saga just found")),
        [] => Err("no saga names any of these events".into()),
        several => Err(format!(
            "the sagas {} all name these events",
            several.join(", ")
        )),
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
            trace_id: None,
            occurred_at_ms: Some(at),
            topic: "t".into(),
            partition: 0,
            offset: at,
            value,
        }
    }

    /// The shop's order saga, as `choreo trace` reads it by default.
    fn order_saga() -> Saga {
        Saga::parse(
            std::path::Path::new("sagas/order.yaml"),
            include_str!("../../../../sagas/order.yaml"),
        )
        .expect("sagas/order.yaml parses")
    }

    fn verdict(steps: &[Step]) -> Verdict {
        super::verdict(&order_saga(), steps)
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
        let verdict = verdict(&steps);
        assert_eq!(
            verdict,
            Verdict::Ended {
                status: "completed".into(),
                reason: None,
                compensations: None,
            }
        );
        assert_eq!(verdict.to_string(), "completed");
        assert_eq!(
            serde_json::to_value(&verdict).unwrap(),
            json!({"status": "completed"})
        );
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
        let Verdict::Ended {
            status,
            reason,
            compensations:
                Some(Compensations {
                    seen: compensated,
                    missing,
                }),
        } = verdict(&steps)
        else {
            panic!("cancelled")
        };
        assert_eq!(status, "cancelled");
        assert_eq!(reason.as_deref(), Some("TIMEOUT"));
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
        let verdict = verdict(&steps);
        assert_eq!(
            verdict,
            Verdict::Ended {
                status: "cancelled".into(),
                reason: Some("CUSTOMER_REQUEST".into()),
                compensations: Some(Compensations {
                    seen: vec![
                        "InventoryReleased".into(),
                        "payment voided (PaymentFailed ORDER_CANCELLED)".into()
                    ],
                    missing: vec![],
                }),
            }
        );
        assert_eq!(
            serde_json::to_value(&verdict).unwrap(),
            json!({
                "status": "cancelled",
                "reason": "CUSTOMER_REQUEST",
                "compensated": [
                    "InventoryReleased",
                    "payment voided (PaymentFailed ORDER_CANCELLED)"
                ],
                "missing": [],
            })
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

    #[test]
    fn an_order_with_no_start_waits_for_it() {
        let stray = step("1", None, "shop.other.Something", 1, json!({}));
        assert_eq!(
            verdict(&[stray]).to_string(),
            "stuck since 1970-01-01T00:00:00.001Z waiting for OrderPlaced (no event of the \
             order's start was seen)"
        );
    }

    fn spec(name: &str, events: &[&str]) -> TopicSpec {
        TopicSpec {
            name: name.into(),
            description: "d".into(),
            partitions: 1,
            replication_factor: 1,
            configs: Default::default(),
            key_format: crate::topics::KeyFormat::String,
            key_description: "k".into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            producer: "p".into(),
            consumers: vec![],
        }
    }

    #[test]
    fn the_topics_read_are_those_that_carry_an_event_of_the_saga() {
        let specs = [
            spec(
                "a.orders",
                &["a.order.OrderPlaced", "a.order.OrderCancelled"],
            ),
            spec("a.audit", &["a.audit.Audited"]),
            spec("a.payments", &["a.payment.PaymentRefunded"]),
        ];
        assert_eq!(
            topics_for(&[order_saga()], &specs),
            ["a.orders", "a.payments"]
        );
    }

    #[test]
    fn a_saga_is_chosen_by_the_events_seen_when_there_are_several() {
        let order = order_saga();
        let mut other = order_saga();
        other.name = "other".into();
        other.start = "Begun".into();
        other.steps.clear();
        other.ends.clear();
        let placed = [step("1", None, "shop.order.OrderPlaced", 1, json!({}))];
        let stray = [step("1", None, "x.Nothing", 1, json!({}))];
        assert_eq!(
            choose(std::slice::from_ref(&order), &stray).unwrap().name,
            "order"
        );
        let both = [order.clone(), other.clone()];
        assert_eq!(choose(&both, &placed).unwrap().name, "order");
        assert!(choose(&both, &stray).unwrap_err().contains("no saga"));
        let twins = [
            order.clone(),
            Saga {
                name: "twin".into(),
                ..order
            },
        ];
        let error = choose(&twins, &placed).unwrap_err();
        assert!(error.contains("order, twin"), "{error}");
    }

    #[test]
    fn a_whole_chain_has_no_gaps_and_a_broken_one_names_each_break() {
        let whole = causal_order(vec![
            step("a", None, "shop.order.OrderPlaced", 1, json!({})),
            step(
                "b",
                Some("a"),
                "shop.inventory.InventoryReserved",
                2,
                json!({}),
            ),
            step("c", Some("b"), "shop.payment.PaymentCaptured", 3, json!({})),
        ]);
        assert!(chain_gaps(&whole).is_empty());
        let broken = causal_order(vec![
            step("a", None, "shop.order.OrderPlaced", 1, json!({})),
            step("b", None, "shop.payment.PaymentCaptured", 2, json!({})),
            step("c", Some("zz"), "shop.order.OrderCancelled", 3, json!({})),
        ]);
        assert_eq!(
            chain_gaps(&broken),
            vec![
                Gap::NoCause {
                    event_id: Some("b".into())
                },
                Gap::CauseNotSeen {
                    event_id: Some("c".into()),
                    causation_id: "zz".into()
                },
            ]
        );
    }

    #[test]
    fn traces_are_counted_most_first_and_trace_ids_read_from_traceparents() {
        let mut steps = vec![
            step("a", None, "t.A", 1, json!({})),
            step("b", Some("a"), "t.B", 2, json!({})),
            step("c", Some("b"), "t.C", 3, json!({})),
        ];
        steps[0].trace_id = Some("x".into());
        steps[1].trace_id = Some("y".into());
        steps[2].trace_id = Some("y".into());
        assert_eq!(traces(&steps), vec![("y".into(), 2), ("x".into(), 1)]);
        assert_eq!(
            trace_id_of("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "",
            "00-xyz-1-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad}");
        }
    }
}
