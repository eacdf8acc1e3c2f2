//! The whole shop on the local stack (`scripts/shop up`): a seeded mix of 1,000 orders through
//! the gateway (in stock, out of stock, declined, flaky provider, customer cancel, timeout),
//! then the saga's invariants checked from the services' own data and from the topics.
//!
//! `SHOP_E2E_ORDERS` and `SHOP_E2E_SEED` change the size and the mix.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde_json::Value;
use shop_e2e::client::Shop;
use shop_e2e::mix::{plan, Kind, Planned, Skus};
use shop_e2e::topics::{marks, read_between, SHOP_TOPICS};

/// An order as placed: its plan, its id and its customer's token.
struct Placed {
    plan: Planned,
    order_id: String,
    token: String,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a time, got {value}"))
}

fn int(value: &Value) -> i64 {
    value
        .as_i64()
        .unwrap_or_else(|| panic!("an integer, got {value}"))
}

/// Everything known about one order once its saga settled.
struct Settled {
    order: Value,
    payments: Vec<Value>,
    shipments: Vec<Value>,
    reservations: Vec<Value>,
}

/// Money captured (and not given back) by a payment.
fn net_captured(payment: &Value) -> i64 {
    let captured = matches!(
        payment["status"].as_str(),
        Some("captured" | "refund_pending" | "refunded")
    );
    let amount = if captured {
        int(&payment["amount_minor"])
    } else {
        0
    };
    amount - payment["refunded_minor"].as_i64().unwrap_or(0)
}

