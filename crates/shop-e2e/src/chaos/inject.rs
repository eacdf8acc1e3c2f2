//! Injecting one fault into the real processes: service processes through the [`Fleet`], the
//! broker, PostgreSQL and the registry through their pid files and `scripts/stack`, the relay's
//! lock connection through `pg_terminate_backend`, the provider through its `/admin/faults`.
//! [`Injector::restore`] undoes whatever a fault may have left behind (a frozen broker, a
//! stopped registry, provider faults), also after an error or a Ctrl-C.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::Mutex;

use super::fleet::{Fleet, SERVICES};
use super::schedule::{Fault, Step};
use crate::client::Shop;
use crate::process;

/// Past the consumers' 10 s session timeout (`choreo::kafka::consumer_config`).
const PAST_SESSION: Duration = Duration::from_secs(12);
/// Between the services a kill or term fault hits one after the other.
const BETWEEN_SERVICES: Duration = Duration::from_secs(3);
/// How long the provider faults and the registry outage last.
const PROVIDER_FAULT: Duration = Duration::from_secs(10);
const REGISTRY_AWAY: Duration = Duration::from_secs(10);

/// For the panic hook: a service and an event type it applies (the `event_type` header).
const PANICS: [(&str, &str); 4] = [
    ("inventory", "shop.order.OrderPlaced"),
    ("payment", "shop.inventory.InventoryReserved"),
    ("order", "shop.payment.PaymentCaptured"),
    ("shipping", "shop.order.OrderConfirmed"),
];

/// One fault as it was injected.
#[derive(Debug, Clone)]
pub struct Injection {
    pub fault: Fault,
    pub started: DateTime<Utc>,
    /// When the fault itself was over (the signal sent, the broker resumed or restarted, the
    /// provider healed); recovery is measured from here.
    pub ended: DateTime<Utc>,
    pub target: String,
    /// Why it could not be injected, if it could not.
    pub failed: Option<String>,
    /// Where to see that it took effect (the panic in the service's log).
    pub evidence: Option<Evidence>,
}

/// A line a fault leaves in a log once it took effect.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub log: PathBuf,
    pub from: u64,
    pub needle: &'static str,
}

impl Evidence {
    /// Whether the line is in the log since the fault.
    pub fn seen(&self) -> bool {
        std::fs::read(&self.log).is_ok_and(|bytes| {
            let from = (self.from as usize).min(bytes.len());
            String::from_utf8_lossy(&bytes[from..]).contains(self.needle)
        })
    }
}

/// What `run` did: its target, and its evidence when it leaves some.
struct Done {
    target: String,
    evidence: Option<Evidence>,
}

impl From<String> for Done {
    fn from(target: String) -> Self {
        Self {
            target,
            evidence: None,
        }
    }
}

pub struct Injector {
    pub fleet: Arc<Mutex<Fleet>>,
    pub shop: Shop,
    pub admin_url: String,
    /// The payment service's provider timeout (`PROVIDER_TIMEOUT_MS`, 2 s by default).
    pub provider_timeout: Duration,
}

impl Injector {
    /// Injects `step`'s fault and returns when the fault is over.
    pub async fn inject(&self, step: &Step) -> Injection {
        let started = Utc::now();
        let (done, failed) = match self.run(step).await {
            Ok(done) => (done, None),
            Err(e) => (String::new().into(), Some(format!("{e:#}"))),
        };
        Injection {
            fault: step.fault,
            started,
            ended: Utc::now(),
            target: done.target,
            failed,
            evidence: done.evidence,
        }
    }

