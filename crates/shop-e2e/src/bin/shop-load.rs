//! `shop-load`: the shop's load benchmark. For each catalogue (a hot one of 5 SKUs, a flash sale,
//! and a broad one of 10,000) it places in-stock orders through the gateway at rising fixed rates
//! (open loop: an order every 1/rate s whatever the answers) until the shop falls behind, which
//! draws the latency-vs-rate curve, and then as fast as a pool of clients can (closed loop). It
//! reads the topics alongside to time each saga from its OrderPlaced to its OrderConfirmed (both
//! stamped by the order service's clock). Prints, per phase: orders placed/s, confirmed/s, the
//! placed-to-confirmed latency median, p99 and max, the hops, and what an order cost
//! ([`shop_e2e::costs`]: PostgreSQL commits, Kafka requests and CPU per order); at the end the
//! sizes of the tables that grow with traffic. Run it through `scripts/bench shop`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use shop_e2e::client::Shop;
use shop_e2e::costs;
use shop_e2e::stats::Latencies;
use shop_e2e::topics::marks;

#[derive(Debug, Parser)]
#[command(
    name = "shop-load",
    about = "Load benchmark of the running shop (see scripts/bench shop)"
)]
struct Args {
    /// Fixed rates to hold, in orders per second, one phase each, rising: the curve stops at
    /// the first rate the shop cannot keep up with.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200,400,700,1000")]
    rates: Vec<u32>,
    /// Catalogues to run the phases on: `hot` (5 SKUs: every order contends for the same
    /// stock rows, as in a flash sale) and `broad` (10,000 SKUs).
    #[arg(long, value_delimiter = ',', default_value = "hot,broad")]
    catalogues: Vec<Catalogue>,
    /// Profile each phase: its busiest SQL statements (pg_stat_statements) and what the
    /// database's backends waited on (pg_stat_activity, sampled every 20 ms).
    #[arg(long)]
    profile: bool,
    /// The stack script asked for the broker's request counters.
    #[arg(long, default_value = "scripts/stack")]
    stack: std::path::PathBuf,
    /// Seconds each fixed-rate phase lasts.
    #[arg(long, default_value_t = 20)]
    phase_secs: u64,
    /// Seconds of the closed-loop phase at the maximum rate (0 skips it).
    #[arg(long, default_value_t = 30)]
    max_secs: u64,
    /// Concurrent clients of the maximum-rate phase.
    #[arg(long, default_value_t = 256)]
    clients: usize,
    /// Seconds to wait after a phase for its last sagas to end.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
}

/// A catalogue the orders are spread over.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Catalogue {
    Hot,
    Broad,
}

impl Catalogue {
    fn skus(self) -> usize {
        match self {
            Catalogue::Hot => 5,
            Catalogue::Broad => 10_000,
        }
    }
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
    ready: std::sync::mpsc::Sender<()>,
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
    let _ = ready.send(());
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
    /// Orders the gateway shed (429/503 with Retry-After).
    shed: u64,
    failed: u64,
    /// The counters when the phase began.
    before: Start,
}

/// A phase's starting point: the counters, and the wait sampler when profiling.
struct Start {
    counters: costs::Sample,
    waits: Option<costs::WaitSampler>,
}

/// How one placement went.
enum Placed {
    Order(String),
    /// The gateway shed it (429 or 503) and asked to come back after this long.
    Shed(Duration),
    Failed,
}