/// The saga of this order is over and every compensation is done.
fn is_settled(s: &Settled) -> bool {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_orders_end_by_their_deadlines_with_every_invariant_holding() {
    let shop = Shop::from_env().expect("the shop's addresses");
    shop.ensure_running().await.expect("the shop is running");
    let kafka = choreo::KafkaConfig::from_env().expect("KAFKA_BROKERS");
    let orders: usize = env_or("SHOP_E2E_ORDERS", 1000);
    let seed: u64 = env_or("SHOP_E2E_SEED", 20_261_127);
    let tag = uuid::Uuid::now_v7().simple().to_string()[..8].to_uppercase();
    let skus = Skus::for_run(&tag);
    for (i, sku) in skus.stocked.iter().enumerate() {
        shop.stock_up(sku, 1000 + 250 * i as i64, 100_000)
            .await
            .unwrap();
    }
    shop.stock_up(&skus.scarce, 5000, 1).await.unwrap();
    let before = {
        let kafka = kafka.clone();
        tokio::task::spawn_blocking(move || marks(&kafka, &SHOP_TOPICS))
            .await
            .unwrap()
            .unwrap()
    };

    // Place every order through the gateway; every tenth is sent twice with its key.
    let started = Instant::now();
    let planned = plan(seed, orders, &tag, &skus);
    let placed: Vec<Placed> = stream::iter(planned.into_iter().enumerate())
        .map(|(i, plan)| {
            let shop = shop.clone();
            async move {
                let token = shop.token(&plan.customer);
                let key = uuid::Uuid::now_v7().to_string();
                let (status, body) = shop.place(&token, &plan.lines, &key).await.unwrap();
                assert_eq!(status.as_u16(), 201, "placing {plan:?}: {body}");
                let order_id = body["order_id"].as_str().expect("an order id").to_owned();
                if i % 10 == 0 {
                    let (again, replay) = shop.place(&token, &plan.lines, &key).await.unwrap();
                    assert_eq!(again.as_u16(), 201, "{replay}");
                    assert_eq!(
                        replay["order_id"], body["order_id"],
                        "a retried request gets the first answer"
                    );
                }
                if plan.kind == Kind::CustomerCancel {
                    let (status, body) = shop.cancel(&token, &order_id).await.unwrap();
                    assert!(
                        matches!(status.as_u16(), 202 | 409),
                        "cancel: {status} {body}"
                    );
                }
                Placed {
                    plan,
                    order_id,
                    token,
                }
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let placing = started.elapsed();
    println!(
        "placed {} orders in {:.1} s ({:.0}/s)",
        placed.len(),
        placing.as_secs_f64(),
        placed.len() as f64 / placing.as_secs_f64()
    );

    // Wait until every saga is over and compensated.
    let mut settled: HashMap<String, Settled> = HashMap::new();
    let give_up = Instant::now() + Duration::from_secs(240);
    loop {
        let open: Vec<&Placed> = placed
            .iter()
            .filter(|p| !settled.contains_key(&p.order_id))
            .collect();
        if open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "{} sagas still open after 240 s, e.g. {:?}",
            open.len(),
            open.iter()
                .take(3)
                .map(|p| (&p.order_id, p.plan.kind))
                .collect::<Vec<_>>()
        );
        let checked: Vec<(String, Settled)> = stream::iter(open)
            .map(|p| {
                let shop = shop.clone();
                async move { (p.order_id.clone(), fetch(&shop, &p.order_id).await.unwrap()) }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let mut progress = false;
        for (id, state) in checked {
            if is_settled(&state) {
                settled.insert(id, state);
                progress = true;
            }
        }
        if !progress {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    println!(
        "every saga settled {:.1} s after the first order",
        started.elapsed().as_secs_f64()
    );

    // The gateway's aggregate view agrees for a sample.
    for p in placed.iter().step_by(97) {
        let (status, view) = shop.view(&p.token, &p.order_id).await.unwrap();
        assert_eq!(status.as_u16(), 200, "{view}");
        assert_eq!(
            view["order"]["status"],
            settled[&p.order_id].order["status"]
        );
    }

    // Per order: the ending its kind allows, within its deadline, money and goods that match.
    let mut outcomes: BTreeMap<(Kind, String), usize> = BTreeMap::new();
    let (mut net_total, mut confirmed_total) = (0i64, 0i64);
    let mut sold: HashMap<String, i64> = HashMap::new();
    for p in &placed {
        let s = &settled[&p.order_id];
        let status = s.order["status"].as_str().unwrap();
        let reason = s.order["cancel_reason"].as_str();
        let ending = if status == "shipped" { None } else { reason };
        *outcomes
            .entry((p.plan.kind, ending.unwrap_or("shipped").to_owned()))
            .or_default() += 1;
        assert!(
            p.plan.kind.allowed_endings().contains(&ending),
            "{:?} order {} ended {status} {reason:?}",
            p.plan.kind,
            p.order_id
        );
        let deadline = time(&s.order["deadline_at"]);
        let timeline = s.order["timeline"].as_array().unwrap();
        let ended_at = timeline
            .iter()
            .find(|step| {
                matches!(
                    step["event_type"].as_str(),
                    Some("OrderConfirmed" | "OrderCancelled")
                )
            })
            .map(|step| time(&step["at"]))
            .expect("an ending on the timeline");
        assert!(
            ended_at <= deadline + chrono::Duration::seconds(2),
            "order {} ended at {ended_at}, deadline {deadline}",
            p.order_id
        );
        let net: i64 = s.payments.iter().map(net_captured).sum();
        net_total += net;
        if status == "shipped" {
            let total = int(&s.order["total_minor"]);
            confirmed_total += total;
            assert_eq!(
                net, total,
                "order {}: captured minus refunded is its total",
                p.order_id
            );
            let captures = s
                .payments
                .iter()
                .filter(|p| p["status"] == "captured")
                .count();
            assert_eq!(captures, 1, "order {}: exactly one capture", p.order_id);
            assert_eq!(
                s.shipments.len(),
                1,
                "order {}: exactly one shipment",
                p.order_id
            );
            assert!(
                s.reservations.iter().all(|r| r["status"] == "sold"),
                "{:?}",
                s.reservations
            );
            for line in s.order["lines"].as_array().unwrap() {
                *sold
                    .entry(line["sku"].as_str().unwrap().to_owned())
                    .or_default() += int(&line["quantity"]);
            }
        } else {
            assert_eq!(
                net, 0,
                "cancelled order {}: everything captured was refunded",
                p.order_id
            );
            assert!(
                s.shipments.is_empty(),
                "cancelled order {} was shipped",
                p.order_id
            );
        }
    }
    println!("outcomes by kind: {outcomes:?}");
    assert_eq!(
        net_total, confirmed_total,
        "captured minus refunded equals the confirmed orders' total"
    );

    // Stock: conserved, never negative, nothing left reserved, sold exactly what shipped.
    for sku in skus.stocked.iter().chain([&skus.scarce]) {
        let level = shop.stock(sku).await.unwrap();
        let (available, reserved, sold_now, received) = (
            int(&level["available"]),
            int(&level["reserved"]),
            int(&level["sold"]),
            int(&level["received"]),
        );
        assert!(available >= 0 && reserved >= 0 && sold_now >= 0, "{level}");
        assert_eq!(
            available + reserved + sold_now,
            received,
            "stock of {sku} is conserved: {level}"
        );
        assert_eq!(reserved, 0, "nothing of {sku} is left reserved: {level}");
        assert_eq!(
            sold_now,
            sold.get(sku).copied().unwrap_or(0),
            "{sku}: sold is what shipped"
        );
    }

    // The topics: each saga's events once each, and the order service applied each event once.
    let after = {
        let kafka = kafka.clone();
        tokio::task::spawn_blocking(move || marks(&kafka, &SHOP_TOPICS))
            .await
            .unwrap()
            .unwrap()
    };
    let seen = tokio::task::spawn_blocking(move || read_between(&kafka, &before, &after))
        .await
        .unwrap()
        .unwrap();
    let ours: HashSet<&str> = placed.iter().map(|p| p.order_id.as_str()).collect();
    let mut events: HashMap<(&str, &str), HashSet<&str>> = HashMap::new();
    let mut messages = 0usize;
    for event in seen.iter().filter(|e| ours.contains(e.key.as_str())) {
        messages += 1;
        let short = event.event_type.rsplit('.').next().unwrap_or_default();
        events
            .entry((event.key.as_str(), short))
            .or_default()
            .insert(&event.event_id);
    }
    let distinct: usize = events.values().map(HashSet::len).sum();
    println!("{messages} messages on the topics for this run, {distinct} distinct events");
    let count = |order: &str, ty: &str| events.get(&(order, ty)).map_or(0, HashSet::len);
    for p in &placed {
        let id = p.order_id.as_str();
        let shipped = settled[id].order["status"] == "shipped";
        assert_eq!(count(id, "OrderPlaced"), 1, "{id}");
        assert_eq!(count(id, "OrderConfirmed"), usize::from(shipped), "{id}");
        assert_eq!(count(id, "OrderCancelled"), usize::from(!shipped), "{id}");
        assert_eq!(
            count(id, "PaymentCaptured") - count(id, "PaymentRefunded"),
            usize::from(shipped),
            "{id}"
        );
        assert_eq!(count(id, "ShipmentScheduled"), usize::from(shipped), "{id}");
        for ty in [
            "InventoryReserved",
            "InventoryRejected",
            "InventoryReleased",
            "PaymentCaptured",
            "PaymentFailed",
            "PaymentRefunded",
        ] {
            assert!(
                count(id, ty) <= 1,
                "{id}: {ty} published {} times",
                count(id, ty)
            );
        }
    }

    // The order service applied each event about an order once: its timeline records every
    // event it applies. The last ones (a PaymentFailed that reports a voided charge) may still
    // be on their way when the saga counts as settled, so wait for the counts to agree.
    const APPLIED: [&str; 7] = [
        "InventoryReserved",
        "InventoryRejected",
        "InventoryReleased",
        "PaymentCaptured",
        "PaymentFailed",
        "PaymentRefunded",
        "ShipmentScheduled",
    ];
    let mut unchecked: Vec<&str> = placed.iter().map(|p| p.order_id.as_str()).collect();
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let orders: Vec<(&str, Value)> = stream::iter(unchecked.iter().copied())
            .map(|id| {
                let shop = shop.clone();
                async move { (id, shop.order(id).await.unwrap()) }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let mut behind = Vec::new();
        for (id, order) in &orders {
            let timeline = order["timeline"].as_array().unwrap();
            for ty in APPLIED {
                let applied = timeline.iter().filter(|s| s["event_type"] == ty).count();
                assert!(
                    applied <= count(id, ty),
                    "{id}: the order service applied {ty} {applied} times"
                );
                if applied < count(id, ty) {
                    behind.push(*id);
                }
            }
        }
        if behind.is_empty() {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "events never applied by the order service, e.g. {:?}",
            &behind[..behind.len().min(3)]
        );
        unchecked = behind;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
