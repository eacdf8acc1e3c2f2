//! The saga's invariants for a settled run, each a named [`Verdict`] so that a harness can count
//! them (`shop-chaos` prints `N passed, M failed`) and the end-to-end test can fail at the first:
//! how each saga ended, the money per order, the stock per SKU, each saga's events on the topics
//! ending it with every compensation (by the rules of `sagas/order.yaml`, see [`crate::saga`]),
//! each event published once and in causal order, and each event applied once by the order
//! service. A verdict names up to three of the orders or SKUs that break it, and how many do.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use choreo::saga::Standing;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde_json::Value;

use crate::mix::Kind;
use crate::scenario::{net_captured, Placed, Run, Settled};
use crate::topics::{marks, read_between, Seen, SHOP_TOPICS};

/// What the checks found besides the verdicts, for the report.
#[derive(Debug, Default)]
pub struct Report {
    /// Orders per (kind, ending).
    pub outcomes: BTreeMap<(Kind, String), usize>,
    /// Orders whose ending their kind does not expect (only counted when not strict).
    pub unexpected: Vec<String>,
    /// Orders that ended later than their deadline allows (only counted without a slack).
    pub late: usize,
    pub messages: usize,
    pub distinct_events: usize,
    /// Every event of the run read from the topics.
    pub events: Vec<Seen>,
}

/// How strictly endings are judged.
#[derive(Debug, Clone, Copy)]
pub struct Strictness {
    pub endings: Endings,
    /// Every saga must end by its deadline plus this (none: late endings are counted).
    pub deadline_slack: Option<chrono::Duration>,
}

/// Which endings of a saga break the invariant, beyond those its kind allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endings {
    /// Any other ending is a breach.
    Strict,
    /// Other endings are counted in [`Report::unexpected`], never a breach.
    Counted,
    /// A timeout is counted (a fault can hold any saga past its deadline); any other ending
    /// (an in-stock order out of stock, a declined card shipped) is a breach.
    OrTimeout,
}

/// One invariant and whether it held.
#[derive(Debug)]
pub struct Verdict {
    pub name: &'static str,
    pub outcome: anyhow::Result<()>,
}

impl Verdict {
    pub fn new(name: &'static str, outcome: anyhow::Result<()>) -> Self {
        Self { name, outcome }
    }
}

/// The breaches of one invariant, gathered rather than stopping at the first.
#[derive(Default)]
pub struct Breaches(Vec<String>);

impl FromIterator<String> for Breaches {
    fn from_iter<I: IntoIterator<Item = String>>(items: I) -> Self {
        Self(items.into_iter().collect())
    }
}

impl Breaches {
    pub fn check(&mut self, holds: bool, what: impl FnOnce() -> String) {
        if !holds {
            self.0.push(what());
        }
    }

    pub fn add(&mut self, what: String) {
        self.0.push(what);
    }

    pub fn outcome(self) -> anyhow::Result<()> {
        match self.0.len() {
            0 => Ok(()),
            n => anyhow::bail!("{n} breach(es), e.g. {}", self.0[..n.min(3)].join("; ")),
        }
    }
}

pub(crate) fn time(value: &Value) -> anyhow::Result<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("a time, got {value}"))
}

pub(crate) fn int(value: &Value) -> anyhow::Result<i64> {
    value
        .as_i64()
        .with_context(|| format!("an integer, got {value}"))
}

/// When the order's saga ended on its timeline (confirmed or cancelled).
pub fn ended_at(order: &Value) -> anyhow::Result<DateTime<Utc>> {
    order["timeline"]
        .as_array()
        .context("a timeline")?
        .iter()
        .find(|step| {
            matches!(
                step["event_type"].as_str(),
                Some("OrderConfirmed" | "OrderCancelled")
            )
        })
        .map(|step| time(&step["at"]))
        .transpose()?
        .context("no ending on the timeline")
}

/// The events the order service applies from other services, each at most once per order.
const APPLIED: [&str; 7] = [
    "InventoryReserved",
    "InventoryRejected",
    "InventoryReleased",
    "PaymentCaptured",
    "PaymentFailed",
    "PaymentRefunded",
    "ShipmentScheduled",
];

