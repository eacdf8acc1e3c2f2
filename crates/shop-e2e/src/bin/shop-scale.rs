//! `shop-scale`: proof that scaled consumers lose nothing. With the shop running
//! (`scripts/shop up`), it places a seeded mix of orders at a steady rate and meanwhile runs
//! extra inventory and payment processes in the same consumer groups: 1 -> 4 replicas, then one
//! replica of each killed with SIGKILL and one stopped with SIGTERM (-> 2), then back to 1. When
//! every saga has settled it checks the end-to-end invariants (`shop_e2e::scenario`) and prints
//! which partitions each replica was given and the processing pauses around each step. Run it
//! through `scripts/scale-proof`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use shop_e2e::client::Shop;
use shop_e2e::mix::plan;
use shop_e2e::process::{self, assignments, Spec};
use shop_e2e::scenario::Run;
use shop_e2e::stats::Latencies;

#[derive(Debug, Parser)]
#[command(
    name = "shop-scale",
    about = "Scaled consumers under load lose nothing (see scripts/scale-proof)"
)]
struct Args {
    /// Orders per second placed during the whole run.
    #[arg(long, default_value_t = 40.0)]
    rate: f64,
    /// Seconds of placing orders.
    #[arg(long, default_value_t = 45)]
    secs: u64,
    /// Seed of the order mix.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where the service binaries are (target/debug or target/release).
    #[arg(long, env = "SHOP_BIN_DIR", default_value = "target/debug")]
    bin_dir: PathBuf,
    /// First HTTP port of the extra replicas.
    #[arg(long, default_value_t = 18200)]
    first_port: u16,
}

/// One extra replica we started.
struct Replica {
    spec: Spec,
    child: Child,
}

fn start(args: &Args, service: &str, n: usize, port: u16) -> anyhow::Result<Replica> {
    let spec = Spec::replica(service, n, port, "scale")?;
    let child = spec.spawn(&args.bin_dir, &[])?;
    Ok(Replica { spec, child })
}

