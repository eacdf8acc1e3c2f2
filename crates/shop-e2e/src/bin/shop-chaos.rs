//! `shop-chaos`: the shop under fire. With the stack and the shop running (`scripts/stack up`,
//! `scripts/shop up`), it takes over the shop's service processes, puts steady load on the
//! gateway, injects a seeded schedule of faults (processes killed, stopped and frozen, the
//! broker paused and restarted, PostgreSQL crashed, relay locks cut, the registry away during a
//! cold start, the provider slow and failing, a handler panicking), waits until every accepted
//! order is final and checks every invariant from the outside. It ends with `N passed, M failed`
//! and exits 1 when any invariant failed. Run it through `scripts/chaos`.

use std::path::PathBuf;

use clap::Parser;
use shop_e2e::chaos::schedule::Fault;
use shop_e2e::chaos::suite::{self, Options};

#[derive(Debug, Parser)]
#[command(
    name = "shop-chaos",
    about = "The shop under steady load and a seeded schedule of faults; every invariant checked \
             from the outside at the end (see scripts/chaos)",
    after_help = "Faults (--faults, comma-separated; all by default):
  kill             SIGKILL each service in turn, 3 s apart (the harness restarts each)
  term             SIGTERM each service in turn, 3 s apart (SIGKILL after 35 s; restarted)
  kill-replicas    SIGKILL every process of inventory or of payment at once
  freeze-consumer  SIGSTOP a consumer process for 12 s (past its 10 s session), then SIGCONT
  broker-pause     SIGSTOP the broker for 13 s, then SIGCONT
  broker-restart   scripts/stack restart kafka
  broker-flap      the broker paused 12 s, resumed, restarted twice in quick succession
  pg-restart       scripts/stack restart postgres --immediate (a crash)
  relay-lock       pg_terminate_backend on every relay's advisory-lock connection
  registry-cold    the registry stopped while a service restarts cold, started 10 s later
  provider-slow    the provider answers after the payment client's timeout (unknown outcomes)
  provider-flaky   the provider answers 503 to 70 % of calls for 10 s
  panic            a service restarted with CHOREO_FAULT_PANIC_ONCE=<an event type it applies>

Every kind runs once first (in a seeded order), then seeded picks until --secs is up.

Processes: the five services scripts/shop started are taken over (stopped by pid file, started
again as children with the same environment, port, log and pid file) and supervised: whatever
exits is started again, and counted. One replica of inventory and of payment is added
(--replicas) and stopped at the end; the services stay running. The stack's shared parts
(broker, PostgreSQL, registry) are hit too: do not run it while others test against the
same stack.

At the end: every accepted order final, then each invariant judged from the outside (the
services' APIs, the provider's ledger, the topics, the inboxes and outboxes, the groups, the
readiness checks), the per-fault figures, and a last line `N passed, M failed` (exit 1 if
M > 0)."
)]
struct Args {
    /// Seconds of load (faults are planned within them; the first round of every kind always
    /// runs, lengthening the load if it must).
    #[arg(long, default_value_t = 200)]
    secs: u64,
    /// Seed of the order mix and of the fault schedule.
    #[arg(long, default_value_t = 20_261_204)]
    seed: u64,
    /// Orders per second placed through the gateway.
    #[arg(long, default_value_t = 8.0)]
    rate: f64,
    /// The fault kinds to inject, comma-separated (see below).
    #[arg(long, value_delimiter = ',', value_parser = Fault::parse)]
    faults: Option<Vec<Fault>>,
    /// Extra processes of inventory and of payment, in the same consumer groups.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// First HTTP port of the replicas.
    #[arg(long, default_value_t = 18300)]
    first_port: u16,
    /// How long to wait, after the load, for every accepted order to be final.
    #[arg(long, default_value_t = 300)]
    settle_secs: u64,
    /// Where the service binaries are (debug builds: the panic hook is compiled out of release).
    #[arg(long, env = "SHOP_BIN_DIR", default_value = "target/debug")]
    bin_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.rate > 0.0, "--rate must be above 0");
    let options = Options {
        secs: args.secs,
        seed: args.seed,
        rate: args.rate,
        faults: args.faults.unwrap_or_else(|| Fault::ALL.to_vec()),
        bin_dir: args.bin_dir,
        replicas: args.replicas,
        first_port: args.first_port,
        settle_secs: args.settle_secs,
    };
    let verdicts = suite::run(options).await?;
    println!();
    let mut failed = 0;
    for verdict in &verdicts {
        match &verdict.outcome {
            Ok(()) => println!("PASS  {}", verdict.name),
            Err(e) => {
                failed += 1;
                println!("FAIL  {}: {e:#}", verdict.name);
            }
        }
    }
    println!("{} passed, {failed} failed", verdicts.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