    async fn run(&self, step: &Step) -> anyhow::Result<Done> {
        let pick = step.pick as usize;
        match step.fault {
            Fault::Kill | Fault::Term => {
                let signal = if step.fault == Fault::Kill {
                    "KILL"
                } else {
                    "TERM"
                };
                // Each service once (its first process; replicas fall to kill-replicas), in
                // an order the pick rotates, a few seconds apart.
                let mut hit = Vec::new();
                for n in 0..SERVICES.len() {
                    let service = SERVICES[(pick + n) % SERVICES.len()];
                    if n > 0 {
                        tokio::time::sleep(BETWEEN_SERVICES).await;
                    }
                    let mut fleet = self.fleet.lock().await;
                    let i = fleet.of(service)[0];
                    fleet.signal(i, signal)?;
                    hit.push(service);
                }
                Ok(hit.join(", ").into())
            }
            Fault::KillReplicas => {
                let service = ["inventory", "payment"][pick % 2];
                let mut fleet = self.fleet.lock().await;
                let all = fleet.of(service);
                for &i in &all {
                    fleet.signal(i, "KILL")?;
                }
                Ok(format!("{service} ×{}", all.len()).into())
            }
            Fault::FreezeConsumer => {
                let (i, pid, name, log) = {
                    let fleet = self.fleet.lock().await;
                    let consumers = fleet.consumers();
                    let i = consumers[pick % consumers.len()];
                    let m = &fleet.members[i];
                    (i, m.pid(), m.spec.name.clone(), m.spec.log.clone())
                };
                let from = std::fs::metadata(&log).map_or(0, |m| m.len());
                process::signal(pid, "STOP")?;
                tokio::time::sleep(PAST_SESSION).await;
                let still = self.fleet.lock().await.members[i].pid();
                process::signal(still, "CONT")?;
                // On waking, librdkafka finds its session gone (a zombie member no more).
                Ok(Done {
                    target: format!("{name} for {PAST_SESSION:?}"),
                    evidence: Some(Evidence {
                        log,
                        from,
                        needle: "session timed out",
                    }),
                })
            }
            Fault::BrokerPause => {
                let how_long = PAST_SESSION + Duration::from_secs(1);
                pause_broker(how_long).await?;
                Ok(format!("kafka for {how_long:?}").into())
            }
            Fault::BrokerRestart => {
                stack(&["restart", "kafka"]).await?;
                Ok(String::from("kafka").into())
            }
            Fault::BrokerFlap => {
                pause_broker(PAST_SESSION).await?;
                stack(&["restart", "kafka"]).await?;
                stack(&["restart", "kafka"]).await?;
                Ok(format!("kafka paused {PAST_SESSION:?}, restarted twice").into())
            }
            Fault::PgRestart => {
                stack(&["restart", "postgres", "--immediate"]).await?;
                Ok(String::from("postgres (immediate)").into())
            }
            Fault::RelayLock => Ok(self.terminate_relay_locks().await?.into()),
            Fault::RegistryCold => {
                stack(&["stop", "registry"]).await?;
                let outcome = self.restart_cold(pick).await;
                tokio::time::sleep(REGISTRY_AWAY).await;
                stack(&["start", "registry"]).await?;
                outcome
            }
            Fault::ProviderSlow => {
                let after = self.provider_timeout + Duration::from_millis(1500);
                self.provider_faults(json!({"answer_after_ms": after.as_millis() as u64}))
                    .await?;
                tokio::time::sleep(PROVIDER_FAULT).await;
                self.clear_provider_faults().await?;
                Ok(format!("answers after {after:?} for {PROVIDER_FAULT:?}").into())
            }
            Fault::ProviderFlaky => {
                self.provider_faults(json!({"failure_rate": 0.7})).await?;
                tokio::time::sleep(PROVIDER_FAULT).await;
                self.clear_provider_faults().await?;
                Ok(format!("70 % 503 for {PROVIDER_FAULT:?}").into())
            }
            Fault::Panic => {
                let (service, event_type) = PANICS[pick % PANICS.len()];
                let mut fleet = self.fleet.lock().await;
                let i = fleet.of(service)[0];
                let log = fleet.members[i].spec.log.clone();
                let from = std::fs::metadata(&log).map_or(0, |m| m.len());
                fleet.restart_with(
                    i,
                    vec![("CHOREO_FAULT_PANIC_ONCE".into(), event_type.into())],
                )?;
                Ok(Done {
                    target: format!("{service} panics once on {event_type}"),
                    evidence: Some(Evidence {
                        log,
                        from,
                        needle: "CHOREO_FAULT_PANIC_ONCE: a test fault",
                    }),
                })
            }
        }
    }

