//! One run of the shop's end-to-end scenario, in steps that the end-to-end test and the
//! scaled-consumer proof share: [`Run::prepare`] (SKUs of the run's own, the topics' end
//! offsets), [`Run::place`] (a planned mix through the gateway, optionally at a steady rate),
//! [`Run::settle`] (wait until every saga is over and compensated) and [`Run::check`] (the
//! saga's invariants, from the services' data and from the topics). Every check that fails is an
//! error naming the order and the rule.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde_json::Value;

use crate::client::Shop;
use crate::mix::{Kind, Planned, Skus};
use crate::topics::{marks, read_between, Marks, Seen, SHOP_TOPICS};

/// An order as placed: its plan, its id and its customer's token.
#[derive(Debug, Clone)]
pub struct Placed {
    pub plan: Planned,
    pub order_id: String,
    pub token: String,
}

/// Everything known about one order once its saga settled.
#[derive(Debug, Clone)]
pub struct Settled {
    pub order: Value,
    pub payments: Vec<Value>,
    pub shipments: Vec<Value>,
    pub reservations: Vec<Value>,
}

/// What [`Run::check`] found, for the report.
#[derive(Debug, Default)]
pub struct Report {
    /// Orders per (kind, ending).
    pub outcomes: BTreeMap<(Kind, String), usize>,
    /// Orders whose ending their kind does not expect (only counted when not strict).
    pub unexpected: Vec<String>,
    pub messages: usize,
    pub distinct_events: usize,
    /// Every event of the run read from the topics.
    pub events: Vec<Seen>,
}

/// One run: its SKUs and where the topics ended before it.
pub struct Run {
    pub shop: Shop,
    pub kafka: choreo::KafkaConfig,
    pub tag: String,
    pub skus: Skus,
    pub before: Marks,
}

fn time(value: &Value) -> anyhow::Result<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("a time, got {value}"))
}

fn int(value: &Value) -> anyhow::Result<i64> {
    value
        .as_i64()
        .with_context(|| format!("an integer, got {value}"))
}

/// Money captured (and not given back) by a payment.
pub fn net_captured(payment: &Value) -> i64 {
    let captured = matches!(
        payment["status"].as_str(),
        Some("captured" | "refund_pending" | "refunded")
    );
    let amount = if captured {
        payment["amount_minor"].as_i64().unwrap_or(0)
    } else {
        0
    };
    amount - payment["refunded_minor"].as_i64().unwrap_or(0)
}

/// The saga of this order is over and every compensation is done.
pub fn is_settled(s: &Settled) -> bool {
    let payments_final = s.payments.iter().all(|p| {
        matches!(
            p["status"].as_str(),
            Some("captured" | "failed" | "voided" | "refunded")
        )
    });
    let held = s.reservations.iter().any(|r| r["status"] == "reserved");
    match s.order["status"].as_str() {
        Some("shipped") => payments_final && !s.shipments.is_empty() && !held,
        Some("cancelled") => {
            payments_final && !held && s.payments.iter().all(|p| net_captured(p) == 0)
        }
        _ => false,
    }
}

async fn fetch(shop: &Shop, order_id: &str) -> anyhow::Result<Settled> {
    let (order, payments, shipments, reservations) = tokio::try_join!(
        shop.order(order_id),
        shop.payments(order_id),
        shop.shipments(order_id),
        shop.reservations(order_id)
    )?;
    Ok(Settled {
        order,
        payments,
        shipments,
        reservations,
    })
}

/// Sends `request` again, as a client does, while the gateway answers 503 or 504 (an upstream
/// slow or refused under load); both requests used here are safe to repeat (an idempotency key,
/// a cancellation).
async fn retrying<F, Fut>(mut request: F) -> anyhow::Result<(reqwest::StatusCode, Value)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(reqwest::StatusCode, Value)>>,
{
    for attempt in 1.. {
        let (status, body) = request().await?;
        if !matches!(status.as_u16(), 503 | 504) || attempt == 5 {
            return Ok((status, body));
        }
        tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
    }
    unreachable!("the loop returns by its fifth attempt")
}

