//! The invariants a run under faults adds to the saga's own ([`crate::invariants`]), checked
//! from the outside: the provider's ledger against the shipped orders, each consumer group's
//! inbox against the events on the topics (every event applied, once, in key order), the
//! dead-letter topics, the outboxes, the consumer groups' members and every process's
//! readiness. Each is a [`Verdict`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::client::Shop;
use crate::invariants::{Breaches, Verdict};
use crate::process;
use crate::scenario::{Placed, Settled};
use crate::topics::{read_between, Marks, Seen};

/// The money per order as the provider's books hold it: captured minus refunded of each charge
/// made for `ours`, read page by page from `GET /v1/charges`.
pub async fn provider_net(
    shop: &Shop,
    ours: &HashSet<&str>,
) -> anyhow::Result<HashMap<String, i64>> {
    let mut net: HashMap<String, i64> = HashMap::new();
    let mut after = 0u64;
    loop {
        let page = shop
            .get(format!(
                "{}/v1/charges?after={after}&limit=1000",
                shop.provider
            ))
            .await
            .context("the provider's charges (GET /v1/charges)")?;
        for charge in page["charges"].as_array().context("charges")? {
            let order = charge["order_id"].as_str().unwrap_or_default();
            if !ours.contains(order) {
                continue;
            }
            let captured = if charge["status"] == "captured" {
                charge["amount_minor"].as_i64().unwrap_or(0)
            } else {
                0
            };
            let refunded = charge["refunded_minor"].as_i64().unwrap_or(0);
            *net.entry(order.to_owned()).or_default() += captured - refunded;
        }
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => return Ok(net),
        }
    }
}

/// The provider kept each shipped order's total and nothing of any other order.
pub async fn ledger(shop: &Shop, placed: &[Placed], settled: &HashMap<String, Settled>) -> Verdict {
    let name = "the provider's captured minus refunded is the shipped orders' total";
    let outcome = async {
        let ours: HashSet<&str> = placed.iter().map(|p| p.order_id.as_str()).collect();
        let net = provider_net(shop, &ours).await?;
        let mut breaches = Breaches::default();
        let (mut kept, mut shipped_total) = (0i64, 0i64);
        for p in placed {
            let Some(s) = settled.get(&p.order_id) else {
                continue;
            };
            let held = net.get(&p.order_id).copied().unwrap_or(0);
            kept += held;
            let due = if s.order["status"] == "shipped" {
                s.order["total_minor"].as_i64().unwrap_or(-1)
            } else {
                0
            };
            shipped_total += due;
            breaches.check(held == due, || {
                format!(
                    "order {} ({}): the provider holds {held}, due {due}",
                    p.order_id, s.order["status"]
                )
            });
        }
        breaches.check(kept == shipped_total, || {
            format!("the provider kept {kept}, the shipped orders total {shipped_total}")
        });
        breaches.outcome()
    };
    Verdict::new(name, outcome.await)
}

/// Every event of the run on a topic is in the inbox of each group that reads the topic
/// (applied; the inbox's key makes it once), and each group applied one order's events of a
/// topic in their order on the topic.
pub async fn inboxes(events: &[Seen], readers: &[(String, String)]) -> Vec<Verdict> {
    let mut applied = Breaches::default();
    let mut ordered = Breaches::default();
    let mut failure = None;
    for (topic, group) in readers {
        let on_topic: Vec<&Seen> = events.iter().filter(|e| &e.topic == topic).collect();
        match applied_at(group, &on_topic).await {
            Ok(at) => {
                let mut last: HashMap<&str, (DateTime<Utc>, &str)> = HashMap::new();
                for e in &on_topic {
                    let Some(when) = at.get(&e.event_id) else {
                        applied.add(format!(
                            "{group} never applied {} {} of {} ({})",
                            e.event_type, e.event_id, e.key, topic
                        ));
                        continue;
                    };
                    if let Some((before, what)) = last.get(e.key.as_str()) {
                        ordered.check(when >= before, || {
                            format!(
                                "{group} applied {} of {} at {when} before the earlier {what} (at {before})",
                                e.event_type, e.key
                            )
                        });
                    }
                    last.insert(&e.key, (*when, &e.event_type));
                }
            }
            Err(e) => failure = Some(format!("{group}'s inbox: {e:#}")),
        }
    }
    if let Some(f) = failure {
        applied.add(f);
    }
    vec![
        Verdict::new(
            "every event on the topics applied once by each consumer group (inboxes)",
            applied.outcome(),
        ),
        Verdict::new(
            "each group applied an order's events in key order",
            ordered.outcome(),
        ),
    ]
}

