//! `shop-load`: the shop's load benchmark. Places in-stock orders through the gateway at fixed
//! rates (open loop: an order every 1/rate s whatever the answers) and then as fast as a pool
//! of clients can (closed loop), and reads `shop.orders.v1` alongside to time each saga from
//! its OrderPlaced to its OrderConfirmed (both stamped by the order service's clock). Prints,
//! per phase: orders placed/s, orders confirmed/s, and the placed-to-confirmed latency median,
//! p99 and max. Run it through `scripts/bench shop`, against the running shop.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use shop_e2e::client::Shop;
use shop_e2e::topics::marks;

#[derive(Debug, Parser)]
#[command(
    name = "shop-load",
    about = "Load benchmark of the running shop (see scripts/bench shop)"
)]
struct Args {
    /// Fixed rates to hold, in orders per second, one phase each.
    #[arg(long, value_delimiter = ',', default_value = "100,200,500")]
    rates: Vec<u32>,
    /// Seconds each fixed-rate phase lasts.
    #[arg(long, default_value_t = 20)]
    phase_secs: u64,
    /// Seconds of the closed-loop phase at the maximum rate (0 skips it).
    #[arg(long, default_value_t = 60)]
    max_secs: u64,
    /// Concurrent clients of the maximum-rate phase.
    #[arg(long, default_value_t = 256)]
    clients: usize,
    /// Seconds to wait after a phase for its last sagas to end.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
}

/// When each order of the run was placed and confirmed, by the order service's stamps.
#[derive(Default)]
struct Sagas {
    placed: HashMap<String, DateTime<Utc>>,
    reserved: HashMap<String, DateTime<Utc>>,
    captured: HashMap<String, DateTime<Utc>>,
    confirmed: HashMap<String, DateTime<Utc>>,
}

/// Follows shop.orders.v1 from its current end, recording OrderPlaced and OrderConfirmed.
fn follow(
    shop_kafka: choreo::KafkaConfig,
    sagas: Arc<Mutex<Sagas>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let start = marks(
        &shop_kafka,
        &["shop.orders.v1", "shop.inventory.v1", "shop.payments.v1"],
    )?;
    let consumer: BaseConsumer =
        choreo::kafka::consumer_config(&shop_kafka, "shop-load-reader", "shop-load-reader")
            .create()?;
    let mut assignment = TopicPartitionList::new();
    for ((topic, partition), end) in &start.0 {
        assignment.add_partition_offset(topic, *partition, Offset::Offset(*end))?;
    }
    consumer.assign(&assignment)?;
    while !stop.load(Ordering::Relaxed) {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        let (Some(kind), Some(at)) = (
            choreo::kafka::header(&message, "event_type"),
            choreo::kafka::header(&message, "occurred_at")
                .and_then(|s| s.parse::<DateTime<Utc>>().ok()),
        ) else {
            continue;
        };
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        let mut sagas = sagas.lock().unwrap();
        match kind {
            "shop.order.OrderPlaced" => {
                sagas.placed.insert(key, at);
            }
            "shop.order.OrderConfirmed" => {
                sagas.confirmed.insert(key, at);
            }
            "shop.inventory.InventoryReserved" => {
                sagas.reserved.insert(key, at);
            }
            "shop.payment.PaymentCaptured" => {
                sagas.captured.insert(key, at);
            }
            _ => {}
        }
    }
    Ok(())
}