/// Orders refused during a phase: shed by the gateway (429/503, load shedding working as meant)
/// or failed otherwise. The first few failures are printed.
#[derive(Default)]
struct Tally {
    shed: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn count(&self, placed: Placed) -> Option<(String, Option<Duration>)> {
        match placed {
            Placed::Order(id) => Some((id, None)),
            Placed::Shed(wait) => {
                self.shed.fetch_add(1, Ordering::Relaxed);
                Some((String::new(), Some(wait)))
            }
            Placed::Failed => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

async fn place_one(shop: &Shop, tokens: &[String], skus: &[String], n: u64) -> Placed {
    static PRINTED: AtomicU64 = AtomicU64::new(0);
    let token = &tokens[n as usize % tokens.len()];
    let lines = vec![(skus[n as usize % skus.len()].clone(), 1)];
    let key = uuid::Uuid::now_v7().to_string();
    let failed = |what: String| {
        if PRINTED.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("placing failed: {what}");
        }
        Placed::Failed
    };
    match shop.place_answer(token, &lines, &key).await {
        Ok(answer) if answer.status.as_u16() == 201 => {
            answer.body["order_id"].as_str().map_or_else(
                || failed(answer.body.to_string()),
                |id| Placed::Order(id.to_owned()),
            )
        }
        Ok(answer) if matches!(answer.status.as_u16(), 429 | 503) => {
            Placed::Shed(answer.retry_after.unwrap_or(Duration::from_secs(1)))
        }
        Ok(answer) => failed(format!("{} {}", answer.status, answer.body)),
        Err(error) => failed(format!("{error:#}")),
    }
}

async fn fixed_rate(
    shop: &Shop,
    tokens: &[String],
    skus: &[String],
    rate: u32,
    secs: u64,
    before: Start,
) -> Phase {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let tally = Arc::new(Tally::default());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let total = u64::from(rate) * secs;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        tick.tick().await;
        let (shop, tokens, skus, ids, tally) = (
            shop.clone(),
            tokens.to_vec(),
            skus.to_vec(),
            ids.clone(),
            tally.clone(),
        );
        tasks.spawn(async move {
            // Open loop: a shed order is counted, not retried.
            if let Some((id, None)) = tally.count(place_one(&shop, &tokens, &skus, n).await) {
                ids.lock().unwrap().push(id);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let ids = std::mem::take(&mut *ids.lock().unwrap());
    Phase {
        name: format!("{rate}/s"),
        secs: started.elapsed().as_secs_f64(),
        ids,
        shed: tally.shed.load(Ordering::Relaxed),
        failed: tally.failed.load(Ordering::Relaxed),
        before,
    }
}

async fn max_rate(
    shop: &Shop,
    tokens: &[String],
    skus: &[String],
    clients: usize,
    secs: u64,
    before: Start,
) -> Phase {
    let until = Instant::now() + Duration::from_secs(secs);
    let counter = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (shop, tokens, skus, counter, tally) = (
            shop.clone(),
            tokens.to_vec(),
            skus.to_vec(),
            counter.clone(),
            tally.clone(),
        );
        tasks.spawn(async move {
            let mut mine = Vec::new();
            while Instant::now() < until {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                match tally.count(place_one(&shop, &tokens, &skus, n).await) {
                    Some((id, None)) => mine.push(id),
                    // A well-behaved client waits as long as the gateway asked.
                    Some((_, Some(wait))) => tokio::time::sleep(wait).await,
                    None => {}
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
        shed: tally.shed.load(Ordering::Relaxed),
        failed: tally.failed.load(Ordering::Relaxed),
        before,
    }
}

/// What the run needs at hand to measure a phase.
struct Bench {
    admin_url: String,
    stack: std::path::PathBuf,
    statements: bool,
    sagas: Arc<Mutex<Sagas>>,
    drain: Duration,
}

impl Bench {
    /// The counters now, and a fresh statement profile when asked for.
    async fn begin(&self) -> anyhow::Result<Start> {
        let mut waits = None;
        if self.statements {
            if !costs::reset_statements(&self.admin_url).await? {
                eprintln!("pg_stat_statements is not loaded: no statement profile");
            }
            waits = Some(costs::WaitSampler::start(self.admin_url.clone()));
        }
        Ok(Start {
            counters: costs::sample(&self.admin_url, &self.stack).await?,
            waits,
        })
    }

    /// Waits until every order of `phase` is confirmed or the drain passes; prints the phase's
    /// lines. True when the shop kept up (every order confirmed, at the rate they came).
    async fn report(&self, phase: &mut Phase) -> anyhow::Result<bool> {
        let give_up = Instant::now() + self.drain;
        loop {
            let confirmed = {
                let sagas = self.sagas.lock().unwrap();
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
        let waits = match phase.before.waits.take() {
            Some(sampler) => Some(sampler.finish().await?),
            None => None,
        };
        // PostgreSQL backends publish their counters within a second of going idle.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let spent = costs::sample(&self.admin_url, &self.stack)
            .await?
            .since(&phase.before.counters);
        let (line, hops, kept_up) = self.latencies(phase);
        println!("{line}");
        println!("{hops}");
        for line in spent.per_order(phase.ids.len()) {
            println!("{line}");
        }
        if let Some(waits) = waits {
            println!("{}", costs::waits_line(&waits));
        }
        if self.statements {
            println!("    busiest statements (calls per order, mean, total, database):");
            for line in costs::statements(&self.admin_url, phase.ids.len(), 12).await? {
                println!("{line}");
            }
        }
        Ok(kept_up)
    }

    fn latencies(&self, phase: &Phase) -> (String, String, bool) {
        let sagas = self.sagas.lock().unwrap();
        let mut latencies = Latencies::default();
        let (mut first, mut last) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>);
        for id in &phase.ids {
            if let (Some(placed), Some(confirmed)) = (sagas.placed.get(id), sagas.confirmed.get(id))
            {
                latencies.record(*confirmed - *placed);
                first = Some(first.map_or(*placed, |f| f.min(*placed)));
                last = Some(last.map_or(*confirmed, |l| l.max(*confirmed)));
            }
        }
        let span = match (first, last) {
            (Some(f), Some(l)) => (l - f).num_milliseconds() as f64 / 1000.0,
            _ => f64::NAN,
        };
        let hop = |from: &HashMap<String, DateTime<Utc>>, to: &HashMap<String, DateTime<Utc>>| {
            let waits: Latencies = phase
                .ids
                .iter()
                .filter_map(|id| Some(*to.get(id)? - *from.get(id)?))
                .collect();
            format!(
                "{:.0}/{:.0}",
                waits.quantile_ms(0.5),
                waits.quantile_ms(0.99)
            )
        };
        let hops = format!(
            "    hops p50/p99 ms: placed->reserved {}, reserved->captured {}, captured->confirmed {}",
            hop(&sagas.placed, &sagas.reserved),
            hop(&sagas.reserved, &sagas.captured),
            hop(&sagas.captured, &sagas.confirmed),
        );
        let placed_rate = phase.ids.len() as f64 / phase.secs;
        let confirmed_rate = latencies.len() as f64 / span;
        let pending = phase.ids.len() - latencies.len() as usize;
        // Keeping up: nothing pending, nothing shed or refused, confirmations as fast as orders came,
        // and no saga waiting longer than the phase itself.
        let kept_up = pending == 0
            && phase.failed == 0
            && phase.shed == 0
            && confirmed_rate >= 0.95 * placed_rate
            && latencies.quantile_ms(0.99) < 1000.0 * phase.secs / 4.0;
        let line = format!(
            "{:<18} {:>9.1} {:>12.1} {:>9.1} {:>9.1} {:>9.1} {:>8} {:>7} {:>7}{}",
            phase.name,
            placed_rate,
            confirmed_rate,
            latencies.quantile_ms(0.5),
            latencies.quantile_ms(0.99),
            latencies.max_ms(),
            pending,
            phase.shed,
            phase.failed,
            if kept_up { "" } else { "  (falls behind)" },
        );
        (line, hops, kept_up)
    }
}

/// Prices and stocks `count` SKUs tagged `tag`, a few at a time, showing progress.
async fn stock(shop: &Shop, tag: &str, count: usize) -> anyhow::Result<Vec<String>> {
    use futures::StreamExt as _;
    let skus: Vec<String> = (0..count).map(|i| format!("LOAD-{tag}-{i}")).collect();
    let quantity = if count < 100 { 1_000_000 } else { 10_000 };
    let mut done = 0;
    {
        let mut calls = futures::stream::iter(skus.iter())
            .map(|sku| shop.stock_up(sku, 1000, quantity))
            .buffer_unordered(16);
        while let Some(result) = calls.next().await {
            result?;
            done += 1;
            if done % 1000 == 0 {
                eprintln!("  stocked {done}/{count} SKUs");
            }
        }
    }
    Ok(skus)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let shop = Shop::from_env()?;
    shop.ensure_running().await?;
    let kafka = choreo::KafkaConfig::from_env().context("KAFKA_BROKERS")?;
    let admin_url =
        std::env::var("PG_ADMIN_URL").context("PG_ADMIN_URL (from the stack's env file)")?;
    let tag = shop_e2e::mix::run_tag();
    // Many customers, so the gateway's per-client rate limit is never what is measured.
    let tokens: Vec<String> = (0..500)
        .map(|i| shop.token(&format!("cus_load_{tag}_{i}")))
        .collect();

    let sagas = Arc::new(Mutex::new(Sagas::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (ready, assigned) = std::sync::mpsc::channel();
    let follower = {
        let (sagas, stop, kafka) = (sagas.clone(), stop.clone(), kafka.clone());
        std::thread::spawn(move || follow(kafka, sagas, stop, ready))
    };
    // Orders are placed only once the reader holds its start offsets.
    if tokio::task::spawn_blocking(move || assigned.recv())
        .await?
        .is_err()
    {
        follower.join().expect("the reader thread")?;
        anyhow::bail!("the topic reader stopped before it was assigned");
    }
    let bench = Bench {
        admin_url,
        stack: args.stack.clone(),
        statements: args.profile,
        sagas: sagas.clone(),
        drain: Duration::from_secs(args.drain_secs),
    };
    for catalogue in &args.catalogues {
        let count = catalogue.skus();
        eprintln!("stocking the {catalogue:?} catalogue ({count} SKUs)");
        let skus = stock(&shop, &format!("{tag}-{count}"), count).await?;
        println!("\ncatalogue: {count} SKUs ({catalogue:?})");
        println!(
            "{:<18} {:>9} {:>12} {:>9} {:>9} {:>9} {:>8} {:>7} {:>7}",
            "phase",
            "placed/s",
            "confirmed/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "pending",
            "shed",
            "failed"
        );
        for rate in &args.rates {
            let before = bench.begin().await?;
            let mut phase = fixed_rate(&shop, &tokens, &skus, *rate, args.phase_secs, before).await;
            if !bench.report(&mut phase).await? {
                break; // the curve ends where the shop falls behind
            }
        }
        if args.max_secs > 0 {
            let before = bench.begin().await?;
            let mut phase =
                max_rate(&shop, &tokens, &skus, args.clients, args.max_secs, before).await;
            bench.report(&mut phase).await?;
        }
    }
    stop.store(true, Ordering::Relaxed);
    follower.join().expect("the reader thread")?;
    println!("\ntables after the run (rows):");
    for line in costs::table_sizes(&bench.admin_url).await? {
        println!("{line}");
    }
    println!("\nplaced/s: orders the gateway accepted per second; confirmed/s: OrderConfirmed per second between the phase's first OrderPlaced and last OrderConfirmed;");
    println!("latency: OrderPlaced to OrderConfirmed, both stamped by the order service; pending: not confirmed {} s after the phase;", args.drain_secs);
    println!("per order: counters from the phase's start until its sagas drained, divided by the orders placed (pg commits from pg_stat_database, kafka requests from the broker's JMX counters, cpu from /proc).");
    Ok(())
}