/// When `group` applied each of `events` (its inbox rows), by event id.
async fn applied_at(
    group: &str,
    events: &[&Seen],
) -> anyhow::Result<HashMap<String, DateTime<Utc>>> {
    let url = process::var(&format!("DATABASE_URL_{}", group.to_uppercase()))?;
    let mut db: sqlx::PgConnection = sqlx::Connection::connect(&url).await?;
    let ids: Vec<uuid::Uuid> = events
        .iter()
        .filter_map(|e| e.event_id.parse().ok())
        .collect();
    let rows: Vec<(uuid::Uuid, DateTime<Utc>)> = sqlx::query_as(
        "select event_id, applied_at from choreo_inbox where consumer = $1 and event_id = any($2)",
    )
    .bind(group)
    .bind(&ids)
    .fetch_all(&mut db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, at)| (id.to_string(), at))
        .collect())
}

/// Nothing went to a dead-letter topic during the run: every fault injected is transient.
pub async fn dead_letters(kafka: &choreo::KafkaConfig, before: &Marks, after: &Marks) -> Verdict {
    let (kafka, before, after) = (kafka.clone(), before.clone(), after.clone());
    let read = tokio::task::spawn_blocking(move || read_between(&kafka, &before, &after)).await;
    let outcome = match read {
        Ok(Ok(letters)) => {
            let mut breaches = Breaches::default();
            for l in &letters {
                breaches.add(format!(
                    "{} on {} for {}: {}",
                    l.event_type,
                    l.topic,
                    l.key,
                    l.dlq_reason.as_deref().unwrap_or("no reason")
                ));
            }
            breaches.outcome()
        }
        Ok(Err(e)) => Err(e),
        Err(e) => Err(e.into()),
    };
    Verdict::new("no dead letters (every fault was transient)", outcome)
}

/// The services that consume: each has its own consumer group (named after it), inbox and
/// outbox, in its own database.
pub const CONSUMERS: [&str; 4] = ["order", "inventory", "payment", "shipping"];

/// Every outbox empty and nothing parked, within `limit`.
pub async fn outboxes(limit: Duration) -> Verdict {
    let outcome = poll(limit, || async {
        let mut left = Vec::new();
        for service in CONSUMERS {
            let url = process::var(&format!("DATABASE_URL_{}", service.to_uppercase()))?;
            let mut db: sqlx::PgConnection = sqlx::Connection::connect(&url).await?;
            let waiting: i64 = sqlx::query_scalar("select count(*) from choreo_outbox")
                .fetch_one(&mut db)
                .await?;
            let has_parking: bool =
                sqlx::query_scalar("select to_regclass('choreo_outbox_parked') is not null")
                    .fetch_one(&mut db)
                    .await?;
            let parked: i64 = if has_parking {
                sqlx::query_scalar("select count(*) from choreo_outbox_parked")
                    .fetch_one(&mut db)
                    .await?
            } else {
                0
            };
            if waiting != 0 || parked != 0 {
                left.push(format!("{service}: {waiting} waiting, {parked} parked"));
            }
        }
        if left.is_empty() {
            Ok(())
        } else {
            bail!("{}", left.join("; "))
        }
    })
    .await;
    Verdict::new("every outbox drained, nothing parked", outcome)
}

/// Each consumer group has as many members as processes of its service, within `limit`.
pub async fn groups(
    kafka: &choreo::KafkaConfig,
    expected: BTreeMap<String, usize>,
    limit: Duration,
) -> Verdict {
    let outcome = poll(limit, || {
        let (kafka, expected) = (kafka.clone(), expected.clone());
        async move { tokio::task::spawn_blocking(move || members(&kafka, &expected)).await? }
    })
    .await;
    Verdict::new("every consumer group has its members again", outcome)
}

fn members(kafka: &choreo::KafkaConfig, expected: &BTreeMap<String, usize>) -> anyhow::Result<()> {
    let consumer: BaseConsumer =
        choreo::kafka::consumer_config(kafka, "shop-chaos-observer", "shop-chaos-observer")
            .create()?;
    let mut wrong = Vec::new();
    for (group, want) in expected {
        let list = consumer.fetch_group_list(Some(group), Duration::from_secs(10))?;
        let (state, have) = list
            .groups()
            .first()
            .map_or(("unknown".to_owned(), 0), |g| {
                (g.state().to_owned(), g.members().len())
            });
        if have != *want {
            wrong.push(format!(
                "{group}: {have} members ({state}), expected {want}"
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        bail!("{}", wrong.join("; "))
    }
}

/// Every process answers its readiness check, within `limit`.
pub async fn readiness(
    http: &reqwest::Client,
    urls: Vec<(String, String)>,
    limit: Duration,
) -> Verdict {
    let outcome = poll(limit, || {
        let urls = urls.clone();
        async move {
            let mut unready = Vec::new();
            for (name, url) in &urls {
                if !process::ready(http, url).await {
                    unready.push(name.clone());
                }
            }
            if unready.is_empty() {
                Ok(())
            } else {
                bail!("not ready: {}", unready.join(", "))
            }
        }
    })
    .await;
    Verdict::new("no process stays unready", outcome)
}

/// Tries `check` every 2 s until it holds or `limit` passes; the last error.
async fn poll<F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let give_up = Instant::now() + limit;
    loop {
        match check().await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > give_up => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}