async fn wait_ready(shop: &Shop, replica: &mut Replica) -> anyhow::Result<()> {
    let (spec, child) = (&replica.spec, &mut replica.child);
    process::wait_ready(
        &shop.http,
        &spec.name,
        &spec.ready_url(),
        Duration::from_secs(60),
        || Ok(child.try_wait()?.is_none()),
    )
    .await
    .with_context(|| format!("see {}", spec.log.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let shop = Shop::from_env()?;
    shop.ensure_running().await?;
    let run = std::sync::Arc::new(Run::prepare(&shop).await?);
    let orders = (args.rate * args.secs as f64) as usize;
    let planned = plan(args.seed, orders, &run.tag, &run.skus);
    println!("placing {orders} orders at {}/s for {} s; inventory and payment go 1 -> 4 -> 2 -> 1 replicas", args.rate, args.secs);

    let t0 = Instant::now();
    let started_at = Utc::now();
    let placing = {
        let (run, rate) = (run.clone(), args.rate);
        tokio::spawn(async move { run.place(planned, Some(rate)).await })
    };
    let mut steps: Vec<(String, DateTime<Utc>)> = vec![("1 replica each".into(), started_at)];

    // 1 -> 4
    tokio::time::sleep(Duration::from_secs(args.secs * 2 / 15)).await;
    let mut replicas = Vec::new();
    let mut port = args.first_port;
    for service in ["inventory", "payment"] {
        for n in 2..=4 {
            replicas.push(start(&args, service, n, port)?);
            port += 1;
        }
    }
    steps.push(("scaled to 4 each".into(), Utc::now()));
    for replica in &mut replicas {
        wait_ready(&shop, replica).await?;
    }
    println!(
        "{:>5.1} s  4 replicas each, all ready",
        t0.elapsed().as_secs_f64()
    );

    // 4 -> 2: one killed, one stopped gracefully, of each service.
    tokio::time::sleep(Duration::from_secs(args.secs * 4 / 15)).await;
    steps.push(("SIGKILL one, SIGTERM one (-> 2)".into(), Utc::now()));
    let mut stopped = Vec::new();
    for service in ["inventory", "payment"] {
        let mut mine = replicas.iter_mut().filter(|r| r.spec.service == service);
        let killed = mine.next().context("a replica")?;
        killed.child.kill()?;
        println!(
            "{:>5.1} s  SIGKILL {}",
            t0.elapsed().as_secs_f64(),
            killed.spec.name
        );
        let graceful = mine.next().context("a replica")?;
        process::signal(graceful.child.id(), "TERM")?;
        println!(
            "{:>5.1} s  SIGTERM {}",
            t0.elapsed().as_secs_f64(),
            graceful.spec.name
        );
        stopped.push(killed.spec.name.clone());
        stopped.push(graceful.spec.name.clone());
    }
    for replica in replicas
        .iter_mut()
        .filter(|r| stopped.contains(&r.spec.name))
    {
        let status = replica.child.wait()?;
        println!(
            "{:>5.1} s  {} exited: {status}",
            t0.elapsed().as_secs_f64(),
            replica.spec.name
        );
    }

    let placed = placing.await??;
    println!(
        "{:>5.1} s  placed {} orders",
        t0.elapsed().as_secs_f64(),
        placed.len()
    );
    // 2 -> 1
    steps.push(("SIGTERM the rest (-> 1)".into(), Utc::now()));
    for replica in replicas
        .iter_mut()
        .filter(|r| !stopped.contains(&r.spec.name))
    {
        process::signal(replica.child.id(), "TERM")?;
        let status = replica.child.wait()?;
        println!(
            "{:>5.1} s  SIGTERM {} exited: {status}",
            t0.elapsed().as_secs_f64(),
            replica.spec.name
        );
    }

    let settled = run.settle(&placed, Duration::from_secs(300)).await?;
    println!("{:>5.1} s  every saga settled", t0.elapsed().as_secs_f64());
    let report = run.check(&placed, &settled, false).await?;
    println!(
        "\nINVARIANTS HOLD: every saga ended by its deadline, stock conserved and never negative,"
    );
    println!(
        "captured - refunded = confirmed total, one capture and one shipment per confirmed order,"
    );
    println!(
        "every event published once ({} messages, {} distinct) and applied once.",
        report.messages, report.distinct_events
    );
    println!("outcomes by kind: {:?}", report.outcomes);
    if !report.unexpected.is_empty() {
        println!("{} order(s) ended otherwise than their kind expects (correct, but slowed by a kill), e.g. {:?}", report.unexpected.len(), &report.unexpected[..report.unexpected.len().min(3)]);
    }

    println!("\npartitions given to each extra replica (time UTC, held after, added):");
    for replica in &replicas {
        for (at, held, added) in assignments(&replica.spec.log) {
            println!("  {:<12} {at}  {held:>2}  {added}", replica.spec.name);
        }
    }

    // Processing pauses: how long events waited for inventory (OrderPlaced -> its outcome) and
    // for payment (InventoryReserved -> its outcome), in the 10 s after each step.
    let stamp = |e: &shop_e2e::topics::Seen| {
        e.occurred_at
            .as_deref()
            .and_then(|s| s.parse::<DateTime<Utc>>().ok())
    };
    let mut firsts: BTreeMap<(&str, &str), DateTime<Utc>> = BTreeMap::new();
    for e in &report.events {
        let short = e.event_type.rsplit('.').next().unwrap_or_default();
        if let Some(at) = stamp(e) {
            firsts.entry((e.key.as_str(), short)).or_insert(at);
        }
    }
    let waits = |from: &str, to: &[&str]| -> Vec<(DateTime<Utc>, chrono::TimeDelta)> {
        firsts
            .iter()
            .filter(|((_, ty), _)| *ty == from)
            .filter_map(|((key, _), at)| {
                let done = to.iter().filter_map(|t| firsts.get(&(*key, *t))).min()?;
                Some((*at, *done - *at))
            })
            .collect()
    };
    println!("\nwaits around each step (ms; median and max of events that arrived in the step's first 10 s):");
    println!(
        "  {:<34} {:>16} {:>16}",
        "step", "inventory p50/max", "payment p50/max"
    );
    let inventory = waits("OrderPlaced", &["InventoryReserved", "InventoryRejected"]);
    let payment = waits("InventoryReserved", &["PaymentCaptured", "PaymentFailed"]);
    for (name, at) in &steps {
        let window = |all: &[(DateTime<Utc>, chrono::TimeDelta)]| {
            let w: Latencies = all
                .iter()
                .filter(|(t, _)| *t >= *at && *t < *at + chrono::Duration::seconds(10))
                .map(|(_, wait)| *wait)
                .collect();
            format!("{:>7.0}/{:<7.0}", w.quantile_ms(0.5), w.max_ms())
        };
        println!(
            "  {name:<34} {:>16} {:>16}",
            window(&inventory),
            window(&payment)
        );
    }
    println!("\nThe first row is the baseline: one replica each, no rebalance. Payment waits include the");
    println!("provider's latency and, for flaky and pending customers, its retries.");
    Ok(())
}