/// What one phase measured.
struct Phase {
    name: String,
    secs: f64,
    ids: Vec<String>,
    failed: u64,
    /// CPU seconds per part of the system while the phase placed orders.
    cpu: BTreeMap<String, f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn place_one(shop: &Shop, tokens: &[String], skus: &[String], n: u64) -> Option<String> {
    let token = &tokens[n as usize % tokens.len()];
    let lines = vec![(skus[n as usize % skus.len()].clone(), 1)];
    let key = uuid::Uuid::now_v7().to_string();
    match shop.place(token, &lines, &key).await {
        Ok((status, body)) if status.as_u16() == 201 => {
            body["order_id"].as_str().map(str::to_owned)
        }
        Ok((status, body)) => {
            eprintln!("placing failed: {status} {body}");
            None
        }
        Err(error) => {
            eprintln!("placing failed: {error:#}");
            None
        }
    }
}

async fn fixed_rate(
    shop: &Shop,
    tokens: &[String],
    skus: &[String],
    rate: u32,
    secs: u64,
) -> Phase {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let cpu_before = cpu_by_part();
    let total = u64::from(rate) * secs;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        tick.tick().await;
        let (shop, tokens, skus, ids, failed) = (
            shop.clone(),
            tokens.to_vec(),
            skus.to_vec(),
            ids.clone(),
            failed.clone(),
        );
        tasks.spawn(async move {
            match place_one(&shop, &tokens, &skus, n).await {
                Some(id) => ids.lock().unwrap().push(id),
                None => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let ids = std::mem::take(&mut *ids.lock().unwrap());
    Phase {
        name: format!("{rate}/s"),
        secs: started.elapsed().as_secs_f64(),
        ids,
        failed: failed.load(Ordering::Relaxed),
        cpu: cpu_between(&cpu_before, &cpu_by_part()),
    }
}

async fn max_rate(
    shop: &Shop,
    tokens: &[String],
    skus: &[String],
    clients: usize,
    secs: u64,
) -> Phase {
    let until = Instant::now() + Duration::from_secs(secs);
    let counter = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let cpu_before = cpu_by_part();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (shop, tokens, skus, counter, failed) = (
            shop.clone(),
            tokens.to_vec(),
            skus.to_vec(),
            counter.clone(),
            failed.clone(),
        );
        tasks.spawn(async move {
            let mut mine = Vec::new();
            while Instant::now() < until {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                match place_one(&shop, &tokens, &skus, n).await {
                    Some(id) => mine.push(id),
                    None => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            mine
        });
    }
    let mut ids = Vec::new();
    while let Some(mine) = tasks.join_next().await {
        ids.extend(mine.expect("a client"));
    }
    Phase {
        name: format!("max ({clients} clients)"),
        secs: started.elapsed().as_secs_f64(),
        ids,
        failed: failed.load(Ordering::Relaxed),
        cpu: cpu_between(&cpu_before, &cpu_by_part()),
    }
}

/// Waits until every order of `phase` is confirmed or `drain` passes; prints the phase's line.
async fn report(phase: &Phase, sagas: &Mutex<Sagas>, drain: Duration) {
    let give_up = Instant::now() + drain;
    loop {
        let confirmed = {
            let sagas = sagas.lock().unwrap();
            phase
                .ids
                .iter()
                .filter(|id| sagas.confirmed.contains_key(*id))
                .count()
        };
        if confirmed == phase.ids.len() || Instant::now() > give_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let sagas = sagas.lock().unwrap();
    let mut latencies = Vec::new();
    let (mut first, mut last) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>);
    for id in &phase.ids {
        if let (Some(placed), Some(confirmed)) = (sagas.placed.get(id), sagas.confirmed.get(id)) {
            latencies.push((*confirmed - *placed).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            first = Some(first.map_or(*placed, |f| f.min(*placed)));
            last = Some(last.map_or(*confirmed, |l| l.max(*confirmed)));
        }
    }
    latencies.sort_by(f64::total_cmp);
    let span = match (first, last) {
        (Some(f), Some(l)) => (l - f).num_milliseconds() as f64 / 1000.0,
        _ => f64::NAN,
    };
    let hop = |from: &HashMap<String, DateTime<Utc>>, to: &HashMap<String, DateTime<Utc>>| {
        let mut waits: Vec<f64> = phase
            .ids
            .iter()
            .filter_map(|id| {
                Some((*to.get(id)? - *from.get(id)?).num_microseconds()? as f64 / 1000.0)
            })
            .collect();
        waits.sort_by(f64::total_cmp);
        format!(
            "{:.0}/{:.0}",
            percentile(&waits, 0.5),
            percentile(&waits, 0.99)
        )
    };
    let hops = format!(
        "    hops p50/p99 ms: placed->reserved {}, reserved->captured {}, captured->confirmed {}",
        hop(&sagas.placed, &sagas.reserved),
        hop(&sagas.reserved, &sagas.captured),
        hop(&sagas.captured, &sagas.confirmed),
    );
    println!(
        "{:<18} {:>9.1} {:>12.1} {:>9.1} {:>9.1} {:>9.1} {:>8} {:>7}",
        phase.name,
        phase.ids.len() as f64 / phase.secs,
        latencies.len() as f64 / span,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        phase.ids.len() - latencies.len(),
        phase.failed,
    );
    println!("{hops}");
    let used: Vec<String> = phase
        .cpu
        .iter()
        .filter(|(_, secs)| **secs > 0.0)
        .map(|(part, secs)| format!("{part} {:.0}%", 100.0 * secs / phase.secs))
        .collect();
    println!("    cpu (% of one core while placing): {}", used.join(", "));
}

/// CPU seconds each part of the system has used so far (all its threads; PostgreSQL summed over
/// its backends), from /proc. A cheap profile: where the machine's two cores go.
fn cpu_by_part() -> BTreeMap<String, f64> {
    const TICKS_PER_SECOND: f64 = 100.0; // USER_HZ on Linux
    let mut parts = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return parts;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
            f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
        });
        let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        let part = if comm.starts_with("postgres") {
            "postgresql"
        } else if cmdline.contains("kafka.Kafka") {
            "kafka"
        } else if cmdline.contains("apicurio") {
            "registry"
        } else if [
            "order",
            "inventory",
            "payment",
            "shipping",
            "gateway",
            "provider-sim",
            "shop-load",
        ]
        .contains(&comm)
        {
            comm
        } else {
            continue;
        };
        *parts.entry(part.to_owned()).or_insert(0.0) += ticks / TICKS_PER_SECOND;
    }
    parts
}

/// What each part used between two samples.
fn cpu_between(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(part, secs)| {
            (
                part.clone(),
                secs - before.get(part).copied().unwrap_or(0.0),
            )
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let shop = Shop::from_env()?;
    shop.ensure_running().await?;
    let kafka = choreo::KafkaConfig::from_env().context("KAFKA_BROKERS")?;
    let tag = shop_e2e::mix::run_tag();
    let skus: Vec<String> = (0..8).map(|i| format!("LOAD-{tag}-{i}")).collect();
    for sku in &skus {
        shop.stock_up(sku, 1000, 1_000_000).await?;
    }
    // Many customers, so the gateway's per-client rate limit is never what is measured.
    let tokens: Vec<String> = (0..500)
        .map(|i| shop.token(&format!("cus_load_{tag}_{i}")))
        .collect();

    let sagas = Arc::new(Mutex::new(Sagas::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let (sagas, stop, kafka) = (sagas.clone(), stop.clone(), kafka.clone());
        std::thread::spawn(move || follow(kafka, sagas, stop))
    };
    tokio::time::sleep(Duration::from_secs(2)).await; // the reader is assigned before the first order

    println!(
        "{:<18} {:>9} {:>12} {:>9} {:>9} {:>9} {:>8} {:>7}",
        "phase", "placed/s", "confirmed/s", "p50 ms", "p99 ms", "max ms", "pending", "failed"
    );
    let drain = Duration::from_secs(args.drain_secs);
    for rate in &args.rates {
        let phase = fixed_rate(&shop, &tokens, &skus, *rate, args.phase_secs).await;
        report(&phase, &sagas, drain).await;
    }
    if args.max_secs > 0 {
        let phase = max_rate(&shop, &tokens, &skus, args.clients, args.max_secs).await;
        report(&phase, &sagas, drain).await;
    }
    stop.store(true, Ordering::Relaxed);
    follower.join().expect("the reader thread")?;
    println!("\nplaced/s: orders the gateway accepted per second; confirmed/s: OrderConfirmed per second between the phase's first OrderPlaced and last OrderConfirmed;");
    println!("latency: OrderPlaced to OrderConfirmed, both stamped by the order service; pending: not confirmed {} s after the phase.", args.drain_secs);
    Ok(())
}
