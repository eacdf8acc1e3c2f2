//! One run of the shop's end-to-end scenario, in steps that the end-to-end test and the
//! scaled-consumer proof share: [`Run::prepare`] (SKUs of the run's own, the topics' end
//! offsets), [`Run::place`] (a planned mix through the gateway, optionally at a steady rate),
//! [`Run::settle`] (wait until every saga is over and compensated) and [`Run::check`] (the
//! saga's invariants, from the services' data and from the topics; the rules themselves are in
//! [`crate::invariants`]). The chaos harness uses the same steps with a more patient client
//! ([`Patience::CHAOS`]) and takes the invariants one by one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use futures::stream::{self, StreamExt};
use serde_json::Value;

use crate::client::Shop;
use crate::invariants::{Endings, Report, Strictness};
use crate::mix::{Kind, Planned, Skus};
use crate::topics::{marks, Marks, SHOP_TOPICS};

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

/// One run: its SKUs and where the topics ended before it.
pub struct Run {
    pub shop: Shop,
    pub kafka: choreo::KafkaConfig,
    pub tag: String,
    pub skus: Skus,
    pub before: Marks,
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

/// How long a client keeps repeating a request that was not served: the answers it takes for
/// "not served, try again", whether a lost connection or a timeout counts as one, and how many
/// attempts it makes (waits of 0.5 s more per attempt, at most 3 s).
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    pub attempts: u32,
    pub statuses: &'static [u16],
    pub transport_errors: bool,
}

impl Patience {
    /// The end-to-end test's client: a gateway that answers 503 or 504 under load.
    pub const E2E: Self = Self {
        attempts: 5,
        statuses: &[503, 504],
        transport_errors: false,
    };
    /// A client of a shop under fire: any 5xx, a rate limit, a refused or timed-out connection,
    /// for about three minutes (a broker paused and restarted, a gateway being restarted).
    pub const CHAOS: Self = Self {
        attempts: 70,
        statuses: &[429, 500, 502, 503, 504],
        transport_errors: true,
    };

    /// Sends `request` until it gets an answer that is not "try again" (`also`: more statuses
    /// that are, for this request) or the attempts run out; the last answer or error.
    pub async fn retry<F, Fut>(
        self,
        also: &[u16],
        mut request: F,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<(reqwest::StatusCode, Value)>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.attempts;
            match request().await {
                Ok((status, body)) => {
                    let code = status.as_u16();
                    if last || !(self.statuses.contains(&code) || also.contains(&code)) {
                        return Ok((status, body));
                    }
                }
                Err(error) if last || !self.transport_errors => return Err(error),
                Err(_) => {}
            }
            let wait = Duration::from_millis(500 * u64::from(attempt)).min(Duration::from_secs(3));
            tokio::time::sleep(wait).await;
        }
    }
}

/// Places one planned order under `key` (the same key again replays the first answer): every
/// tenth is sent twice to check that replay, and a customer-cancel order is cancelled at once.
pub async fn place_one(
    shop: &Shop,
    i: usize,
    plan: Planned,
    key: &str,
    patience: Patience,
) -> anyhow::Result<Placed> {
    let token = shop.token(&plan.customer);
    // 409: the gateway is still serving an earlier attempt under this key.
    let (status, body) = patience
        .retry(&[409], || shop.place(&token, &plan.lines, key))
        .await?;
    ensure!(status.as_u16() == 201, "placing {plan:?}: {status} {body}");
    let order_id = body["order_id"].as_str().context("an order id")?.to_owned();
    if i.is_multiple_of(10) {
        let (again, replay) = patience
            .retry(&[409], || shop.place(&token, &plan.lines, key))
            .await?;
        ensure!(again.as_u16() == 201, "a retried request: {again} {replay}");
        ensure!(
            replay["order_id"] == body["order_id"],
            "a retried request gets the first answer: {replay}"
        );
    }
    if plan.kind == Kind::CustomerCancel {
        let (status, body) = patience
            .retry(&[], || shop.cancel(&token, &order_id))
            .await?;
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

async fn place_new(shop: &Shop, i: usize, plan: Planned) -> anyhow::Result<Placed> {
    let key = uuid::Uuid::now_v7().to_string();
    place_one(shop, i, plan, &key, Patience::E2E).await
}

/// Where settling got to: the sagas that are over, and those still open when it stopped.
#[derive(Debug, Default)]
pub struct Settling {
    pub settled: HashMap<String, Settled>,
    pub open: Vec<String>,
    /// The last error met while asking the services (a service being restarted, say).
    pub last_error: Option<String>,
}

impl Run {
    /// Stocks the run's SKUs and notes where the topics end now.
    pub async fn prepare(shop: &Shop) -> anyhow::Result<Self> {
        let kafka = choreo::KafkaConfig::from_env().context("KAFKA_BROKERS")?;
        let tag = crate::mix::run_tag();
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
                .map(|(i, plan)| place_new(&self.shop, i, plan))
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
                let placed = place_new(&shop, i, plan).await;
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
        let settling = self.settle_until(placed, limit).await;
        if settling.open.is_empty() {
            return Ok(settling.settled);
        }
        let kind: HashMap<&str, Kind> = placed
            .iter()
            .map(|p| (p.order_id.as_str(), p.plan.kind))
            .collect();
        let sample: Vec<_> = settling
            .open
            .iter()
            .take(3)
            .map(|id| (id, kind[id.as_str()]))
            .collect();
        bail!(
            "{} sagas still open after {limit:?}, e.g. {sample:?}{}",
            settling.open.len(),
            settling
                .last_error
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        )
    }

    /// Waits until every saga of `placed` is over and compensated, or `limit` passes, printing
    /// progress every 15 s; a failed look (a service restarting) counts as "not yet".
    pub async fn settle_until(&self, placed: &[Placed], limit: Duration) -> Settling {
        let mut settling = Settling::default();
        let started = Instant::now();
        let mut next_note = started + Duration::from_secs(15);
        loop {
            let open: Vec<&Placed> = placed
                .iter()
                .filter(|p| !settling.settled.contains_key(&p.order_id))
                .collect();
            if open.is_empty() || started.elapsed() > limit {
                settling.open = open.iter().map(|p| p.order_id.clone()).collect();
                return settling;
            }
            if Instant::now() > next_note {
                println!(
                    "settling: {} of {} sagas over after {:.0} s",
                    settling.settled.len(),
                    placed.len(),
                    started.elapsed().as_secs_f64()
                );
                next_note += Duration::from_secs(15);
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
                match checked {
                    Ok((id, state)) if is_settled(&state) => {
                        settling.settled.insert(id, state);
                        progress = true;
                    }
                    Ok(_) => {}
                    Err(e) => settling.last_error = Some(format!("{e:#}")),
                }
            }
            if !progress {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    /// Checks the saga's invariants for `placed`, failing at the first that does not hold.
    /// With `strict`, an order that ends other than its kind expects is an error; without, it
    /// is counted in [`Report::unexpected`] (a process killed in the middle of a provider call
    /// can make an in-stock order time out, which is correct behaviour, not a broken invariant).
    pub async fn check(
        &self,
        placed: &[Placed],
        settled: &HashMap<String, Settled>,
        strict: bool,
    ) -> anyhow::Result<Report> {
        let rules = Strictness {
            endings: if strict {
                Endings::Strict
            } else {
                Endings::Counted
            },
            deadline_slack: Some(chrono::Duration::seconds(2)),
        };
        let (report, verdicts) = self.verdicts(placed, settled, rules).await?;
        for verdict in verdicts {
            verdict.outcome.context(verdict.name)?;
        }
        Ok(report)
    }
}