    /// Restarts a consumer process while the registry is away (its schema cache starts empty);
    /// the evidence is the codec's "unreachable" error in its log.
    async fn restart_cold(&self, pick: usize) -> anyhow::Result<Done> {
        let mut fleet = self.fleet.lock().await;
        let consumers = fleet.consumers();
        let i = consumers[pick % consumers.len()];
        let log = fleet.members[i].spec.log.clone();
        let from = std::fs::metadata(&log).map_or(0, |m| m.len());
        fleet.restart_with(i, Vec::new())?;
        Ok(Done {
            target: format!("{} restarted cold", fleet.members[i].spec.name),
            evidence: Some(Evidence {
                log,
                from,
                needle: "the schema registry is unreachable or failing",
            }),
        })
    }

    /// Cuts the lock connection of each relay of the shop's own databases (never another
    /// database on the same server, such as a test's).
    async fn terminate_relay_locks(&self) -> anyhow::Result<String> {
        let mut ours = Vec::new();
        for service in super::verify::CONSUMERS {
            let url = process::var(&format!("DATABASE_URL_{}", service.to_uppercase()))?;
            let options: sqlx::postgres::PgConnectOptions = url.parse()?;
            ours.push(options.get_database().unwrap_or_default().to_owned());
        }
        let mut pg: sqlx::PgConnection = sqlx::Connection::connect(&self.admin_url).await?;
        let held: Vec<(i32, String)> = sqlx::query_as(
            "select l.pid, d.datname::text from pg_locks l join pg_database d on d.oid = l.database
              where l.locktype = 'advisory' and l.granted and l.objsubid = 1
                and ((l.classid::bigint << 32) | l.objid::bigint) = $1
                and d.datname = any($2)",
        )
        .bind(choreo::relay::RELAY_LOCK)
        .bind(&ours)
        .fetch_all(&mut pg)
        .await?;
        if held.is_empty() {
            bail!("no relay holds its lock");
        }
        for (pid, _) in &held {
            sqlx::query("select pg_terminate_backend($1)")
                .bind(pid)
                .execute(&mut pg)
                .await?;
        }
        let dbs: Vec<&str> = held.iter().map(|(_, d)| d.as_str()).collect();
        Ok(format!("relay locks in {}", dbs.join(", ")))
    }

    async fn provider_faults(&self, faults: serde_json::Value) -> anyhow::Result<()> {
        let url = format!("{}/admin/faults", self.shop.provider);
        let request = self.shop.http.put(&url).json(&faults);
        let response = self.shop.as_operator(request).send().await?;
        if !response.status().is_success() {
            bail!("PUT {url}: {}", response.status());
        }
        Ok(())
    }

    async fn clear_provider_faults(&self) -> anyhow::Result<()> {
        let url = format!("{}/admin/faults", self.shop.provider);
        let request = self.shop.http.delete(&url);
        let response = self.shop.as_operator(request).send().await?;
        if !response.status().is_success() {
            bail!("DELETE {url}: {}", response.status());
        }
        Ok(())
    }

    /// Leaves nothing broken: the broker resumed, every stack part running, no provider fault,
    /// no service frozen.
    pub async fn restore(&self) {
        if let Some(pid) = process::pid_from_file("kafka") {
            let _ = process::signal(pid, "CONT");
        }
        for component in ["postgres", "kafka", "registry"] {
            if let Err(e) = stack(&["start", component]).await {
                println!("restoring {component}: {e:#}");
            }
        }
        let _ = self.clear_provider_faults().await;
        for member in &self.fleet.lock().await.members {
            let _ = process::signal(member.pid(), "CONT");
        }
    }
}

/// SIGSTOP the broker for `how_long`, then SIGCONT.
async fn pause_broker(how_long: Duration) -> anyhow::Result<()> {
    let pid = process::pid_from_file("kafka").context("kafka is not running")?;
    process::signal(pid, "STOP")?;
    tokio::time::sleep(how_long).await;
    process::signal(pid, "CONT")
}

/// Runs `scripts/stack ARGS`, its output kept out of the summary unless it fails.
async fn stack(args: &[&str]) -> anyhow::Result<()> {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let shown = args.join(" ");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("scripts/stack")
            .args(&args)
            .env("STACK_STOP_TIMEOUT", "20")
            .output()
    })
    .await??;
    if !output.status.success() {
        bail!(
            "scripts/stack {shown}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