impl Run {
    /// Every invariant of the saga for `placed`, each judged on its own.
    pub async fn verdicts(
        &self,
        placed: &[Placed],
        settled: &HashMap<String, Settled>,
        rules: Strictness,
    ) -> anyhow::Result<(Report, Vec<Verdict>)> {
        let mut report = Report::default();
        let mut verdicts = Vec::new();
        verdicts.push(Verdict::new(
            match rules.endings {
                Endings::OrTimeout => "every saga ended as its kind allows, or timed out",
                Endings::Strict | Endings::Counted => "every saga ended as its kind allows",
            },
            endings(placed, settled, rules, &mut report),
        ));
        let (money, sold) = money(placed, settled);
        verdicts.push(Verdict::new(
            "each shipped order captured its total once, each cancelled one nothing",
            money,
        ));
        verdicts.push(Verdict::new(
            "stock conserved per SKU, never negative, nothing reserved, sold = shipped",
            self.stock(&sold).await,
        ));
        let seen = self.events_ended(placed, settled).await?;
        verdicts.push(Verdict::new(
            "each saga's events end it as its order ended, with every compensation (sagas/order.yaml)",
            saga_ends(placed, settled, &seen),
        ));
        let count = counter(&seen);
        report.messages = seen.len();
        report.distinct_events = count.0.values().map(HashSet::len).sum();
        verdicts.push(Verdict::new(
            "each saga's events published once on the topics",
            published_once(placed, settled, &count),
        ));
        verdicts.push(Verdict::new(
            "each producer published an order's events in their causal order",
            published_in_order(&seen),
        ));
        verdicts.push(Verdict::new(
            "the order service applied each event once",
            self.applied_once(placed, &count).await,
        ));
        report.events = seen;
        Ok((report, verdicts))
    }

