//! One chaos run from start to verdict: take over the shop's processes, put steady load on the
//! gateway, inject the seeded schedule of faults, stop the load, wait for every accepted order
//! to be final, then judge every invariant from the outside and print the figures. Whatever
//! happens (an error, Ctrl-C), the broker is resumed, the stack's parts started, the provider
//! healed and the replicas stopped before it returns; the five services stay running.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::fleet::{Fleet, Lifecycle};
use super::inject::{Injection, Injector};
use super::load::{self, Gauge};
use super::schedule::{self, Fault};
use super::{summary, verify};
use crate::client::Shop;
use crate::invariants::{Breaches, Endings, Strictness, Verdict};
use crate::mix::plan;
use crate::scenario::{Placed, Run};
use crate::topics::{dead_letter_topics, marks, Marks};

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub secs: u64,
    pub seed: u64,
    pub rate: f64,
    pub faults: Vec<Fault>,
    pub bin_dir: PathBuf,
    /// Extra processes of inventory and of payment.
    pub replicas: usize,
    pub first_port: u16,
    /// How long to wait for every accepted order to be final.
    pub settle_secs: u64,
}

/// The services run with replicas.
const REPLICATED: [&str; 2] = ["inventory", "payment"];
/// How long the end checks wait for groups, readiness and outboxes to come right.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Runs the suite; the verdicts, in order.
pub async fn run(options: Options) -> anyhow::Result<Vec<Verdict>> {
    let shop = Shop::from_env()?;
    let healthz = format!("{}/healthz", shop.provider);
    anyhow::ensure!(
        crate::process::ready(&shop.http, &healthz).await,
        "the provider simulator does not answer at {healthz}: run scripts/shop up first"
    );
    let steps = schedule::plan(
        options.seed,
        Duration::from_secs(options.secs),
        &options.faults,
    );
    println!(
        "chaos: seed {}, {} s at {} orders/s, {} faults planned: {}",
        options.seed,
        options.secs,
        options.rate,
        steps.len(),
        steps
            .iter()
            .map(|s| format!("{}@{}s", s.fault.name(), s.at.as_secs()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let fleet = Fleet::take_over(
        &shop.http,
        options.bin_dir.clone(),
        &REPLICATED,
        options.replicas,
        options.first_port,
    )
    .await?;
    let injector = Injector {
        fleet: Arc::new(Mutex::new(fleet)),
        shop: shop.clone(),
        admin_url: crate::process::var("PG_ADMIN_URL")?,
        provider_timeout: Duration::from_millis(
            std::env::var("PROVIDER_TIMEOUT_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2_000),
        ),
    };
    let supervising = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let supervisor = {
        let (fleet, on) = (injector.fleet.clone(), supervising.clone());
        tokio::spawn(async move {
            while on.load(Ordering::Relaxed) {
                fleet.lock().await.tick();
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let outcome = tokio::select! {
        outcome = under_fire(&options, &shop, &injector, &steps) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    injector.restore().await;
    supervising.store(false, Ordering::Relaxed);
    supervisor.await?;
    let mut fleet = injector.fleet.lock().await;
    fleet.release().await?;
    outcome
}

/// What the end checks compare with: the groups that read each topic and where their
/// dead-letter topics ended before the run.
struct Baseline {
    /// (topic, group, its DLQ topic) of the shop's own groups (a replay's are not checked).
    readers: Vec<(String, String, String)>,
    dead_letters: Marks,
}

impl Baseline {
    async fn take(run: &Run) -> anyhow::Result<Self> {
        let kafka = run.kafka.clone();
        let readers: Vec<(String, String, String)> =
            tokio::task::spawn_blocking(move || dead_letter_topics(&kafka))
                .await??
                .into_iter()
                .filter(|(_, group, _)| verify::CONSUMERS.contains(&group.as_str()))
                .collect();
        let mut baseline = Self {
            readers,
            dead_letters: Marks::default(),
        };
        baseline.dead_letters = baseline.dead_letter_marks(run).await?;
        Ok(baseline)
    }

    async fn dead_letter_marks(&self, run: &Run) -> anyhow::Result<Marks> {
        let kafka = run.kafka.clone();
        let names: Vec<String> = self.readers.iter().map(|(_, _, d)| d.clone()).collect();
        tokio::task::spawn_blocking(move || {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            marks(&kafka, &names)
        })
        .await?
    }
}

async fn under_fire(
    options: &Options,
    shop: &Shop,
    injector: &Injector,
    steps: &[schedule::Step],
) -> anyhow::Result<Vec<Verdict>> {
    shop.ensure_running().await?;
    let run = Run::prepare(shop).await?;
    let baseline = Baseline::take(&run).await?;
    let (load, injections) = fire(options, &run, injector, steps).await?;
    judge(options, &run, injector, &baseline, load, &injections).await
}

/// Steady load while the schedule runs; the load once every client has its answer.
async fn fire(
    options: &Options,
    run: &Run,
    injector: &Injector,
    steps: &[schedule::Step],
) -> anyhow::Result<(load::Load, Vec<Injection>)> {
    let budget = options.secs as usize + 900;
    let planned = plan(
        options.seed,
        (options.rate * budget as f64) as usize,
        &run.tag,
        &run.skus,
    );
    let gauge = Arc::new(Gauge::default());
    let loading = {
        let (shop, gauge, rate) = (run.shop.clone(), gauge.clone(), options.rate);
        tokio::spawn(async move { load::run(&shop, planned, rate, gauge).await })
    };
    let t0 = Instant::now();
    let note = |what: &str| {
        println!(
            "{:>6.1} s  {what}  [{} sent, {} accepted]",
            t0.elapsed().as_secs_f64(),
            gauge.sent.load(Ordering::Relaxed),
            gauge.accepted.load(Ordering::Relaxed)
        );
    };
    let mut injections: Vec<Injection> = Vec::new();
    let end = Duration::from_secs(options.secs);
    for (n, step) in steps.iter().enumerate() {
        let first_round = n < options.faults.len();
        if !first_round && t0.elapsed() + step.fault.planned() + schedule::COOL_DOWN > end {
            note(&format!(
                "{} steps left out: the run's time is up",
                steps.len() - n
            ));
            break;
        }
        tokio::time::sleep_until((t0 + step.at).into()).await;
        note(&format!("{} ...", step.fault.name()));
        let injection = injector.inject(step).await;
        let took = (injection.ended - injection.started).num_milliseconds() as f64 / 1000.0;
        match &injection.failed {
            None => note(&format!(
                "{} done in {took:.1} s: {}",
                step.fault.name(),
                injection.target
            )),
            Some(e) => note(&format!("{} NOT INJECTED: {e}", step.fault.name())),
        }
        injections.push(injection);
    }
    tokio::time::sleep_until((t0 + end.max(t0.elapsed() + schedule::COOL_DOWN)).into()).await;
    injector.restore().await;
    gauge.stop.store(true, Ordering::Relaxed);
    note("load stopped; waiting for the clients' last answers");
    let mut load = loading.await?;
    if !load.unanswered.is_empty() {
        note(&format!(
            "{} orders unanswered; asking again under their keys",
            load.unanswered.len()
        ));
        let again = load::resolve(&run.shop, std::mem::take(&mut load.unanswered)).await;
        load.accepted.extend(again.accepted);
        load.unanswered = again.unanswered;
    }
    note(&format!(
        "{} orders accepted; settling",
        load.accepted.len()
    ));
    Ok((load, injections))
}

/// Waits until every accepted order is final, judges every invariant and prints the figures.
async fn judge(
    options: &Options,
    run: &Run,
    injector: &Injector,
    baseline: &Baseline,
    load: load::Load,
    injections: &[Injection],
) -> anyhow::Result<Vec<Verdict>> {
    let (shop, placed) = (&run.shop, &load.accepted);
    let settling = run
        .settle_until(placed, Duration::from_secs(options.settle_secs))
        .await;
    println!("{} of {} sagas over", settling.settled.len(), placed.len());
    let hung: Breaches = injector
        .fleet
        .lock()
        .await
        .log
        .iter()
        .filter(|h| h.what == Lifecycle::HungOnTerm)
        .map(|h| format!("{} at {}", h.name, h.at.format("%H:%M:%S")))
        .collect();
    let mut verdicts = vec![
        Verdict::new(
            "every planned fault injected",
            injections
                .iter()
                .filter_map(|i| {
                    let why = i.failed.as_ref()?;
                    let at = i.started.format("%H:%M:%S");
                    Some(format!("{} at {at}: {why}", i.fault.name()))
                })
                .collect::<Breaches>()
                .outcome(),
        ),
        Verdict::new(
            "every order request answered (retried under its key)",
            load.unanswered
                .iter()
                .map(|u| format!("order {} ({:?}): {}", u.i, u.plan.kind, u.error))
                .collect::<Breaches>()
                .outcome(),
        ),
        Verdict::new(
            "every accepted order's saga ended (shipped, or cancelled and compensated)",
            settling
                .open
                .iter()
                .map(|id| match &settling.last_error {
                    Some(e) => format!("{id} still open (last error: {e})"),
                    None => format!("{id} still open"),
                })
                .collect::<Breaches>()
                .outcome(),
        ),
        Verdict::new(
            "every SIGTERM finished within the stop deadline",
            hung.outcome(),
        ),
    ];
    let settled = settling.settled;
    let over: Vec<Placed> = placed
        .iter()
        .filter(|p| settled.contains_key(&p.order_id))
        .cloned()
        .collect();
    let rules = Strictness {
        endings: Endings::OrTimeout,
        deadline_slack: None,
    };
    let (report, saga) = run.verdicts(&over, &settled, rules).await?;
    verdicts.extend(saga);
    verdicts.push(verify::ledger(shop, &over, &settled).await);
    let pairs: Vec<(String, String)> = baseline
        .readers
        .iter()
        .map(|(topic, group, _)| (topic.clone(), group.clone()))
        .collect();
    verdicts.extend(verify::inboxes(&report.events, &pairs).await);
    let dead_letters = baseline.dead_letter_marks(run).await?;
    verdicts.push(verify::dead_letters(&run.kafka, &baseline.dead_letters, &dead_letters).await);
    verdicts.push(verify::outboxes(CATCH_UP).await);
    let (expected, urls) = {
        let fleet = injector.fleet.lock().await;
        let mut expected = BTreeMap::new();
        for service in verify::CONSUMERS {
            expected.insert(service.to_owned(), fleet.of(service).len());
        }
        let mut urls: Vec<(String, String)> = fleet
            .members
            .iter()
            .map(|m| (m.spec.name.clone(), m.spec.ready_url()))
            .collect();
        urls.push(("provider-sim".into(), format!("{}/healthz", shop.provider)));
        (expected, urls)
    };
    verdicts.push(verify::groups(&run.kafka, expected, CATCH_UP).await);
    verdicts.push(verify::readiness(&shop.http, urls, CATCH_UP).await);

    println!(
        "\n{} orders accepted, {} sagas over; outcomes: {:?}",
        placed.len(),
        settled.len(),
        report.outcomes
    );
    println!(
        "{} timed out though their kind expects another ending (a fault held them past their deadline), {} ended after their deadline",
        report.unexpected.len(),
        report.late
    );
    println!(
        "{} messages on the shop's topics for this run, {} distinct events",
        report.messages, report.distinct_events
    );
    let happenings = injector.fleet.lock().await.log.clone();
    summary::print(injections, &over, &settled, &happenings);
    Ok(verdicts)
}
