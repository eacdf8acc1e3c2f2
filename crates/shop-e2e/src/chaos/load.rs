//! Steady load through the gateway while faults land: the planned mix at a fixed rate, each
//! order placed by [`place_one`] with the patient client ([`Patience::CHAOS`]: 5xx, rate limits,
//! refused connections and timeouts are retried under the same Idempotency-Key). An order whose
//! client gave up is not forgotten: [`resolve`] asks again under its key once the faults are
//! over, which either finds the order the shop made or places it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::client::Shop;
use crate::mix::Planned;
use crate::scenario::{place_one, Patience, Placed};

/// An order whose client gave up, with the key to ask again under.
#[derive(Debug, Clone)]
pub struct Unanswered {
    pub i: usize,
    pub plan: Planned,
    pub key: String,
    pub error: String,
}

#[derive(Debug, Default)]
pub struct Load {
    pub accepted: Vec<Placed>,
    pub unanswered: Vec<Unanswered>,
}

/// Clients waiting for an answer at once at most; the rate drops when the shop stalls longer.
const IN_FLIGHT: usize = 1024;

async fn attempt(shop: &Shop, i: usize, plan: Planned, key: String) -> Result<Placed, Unanswered> {
    match place_one(shop, i, plan.clone(), &key, Patience::CHAOS).await {
        Ok(placed) => Ok(placed),
        Err(e) => Err(Unanswered {
            i,
            plan,
            key,
            error: format!("{e:#}"),
        }),
    }
}

/// What the load has done so far, and the switch that ends it.
#[derive(Debug, Default)]
pub struct Gauge {
    pub sent: AtomicUsize,
    pub accepted: AtomicUsize,
    pub stop: AtomicBool,
}

/// Places `planned` at `rate` orders per second, until the plan runs out or `gauge.stop`.
pub async fn run(shop: &Shop, planned: Vec<Planned>, rate: f64, gauge: Arc<Gauge>) -> Load {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = JoinSet::new();
    for (i, plan) in planned.into_iter().enumerate() {
        tick.tick().await;
        if gauge.stop.load(Ordering::Relaxed) {
            break;
        }
        gauge.sent.fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let shop = shop.clone();
        let key = uuid::Uuid::now_v7().to_string();
        let gauge = gauge.clone();
        tasks.spawn(async move {
            let outcome = attempt(&shop, i, plan, key).await;
            drop(permit);
            if outcome.is_ok() {
                gauge.accepted.fetch_add(1, Ordering::Relaxed);
            }
            outcome
        });
    }
    collect(tasks).await
}

/// Asks again, under their keys, for the orders whose clients gave up.
pub async fn resolve(shop: &Shop, unanswered: Vec<Unanswered>) -> Load {
    let mut tasks = JoinSet::new();
    for u in unanswered {
        let shop = shop.clone();
        tasks.spawn(async move { attempt(&shop, u.i, u.plan, u.key).await });
    }
    collect(tasks).await
}

async fn collect(mut tasks: JoinSet<Result<Placed, Unanswered>>) -> Load {
    let mut load = Load::default();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(accepted)) => load.accepted.push(accepted),
            Ok(Err(unanswered)) => load.unanswered.push(unanswered),
            Err(e) => println!("a client task failed: {e}"),
        }
    }
    load
}