    /// The events of `placed` on the shop's topics since the run began, read again (every 2 s,
    /// for up to 60 s) while some saga's events do not show its end and every compensation yet:
    /// a relay publishes a row a moment after its service committed it, and a compensation may
    /// follow the state the saga counted as settled by (a void after the order's cancellation).
    async fn events_ended(
        &self,
        placed: &[Placed],
        settled: &HashMap<String, Settled>,
    ) -> anyhow::Result<Vec<Seen>> {
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            let seen = self.events_of(placed).await?;
            if saga_ends(placed, settled, &seen).is_ok() || Instant::now() > give_up {
                return Ok(seen);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// The events of `placed` on the shop's topics since the run began.
    async fn events_of(&self, placed: &[Placed]) -> anyhow::Result<Vec<Seen>> {
        let after = {
            let kafka = self.kafka.clone();
            tokio::task::spawn_blocking(move || marks(&kafka, SHOP_TOPICS)).await??
        };
        let (kafka, before) = (self.kafka.clone(), self.before.clone());
        let seen =
            tokio::task::spawn_blocking(move || read_between(&kafka, &before, &after)).await??;
        let ours: HashSet<&str> = placed.iter().map(|p| p.order_id.as_str()).collect();
        Ok(seen
            .into_iter()
            .filter(|e| ours.contains(e.key.as_str()))
            .collect())
    }

    async fn stock(&self, sold: &HashMap<String, i64>) -> anyhow::Result<()> {
        let mut breaches = Breaches::default();
        for sku in self.skus.stocked.iter().chain([&self.skus.scarce]) {
            let level = self.shop.stock(sku).await?;
            let (available, reserved, sold_now, received) = (
                int(&level["available"])?,
                int(&level["reserved"])?,
                int(&level["sold"])?,
                int(&level["received"])?,
            );
            breaches.check(available >= 0 && reserved >= 0 && sold_now >= 0, || {
                format!("{sku} negative: {level}")
            });
            breaches.check(available + reserved + sold_now == received, || {
                format!("stock of {sku} is not conserved: {level}")
            });
            breaches.check(reserved == 0, || format!("{sku} is left reserved: {level}"));
            let shipped = sold.get(sku).copied().unwrap_or(0);
            breaches.check(sold_now == shipped, || {
                format!("{sku}: sold {sold_now}, shipped {shipped}")
            });
        }
        breaches.outcome()
    }

    /// The order service applied each event about an order once: its timeline records every
    /// event it applies. The last ones (a PaymentFailed that reports a voided charge) may
    /// still be on their way when the saga counts as settled, so wait for the counts.
    async fn applied_once(&self, placed: &[Placed], counts: &Counts) -> anyhow::Result<()> {
        let count = |order: &str, ty: &str| counts.of(order, ty);
        let mut unchecked: Vec<&str> = placed.iter().map(|p| p.order_id.as_str()).collect();
        let give_up = Instant::now() + Duration::from_secs(60);
        let mut breaches = Breaches::default();
        loop {
            let orders: Vec<anyhow::Result<(&str, Value)>> =
                stream::iter(unchecked.iter().copied())
                    .map(|id| async move { Ok((id, self.shop.order(id).await?)) })
                    .buffer_unordered(32)
                    .collect()
                    .await;
            let mut behind = Vec::new();
            for order in orders {
                let (id, order) = order?;
                let timeline = order["timeline"].as_array().context("a timeline")?;
                for ty in APPLIED {
                    let applied = timeline.iter().filter(|s| s["event_type"] == ty).count();
                    breaches.check(applied <= count(id, ty), || {
                        format!("{id}: the order service applied {ty} {applied} times")
                    });
                    if applied < count(id, ty) {
                        behind.push(id);
                    }
                }
            }
            if behind.is_empty() {
                return breaches.outcome();
            }
            if Instant::now() > give_up {
                breaches.add(format!(
                    "{} events never applied by the order service, e.g. {:?}",
                    behind.len(),
                    &behind[..behind.len().min(3)]
                ));
                return breaches.outcome();
            }
            unchecked = behind;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The distinct event ids seen per (order id, short event type).
struct Counts(HashMap<(String, String), HashSet<String>>);

impl Counts {
    fn of(&self, order: &str, ty: &str) -> usize {
        self.0
            .get(&(order.to_owned(), ty.to_owned()))
            .map_or(0, HashSet::len)
    }
}

fn counter(seen: &[Seen]) -> Counts {
    let mut events: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for event in seen {
        let short = event
            .event_type
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        events
            .entry((event.key.clone(), short))
            .or_default()
            .insert(event.event_id.clone());
    }
    Counts(events)
}

/// Each saga ended as its kind allows and (with a slack) by its deadline.
fn endings(
    placed: &[Placed],
    settled: &HashMap<String, Settled>,
    rules: Strictness,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut breaches = Breaches::default();
    for p in placed {
        let (id, s) = (&p.order_id, &settled[&p.order_id]);
        let status = s.order["status"].as_str().unwrap_or_default();
        let reason = s.order["cancel_reason"].as_str();
        let ending = if status == "shipped" { None } else { reason };
        *report
            .outcomes
            .entry((p.plan.kind, ending.unwrap_or("shipped").to_owned()))
            .or_default() += 1;
        if !p.plan.kind.allowed_endings().contains(&ending) {
            let what = format!("{:?} order {id} ended {status} {reason:?}", p.plan.kind);
            match rules.endings {
                Endings::Counted => report.unexpected.push(what),
                Endings::OrTimeout if ending == Some("timeout") => report.unexpected.push(what),
                Endings::Strict | Endings::OrTimeout => breaches.add(what),
            }
        }
        let deadline = time(&s.order["deadline_at"])?;
        let ended = ended_at(&s.order).with_context(|| format!("order {id}"))?;
        match rules.deadline_slack {
            Some(slack) => breaches.check(ended <= deadline + slack, || {
                format!("order {id} ended at {ended}, deadline {deadline}")
            }),
            None if ended > deadline + chrono::Duration::seconds(2) => report.late += 1,
            None => {}
        }
    }
    breaches.outcome()
}

/// The money of each order, and the units sold per SKU by the shipped ones.
fn money(
    placed: &[Placed],
    settled: &HashMap<String, Settled>,
) -> (anyhow::Result<()>, HashMap<String, i64>) {
    let mut breaches = Breaches::default();
    let mut sold: HashMap<String, i64> = HashMap::new();
    let (mut net_total, mut confirmed_total) = (0i64, 0i64);
    for p in placed {
        let (id, s) = (&p.order_id, &settled[&p.order_id]);
        let net: i64 = s.payments.iter().map(net_captured).sum();
        net_total += net;
        if s.order["status"] == "shipped" {
            let total = s.order["total_minor"].as_i64().unwrap_or(-1);
            confirmed_total += total;
            breaches.check(net == total, || {
                format!("order {id}: captured minus refunded {net} is not its total {total}")
            });
            let captures = s
                .payments
                .iter()
                .filter(|p| p["status"] == "captured")
                .count();
            breaches.check(captures == 1, || format!("order {id}: {captures} captures"));
            breaches.check(s.shipments.len() == 1, || {
                format!("order {id}: {} shipments", s.shipments.len())
            });
            breaches.check(s.reservations.iter().all(|r| r["status"] == "sold"), || {
                format!("order {id}: reservations {:?}", s.reservations)
            });
            for line in s.order["lines"].as_array().into_iter().flatten() {
                let sku = line["sku"].as_str().unwrap_or_default().to_owned();
                *sold.entry(sku).or_default() += line["quantity"].as_i64().unwrap_or(0);
            }
        } else {
            breaches.check(net == 0, || {
                format!("cancelled order {id}: {net} captured and not refunded")
            });
            breaches.check(s.shipments.is_empty(), || {
                format!("cancelled order {id} was shipped")
            });
        }
    }
    breaches.check(net_total == confirmed_total, || {
        format!("captured minus refunded ({net_total}) is not the confirmed orders' total ({confirmed_total})")
    });
    (breaches.outcome(), sold)
}

/// Each saga's events on the topics show the end its order reached (by its final status) and
/// every compensation that end owes, by the rules of the saga file.
fn saga_ends(
    placed: &[Placed],
    settled: &HashMap<String, Settled>,
    seen: &[Seen],
) -> anyhow::Result<()> {
    let saga = crate::saga::order();
    let mut events: HashMap<&str, Vec<&Seen>> = HashMap::new();
    for event in seen {
        events.entry(event.key.as_str()).or_default().push(event);
    }
    let mut breaches = Breaches::default();
    for p in placed {
        let id = p.order_id.as_str();
        let status = settled[id].order["status"].as_str().unwrap_or_default();
        let expected = crate::saga::end_of(status);
        let of_order = events.get(id).map(Vec::as_slice).unwrap_or_default();
        match saga.evaluate(of_order) {
            Standing::Ended(ending) => {
                breaches.check(Some(ending.end.as_str()) == expected, || {
                    format!(
                        "{id}: its events end it {}, its order is {status}",
                        ending.end
                    )
                });
                breaches.check(ending.missing.is_empty(), || {
                    format!("{id} {}: missing {}", ending.end, ending.missing.join(", "))
                });
            }
            Standing::Waiting(waiting) => breaches.add(format!(
                "{id} ({status}): its events do not end it; waiting for {}",
                waiting.waiting_for
            )),
        }
    }
    breaches.outcome()
}

/// Each saga's events once each on the topics, as its ending requires.
fn published_once(
    placed: &[Placed],
    settled: &HashMap<String, Settled>,
    counts: &Counts,
) -> anyhow::Result<()> {
    let count = |order: &str, ty: &str| counts.of(order, ty);
    let mut breaches = Breaches::default();
    for p in placed {
        let id = p.order_id.as_str();
        let shipped = settled[id].order["status"] == "shipped";
        let expect = [
            ("OrderPlaced", 1),
            ("OrderConfirmed", usize::from(shipped)),
            ("OrderCancelled", usize::from(!shipped)),
            ("ShipmentScheduled", usize::from(shipped)),
        ];
        for (ty, n) in expect {
            breaches.check(count(id, ty) == n, || {
                format!("{id}: {ty} published {} times, expected {n}", count(id, ty))
            });
        }
        breaches.check(
            count(id, "PaymentCaptured") == count(id, "PaymentRefunded") + usize::from(shipped),
            || format!("{id}: captures and refunds do not match its ending"),
        );
        for ty in APPLIED {
            breaches.check(count(id, ty) <= 1, || {
                format!("{id}: {ty} published {} times", count(id, ty))
            });
        }
    }
    breaches.outcome()
}

/// On each topic, an order's events come in the order their producer decided them (the relay
/// never reorders two events of one key): by their first appearance, a cause before its effect,
/// for the pairs the saga file puts in causal order (the start before an end's events, an
/// effect before its compensation) when both are on one topic.
fn published_in_order(seen: &[Seen]) -> anyhow::Result<()> {
    let mut first: HashMap<(&str, &str), (usize, &str)> = HashMap::new();
    for (at, event) in seen.iter().enumerate() {
        let short = choreo::saga::short_name(&event.event_type);
        first
            .entry((event.key.as_str(), short))
            .or_insert((at, event.topic.as_str()));
    }
    let causal = crate::saga::order().causal_pairs();
    let mut breaches = Breaches::default();
    for ((key, ty), (at, topic)) in &first {
        for (cause, effect) in &causal {
            if ty != effect {
                continue;
            }
            if let Some((before, cause_topic)) = first.get(&(*key, *cause)) {
                if cause_topic != topic {
                    continue;
                }
                breaches.check(before < at, || {
                    format!("{key}: {effect} published before {cause}")
                });
            }
        }
    }
    breaches.outcome()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &str, ty: &str) -> Seen {
        Seen {
            topic: "shop.orders.v1".into(),
            key: key.into(),
            event_type: format!("shop.order.{ty}"),
            event_id: uuid::Uuid::now_v7().to_string(),
            causation_id: None,
            occurred_at: None,
            timestamp_ms: None,
            dlq_reason: None,
        }
    }

    #[test]
    fn a_cancellation_after_its_order_is_in_order_even_between_other_keys() {
        let seen = [
            event("a", "OrderPlaced"),
            event("b", "OrderPlaced"),
            event("b", "OrderConfirmed"),
            event("a", "OrderCancelled"),
            // The relay may publish a row again after a crash: a later duplicate is fine.
            event("a", "OrderPlaced"),
        ];
        assert!(published_in_order(&seen).is_ok());
    }

    #[test]
    fn an_effect_published_before_its_cause_is_a_breach() {
        let seen = [event("a", "OrderCancelled"), event("a", "OrderPlaced")];
        let error = published_in_order(&seen).unwrap_err().to_string();
        assert!(
            error.contains("a: OrderCancelled published before OrderPlaced"),
            "{error}"
        );
    }

    fn order(id: &str, status: &str) -> (Placed, (String, Settled)) {
        let placed = Placed {
            plan: crate::mix::Planned {
                kind: Kind::InStock,
                customer: "c".into(),
                lines: vec![],
            },
            order_id: id.into(),
            token: String::new(),
        };
        let settled = Settled {
            order: serde_json::json!({ "status": status }),
            payments: vec![],
            shipments: vec![],
            reservations: vec![],
        };
        (placed, (id.to_owned(), settled))
    }

    fn judge(orders: &[(&str, &str)], seen: &[Seen]) -> anyhow::Result<()> {
        let (placed, settled): (Vec<Placed>, HashMap<String, Settled>) =
            orders.iter().map(|(id, status)| order(id, status)).unzip();
        saga_ends(&placed, &settled, seen)
    }

    #[test]
    fn a_saga_whose_events_end_it_as_its_order_with_every_compensation_holds() {
        let seen = [
            event("a", "OrderPlaced"),
            event("a", "InventoryReserved"),
            event("a", "PaymentCaptured"),
            event("a", "OrderConfirmed"),
            event("a", "ShipmentScheduled"),
            event("b", "OrderPlaced"),
            event("b", "InventoryReserved"),
            event("b", "OrderCancelled"),
            event("b", "PaymentCaptured"),
            event("b", "InventoryReleased"),
            event("b", "PaymentRefunded"),
        ];
        judge(&[("a", "shipped"), ("b", "cancelled")], &seen).unwrap();
    }

    #[test]
    fn a_missing_compensation_an_open_saga_or_another_ending_is_a_breach() {
        let seen = [
            event("a", "OrderPlaced"),
            event("a", "InventoryReserved"),
            event("a", "OrderCancelled"),
            event("a", "PaymentFailed"),
            event("b", "OrderPlaced"),
            event("b", "InventoryReserved"),
            event("c", "OrderPlaced"),
            event("c", "InventoryRejected"),
            event("c", "OrderCancelled"),
        ];
        let error = judge(
            &[("a", "cancelled"), ("b", "cancelled"), ("c", "shipped")],
            &seen,
        )
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("3 breach(es)"), "{error}");
        assert!(
            error.contains("a cancelled: missing InventoryReleased"),
            "{error}"
        );
        assert!(
            error
                .contains("b (cancelled): its events do not end it; waiting for a payment outcome"),
            "{error}"
        );
        assert!(
            error.contains("c: its events end it cancelled, its order is shipped"),
            "{error}"
        );
    }

    #[test]
    fn a_compensation_published_before_what_it_undoes_is_a_breach() {
        let seen = [
            event("a", "OrderPlaced"),
            event("a", "PaymentRefunded"),
            event("a", "PaymentCaptured"),
        ];
        let error = published_in_order(&seen).unwrap_err().to_string();
        assert!(
            error.contains("a: PaymentRefunded published before PaymentCaptured"),
            "{error}"
        );
    }
}