async fn place_one(shop: &Shop, i: usize, plan: Planned) -> anyhow::Result<Placed> {
    let token = shop.token(&plan.customer);
    let key = uuid::Uuid::now_v7().to_string();
    let (status, body) = retrying(|| shop.place(&token, &plan.lines, &key)).await?;
    ensure!(status.as_u16() == 201, "placing {plan:?}: {status} {body}");
    let order_id = body["order_id"].as_str().context("an order id")?.to_owned();
    if i.is_multiple_of(10) {
        let (again, replay) = shop.place(&token, &plan.lines, &key).await?;
        ensure!(again.as_u16() == 201, "a retried request: {again} {replay}");
        ensure!(
            replay["order_id"] == body["order_id"],
            "a retried request gets the first answer: {replay}"
        );
    }
    if plan.kind == Kind::CustomerCancel {
        let (status, body) = retrying(|| shop.cancel(&token, &order_id)).await?;
        ensure!(
            matches!(status.as_u16(), 202 | 409),
            "cancel: {status} {body}"
        );
    }
    Ok(Placed {
        plan,
        order_id,
        token,
    })
}

impl Run {
    /// Stocks the run's SKUs and notes where the topics end now.
    pub async fn prepare(shop: &Shop) -> anyhow::Result<Self> {
        let kafka = choreo::KafkaConfig::from_env().context("KAFKA_BROKERS")?;
        let tag = uuid::Uuid::now_v7().simple().to_string()[..8].to_uppercase();
        let skus = Skus::for_run(&tag);
        for (i, sku) in skus.stocked.iter().enumerate() {
            shop.stock_up(sku, 1000 + 250 * i as i64, 100_000).await?;
        }
        shop.stock_up(&skus.scarce, 5000, 1).await?;
        let before = {
            let kafka = kafka.clone();
            tokio::task::spawn_blocking(move || marks(&kafka, SHOP_TOPICS)).await??
        };
        Ok(Self {
            shop: shop.clone(),
            kafka,
            tag,
            skus,
            before,
        })
    }

