//! The shop's service processes under the harness's care, and the supervisor that keeps them
//! running. The harness takes over the five services `scripts/shop up` started: it stops each
//! by its pid file and starts it again as its own child, with the same environment, port and log
//! (`scripts/shop env PART`), writing the new pid to the same pid file, so `scripts/shop status`
//! and `down` keep working and the services outlive the harness. It adds replicas of inventory
//! and payment (same consumer groups, other ports), which it stops at the end. The provider
//! simulator stays as it is: its ledger is in its memory.
//!
//! Supervision is a tick: a process that exited is logged, counted (as injected when the
//! harness killed or stopped it, else as an exit of its own) and started again, at most once a
//! second; a process still running 35 s after its SIGTERM (its stop deadline and 5 s more) gets
//! SIGKILL (counted as hung).

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};

use crate::process::{self, Spec};

/// The services the harness runs, in start order.
pub const SERVICES: [&str; 5] = ["order", "inventory", "payment", "shipping", "gateway"];
/// How long a SIGTERM may take before the supervisor sends SIGKILL: a service's own stop
/// deadline and 5 s more (a process still there then is hung, a defect).
pub const TERM_GRACE: Duration = Duration::from_secs(choreo::service::STOP_DEADLINE.as_secs() + 5);

/// One process of a service.
pub struct Member {
    pub spec: Spec,
    child: Child,
    /// The signal the harness sent it last, and when.
    sent: Option<(&'static str, Instant)>,
    /// Extra environment for its next start only (the panic hook).
    next_env: Vec<(String, String)>,
    not_before: Instant,
    pub starts: u32,
}

impl Member {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Something that happened to a process, for the log and the summary.
#[derive(Debug, Clone)]
pub struct Happening {
    pub at: DateTime<Utc>,
    pub name: String,
    pub what: Lifecycle,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Exited after the harness killed or stopped it.
    InjectedExit,
    /// Exited on its own (a consumer that could not rejoin, a crash).
    OwnExit,
    /// Still running 35 s after SIGTERM (its stop deadline and 5 s more): killed.
    HungOnTerm,
    Started,
}

/// The processes and what happened to them.
pub struct Fleet {
    bin_dir: PathBuf,
    pub members: Vec<Member>,
    pub log: Vec<Happening>,
}

impl Fleet {
    /// Stops the services `scripts/shop up` started (by pid file) and starts them again as the
    /// harness's children, with `replicas` extra processes of each of `replicated` on ports
    /// from `first_port`; waits until every one is ready.
    pub async fn take_over(
        http: &reqwest::Client,
        bin_dir: PathBuf,
        replicated: &[&str],
        replicas: usize,
        first_port: u16,
    ) -> anyhow::Result<Self> {
        let mut specs = Vec::new();
        for service in SERVICES {
            specs.push(Spec::part(service)?);
        }
        let mut port = first_port;
        for service in replicated {
            for n in 2..2 + replicas {
                specs.push(Spec::replica(service, n, port, "chaos")?);
                port += 1;
            }
        }
        for service in SERVICES.iter().rev() {
            if let Some(pid) = process::pid_from_file(service) {
                println!("taking over {service}: stopping pid {pid}");
                stop(pid, TERM_GRACE).await?;
            }
        }
        let mut fleet = Self {
            bin_dir,
            members: Vec::new(),
            log: Vec::new(),
        };
        for spec in specs {
            let child = spec.spawn(&fleet.bin_dir, &[])?;
            if spec.detached {
                process::write_pid_file(&spec.name, child.id())?;
            }
            fleet.members.push(Member {
                spec,
                child,
                sent: None,
                next_env: Vec::new(),
                not_before: Instant::now(),
                starts: 1,
            });
        }
        for member in &mut fleet.members {
            let (spec, child) = (&member.spec, &mut member.child);
            process::wait_ready(
                http,
                &spec.name,
                &spec.ready_url(),
                Duration::from_secs(120),
                || Ok(child.try_wait()?.is_none()),
            )
            .await
            .with_context(|| format!("see {}", spec.log.display()))?;
        }
        Ok(fleet)
    }