    /// Places `planned` through the gateway, 32 at a time, or at `rate` orders per second;
    /// every tenth is sent twice with its idempotency key, and customer-cancel orders are
    /// cancelled right after.
    pub async fn place(
        &self,
        planned: Vec<Planned>,
        rate: Option<f64>,
    ) -> anyhow::Result<Vec<Placed>> {
        let Some(rate) = rate else {
            return stream::iter(planned.into_iter().enumerate())
                .map(|(i, plan)| place_one(&self.shop, i, plan))
                .buffer_unordered(32)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect();
        };
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let slots = Arc::new(tokio::sync::Semaphore::new(256));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, plan) in planned.into_iter().enumerate() {
            tick.tick().await;
            let (shop, permit) = (self.shop.clone(), slots.clone().acquire_owned().await?);
            tasks.spawn(async move {
                let placed = place_one(&shop, i, plan).await;
                drop(permit);
                placed
            });
        }
        let mut placed = Vec::new();
        while let Some(done) = tasks.join_next().await {
            placed.push(done??);
        }
        Ok(placed)
    }

    /// Waits until every saga of `placed` is over and compensated, or `limit` passes.
    pub async fn settle(
        &self,
        placed: &[Placed],
        limit: Duration,
    ) -> anyhow::Result<HashMap<String, Settled>> {
        let mut settled: HashMap<String, Settled> = HashMap::new();
        let give_up = Instant::now() + limit;
        loop {
            let open: Vec<&Placed> = placed
                .iter()
                .filter(|p| !settled.contains_key(&p.order_id))
                .collect();
            if open.is_empty() {
                return Ok(settled);
            }
            if Instant::now() > give_up {
                let sample: Vec<_> = open
                    .iter()
                    .take(3)
                    .map(|p| (&p.order_id, p.plan.kind))
                    .collect();
                bail!(
                    "{} sagas still open after {limit:?}, e.g. {sample:?}",
                    open.len()
                );
            }
            let checked: Vec<anyhow::Result<(String, Settled)>> =
                stream::iter(open)
                    .map(|p| async move {
                        Ok((p.order_id.clone(), fetch(&self.shop, &p.order_id).await?))
                    })
                    .buffer_unordered(32)
                    .collect()
                    .await;
            let mut progress = false;
            for checked in checked {
                let (id, state) = checked?;
                if is_settled(&state) {
                    settled.insert(id, state);
                    progress = true;
                }
            }
            if !progress {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    /// Checks the saga's invariants for `placed`. With `strict`, an order that ends other than
    /// its kind expects is an error; without, it is counted in [`Report::unexpected`] (a
    /// process killed in the middle of a provider call can make an in-stock order time out,
    /// which is correct behaviour, not a broken invariant).
    pub async fn check(
        &self,
        placed: &[Placed],
        settled: &HashMap<String, Settled>,
        strict: bool,
    ) -> anyhow::Result<Report> {
        let mut report = Report::default();
        let (mut net_total, mut confirmed_total) = (0i64, 0i64);
        let mut sold: HashMap<String, i64> = HashMap::new();
        for p in placed {
            let s = &settled[&p.order_id];
            let id = &p.order_id;
            let status = s.order["status"].as_str().unwrap_or_default();
            let reason = s.order["cancel_reason"].as_str();
            let ending = if status == "shipped" { None } else { reason };
            *report
                .outcomes
                .entry((p.plan.kind, ending.unwrap_or("shipped").to_owned()))
                .or_default() += 1;
            if !p.plan.kind.allowed_endings().contains(&ending) {
                let what = format!("{:?} order {id} ended {status} {reason:?}", p.plan.kind);
                ensure!(!strict, "{what}");
                report.unexpected.push(what);
            }
            // Every saga ends by its deadline (a timeout by the sweeper, moments after it).
            let deadline = time(&s.order["deadline_at"])?;
            let timeline = s.order["timeline"].as_array().context("a timeline")?;
            let ended_at = timeline
                .iter()
                .find(|step| {
                    matches!(
                        step["event_type"].as_str(),
                        Some("OrderConfirmed" | "OrderCancelled")
                    )
                })
                .map(|step| time(&step["at"]))
                .transpose()?
                .with_context(|| format!("order {id}: no ending on the timeline"))?;
            ensure!(
                ended_at <= deadline + chrono::Duration::seconds(2),
                "order {id} ended at {ended_at}, deadline {deadline}"
            );
            let net: i64 = s.payments.iter().map(net_captured).sum();
            net_total += net;
            if status == "shipped" {
                let total = int(&s.order["total_minor"])?;
                confirmed_total += total;
                ensure!(
                    net == total,
                    "order {id}: captured minus refunded {net} is not its total {total}"
                );
                let captures = s
                    .payments
                    .iter()
                    .filter(|p| p["status"] == "captured")
                    .count();
                ensure!(captures == 1, "order {id}: {captures} captures");
                ensure!(
                    s.shipments.len() == 1,
                    "order {id}: {} shipments",
                    s.shipments.len()
                );
                ensure!(
                    s.reservations.iter().all(|r| r["status"] == "sold"),
                    "order {id}: reservations {:?}",
                    s.reservations
                );
                for line in s.order["lines"].as_array().context("lines")? {
                    let sku = line["sku"].as_str().context("a sku")?.to_owned();
                    *sold.entry(sku).or_default() += int(&line["quantity"])?;
                }
            } else {
                ensure!(
                    net == 0,
                    "cancelled order {id}: {net} captured and not refunded"
                );
                ensure!(s.shipments.is_empty(), "cancelled order {id} was shipped");
            }
        }
        ensure!(
            net_total == confirmed_total,
            "captured minus refunded ({net_total}) is not the confirmed orders' total ({confirmed_total})"
        );

        // Stock: conserved, never negative, nothing left reserved, sold exactly what shipped.
        for sku in self.skus.stocked.iter().chain([&self.skus.scarce]) {
            let level = self.shop.stock(sku).await?;
            let (available, reserved, sold_now, received) = (
                int(&level["available"])?,
                int(&level["reserved"])?,
                int(&level["sold"])?,
                int(&level["received"])?,
            );
            ensure!(
                available >= 0 && reserved >= 0 && sold_now >= 0,
                "{sku}: {level}"
            );
            ensure!(
                available + reserved + sold_now == received,
                "stock of {sku} is not conserved: {level}"
            );
            ensure!(reserved == 0, "{sku} is left reserved: {level}");
            let shipped = sold.get(sku).copied().unwrap_or(0);
            ensure!(
                sold_now == shipped,
                "{sku}: sold {sold_now}, shipped {shipped}"
            );
        }

        // The topics: each saga's events once each.
        let after = {
            let kafka = self.kafka.clone();
            tokio::task::spawn_blocking(move || marks(&kafka, SHOP_TOPICS)).await??
        };
        let (kafka, before) = (self.kafka.clone(), self.before.clone());
        let seen =
            tokio::task::spawn_blocking(move || read_between(&kafka, &before, &after)).await??;
        let ours: HashSet<&str> = placed.iter().map(|p| p.order_id.as_str()).collect();
        let seen: Vec<Seen> = seen
            .into_iter()
            .filter(|e| ours.contains(e.key.as_str()))
            .collect();
        let mut events: HashMap<(String, String), HashSet<String>> = HashMap::new();
        for event in &seen {
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
        report.messages = seen.len();
        report.distinct_events = events.values().map(HashSet::len).sum();
        let count = |order: &str, ty: &str| {
            events
                .get(&(order.to_owned(), ty.to_owned()))
                .map_or(0, HashSet::len)
        };
        for p in placed {
            let id = p.order_id.as_str();
            let shipped = settled[id].order["status"] == "shipped";
            ensure!(
                count(id, "OrderPlaced") == 1,
                "{id}: OrderPlaced {} times",
                count(id, "OrderPlaced")
            );
            ensure!(
                count(id, "OrderConfirmed") == usize::from(shipped),
                "{id}: OrderConfirmed"
            );
            ensure!(
                count(id, "OrderCancelled") == usize::from(!shipped),
                "{id}: OrderCancelled"
            );
            ensure!(
                count(id, "PaymentCaptured") == count(id, "PaymentRefunded") + usize::from(shipped),
                "{id}: captures and refunds do not match its ending"
            );
            ensure!(
                count(id, "ShipmentScheduled") == usize::from(shipped),
                "{id}: ShipmentScheduled"
            );
            for ty in APPLIED {
                ensure!(
                    count(id, ty) <= 1,
                    "{id}: {ty} published {} times",
                    count(id, ty)
                );
            }
        }

        // The order service applied each event about an order once: its timeline records every
        // event it applies. The last ones (a PaymentFailed that reports a voided charge) may
        // still be on their way when the saga counts as settled, so wait for the counts.
        let mut unchecked: Vec<&str> = placed.iter().map(|p| p.order_id.as_str()).collect();
        let give_up = Instant::now() + Duration::from_secs(60);
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
                    ensure!(
                        applied <= count(id, ty),
                        "{id}: the order service applied {ty} {applied} times"
                    );
                    if applied < count(id, ty) {
                        behind.push(id);
                    }
                }
            }
            if behind.is_empty() {
                break;
            }
            ensure!(
                Instant::now() < give_up,
                "events never applied by the order service, e.g. {:?}",
                &behind[..behind.len().min(3)]
            );
            unchecked = behind;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        report.events = seen;
        Ok(report)
    }
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