    /// The members of `service`.
    pub fn of(&self, service: &str) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].spec.service == service)
            .collect()
    }

    /// The members that run consumers (every service but the gateway).
    pub fn consumers(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].spec.service != "gateway")
            .collect()
    }

    /// Sends `signal` to member `i`; a KILL or TERM makes its exit an injected one.
    pub fn signal(&mut self, i: usize, signal: &'static str) -> anyhow::Result<()> {
        let member = &mut self.members[i];
        process::signal(member.pid(), signal)?;
        if matches!(signal, "KILL" | "TERM") {
            member.sent = Some((signal, Instant::now()));
        }
        Ok(())
    }

    /// Stops member `i` with SIGTERM; its next start gets `env` in addition.
    pub fn restart_with(&mut self, i: usize, env: Vec<(String, String)>) -> anyhow::Result<()> {
        self.members[i].next_env = env;
        self.signal(i, "TERM")
    }

    /// One round of supervision: reap, restart, escalate.
    pub fn tick(&mut self) {
        let now = Instant::now();
        for i in 0..self.members.len() {
            let member = &mut self.members[i];
            let name = member.spec.name.clone();
            match member.child.try_wait() {
                Ok(None) => {
                    if let Some(("TERM", at)) = member.sent {
                        if now.duration_since(at) > TERM_GRACE {
                            let _ = process::signal(member.pid(), "KILL");
                            member.sent = Some(("KILL", now));
                            self.log.push(happening(
                                &name,
                                Lifecycle::HungOnTerm,
                                format!("still running {TERM_GRACE:?} after SIGTERM: SIGKILL"),
                            ));
                        }
                    }
                    continue;
                }
                Ok(Some(status)) if member.not_before <= now => {
                    let what = if member.sent.take().is_some() {
                        Lifecycle::InjectedExit
                    } else {
                        Lifecycle::OwnExit
                    };
                    self.log
                        .push(happening(&name, what, format!("exited: {status}")));
                }
                Ok(Some(_)) => continue,
                Err(e) => {
                    self.log
                        .push(happening(&name, Lifecycle::OwnExit, format!("wait: {e}")));
                }
            }
            let member = &mut self.members[i];
            let extra = std::mem::take(&mut member.next_env);
            match member.spec.spawn(&self.bin_dir, &extra) {
                Ok(child) => {
                    member.child = child;
                    member.starts += 1;
                    member.not_before = now + Duration::from_secs(1);
                    if member.spec.detached {
                        let _ = process::write_pid_file(&name, member.child.id());
                    }
                    let env: Vec<String> = extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    self.log.push(happening(
                        &name,
                        Lifecycle::Started,
                        format!("pid {} {}", member.child.id(), env.join(" ")),
                    ));
                }
                Err(e) => {
                    member.not_before = now + Duration::from_secs(1);
                    self.log.push(happening(
                        &name,
                        Lifecycle::OwnExit,
                        format!("could not start: {e:#}"),
                    ));
                }
            }
        }
    }

    /// Resumes every member (none may stay frozen), then stops the replicas (SIGTERM, SIGKILL
    /// after the grace); the services themselves stay running.
    pub async fn release(&mut self) -> anyhow::Result<()> {
        for member in &self.members {
            let _ = process::signal(member.pid(), "CONT");
        }
        for member in self.members.iter_mut().filter(|m| !m.spec.detached) {
            let _ = process::signal(member.child.id(), "TERM");
            let give_up = Instant::now() + TERM_GRACE;
            while member.child.try_wait()?.is_none() {
                if Instant::now() > give_up {
                    println!("{} hung on SIGTERM: SIGKILL", member.spec.name);
                    member.child.kill()?;
                    member.child.wait()?;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        self.members.retain(|m| m.spec.detached);
        Ok(())
    }
}

fn happening(name: &str, what: Lifecycle, detail: String) -> Happening {
    let h = Happening {
        at: Utc::now(),
        name: name.to_owned(),
        what,
        detail,
    };
    println!(
        "  {}  {:<12} {:?}: {}",
        h.at.format("%H:%M:%S%.3f"),
        h.name,
        h.what,
        h.detail
    );
    h
}

/// Stops a process that is not our child: SIGTERM, then SIGKILL after `grace`.
async fn stop(pid: u32, grace: Duration) -> anyhow::Result<()> {
    process::signal(pid, "CONT")?;
    process::signal(pid, "TERM")?;
    let give_up = Instant::now() + grace;
    while process::alive(pid) {
        if Instant::now() > give_up {
            process::signal(pid, "KILL")?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            if process::alive(pid) {
                bail!("pid {pid} survives SIGKILL");
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
