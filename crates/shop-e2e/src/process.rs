//! The shop's service processes as the harnesses run them (`shop-scale`, `shop-chaos`): started
//! with the environment `scripts/shop env PART` prints (the one place that knows it), logging to
//! `.stack/logs/`, stopped and signalled by pid. Signals go through `kill(1)`: the workspace
//! forbids `unsafe`, and a harness sends a few dozen of them, not thousands.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The stack's state folder (`STACK_DIR`, else `.stack`).
pub fn stack_dir() -> PathBuf {
    std::env::var_os("STACK_DIR").map_or_else(|| PathBuf::from(".stack"), PathBuf::from)
}

/// A variable of the stack's env file, which the harnesses load.
pub fn var(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (scripts/stack up writes it)"))
}

/// The environment `scripts/shop` starts `part` with (`HTTP_ADDR`, `DATABASE_URL`, ...).
pub fn part_env(part: &str) -> anyhow::Result<Vec<(String, String)>> {
    let output = Command::new("scripts/shop")
        .args(["env", part])
        .stderr(Stdio::inherit())
        .output()
        .context("running scripts/shop env (run from the repository root)")?;
    if !output.status.success() {
        bail!("scripts/shop env {part}: {}", output.status);
    }
    Ok(String::from_utf8(output.stdout)?
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// How to start one process of a service.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The binary's name in `bin_dir` (`inventory`).
    pub service: String,
    /// The process's name in logs and pid files (`inventory`, `inventory-2`).
    pub name: String,
    pub port: u16,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    /// Its own process group, so that a Ctrl-C of the harness does not reach it (the shop's
    /// own parts, which outlive the harness); replicas share the harness's group.
    pub detached: bool,
}

impl Spec {
    /// A replica of `service` on `port`: the part's environment with another HTTP address.
    pub fn replica(service: &str, n: usize, port: u16, log_prefix: &str) -> anyhow::Result<Self> {
        let mut env = part_env(service)?;
        env.retain(|(k, _)| k != "HTTP_ADDR");
        env.push(("HTTP_ADDR".into(), format!("127.0.0.1:{port}")));
        let name = format!("{service}-{n}");
        Ok(Self {
            service: service.to_owned(),
            log: stack_dir()
                .join("logs")
                .join(format!("{log_prefix}-{name}.log")),
            name,
            port,
            env,
            detached: false,
        })
    }

    /// The shop's own part, as `scripts/shop up` starts it (same port, log and environment).
    pub fn part(service: &str) -> anyhow::Result<Self> {
        let env = part_env(service)?;
        let port = env
            .iter()
            .find(|(k, _)| k == "HTTP_ADDR")
            .and_then(|(_, v)| v.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .with_context(|| format!("no HTTP_ADDR port for {service}"))?;
        Ok(Self {
            service: service.to_owned(),
            name: service.to_owned(),
            port,
            env,
            log: stack_dir().join("logs").join(format!("{service}.log")),
            detached: true,
        })
    }

    pub fn ready_url(&self) -> String {
        format!("http://127.0.0.1:{}/readyz", self.port)
    }

    /// Starts the process, appending to its log; `extra` adds environment variables.
    pub fn spawn(&self, bin_dir: &Path, extra: &[(String, String)]) -> anyhow::Result<Child> {
        use std::io::Write as _;
        use std::os::unix::process::CommandExt as _;
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| self.log.display().to_string())?;
        writeln!(
            out,
            "\n=== {} starting at {} ===",
            self.name,
            chrono::Utc::now().to_rfc3339()
        )?;
        let bin = bin_dir.join(&self.service);
        let mut command = Command::new(&bin);
        command
            .envs(self.env.iter().cloned())
            .envs(extra.iter().cloned())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if self.detached {
            command.process_group(0);
        }
        command
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))
    }
}

/// Polls `url` until it answers 2xx; fails when `alive` says the process is gone or after
/// `limit`.
pub async fn wait_ready(
    http: &reqwest::Client,
    name: &str,
    url: &str,
    limit: Duration,
    mut alive: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let give_up = Instant::now() + limit;
    loop {
        if !alive()? {
            bail!("{name} exited during startup");
        }
        if ready(http, url).await {
            return Ok(());
        }
        if Instant::now() > give_up {
            bail!("{name} not ready after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `url` answers 2xx within 2 s.
pub async fn ready(http: &reqwest::Client, url: &str) -> bool {
    http.get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Sends `signal` (`TERM`, `KILL`, `STOP`, `CONT`) to `pid`.
pub fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

/// True while `pid` is a live process (not a zombie); for processes that are not our children.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
        !matches!(state, None | Some(None) | Some(Some('Z' | 'X')))
    })
}

/// The pid in `.stack/run/<name>.pid`, if that process is alive.
pub fn pid_from_file(name: &str) -> Option<u32> {
    let file = stack_dir().join("run").join(format!("{name}.pid"));
    let pid: u32 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// Records `pid` in `.stack/run/<name>.pid`, as `scripts/shop` does.
pub fn write_pid_file(name: &str, pid: u32) -> anyhow::Result<()> {
    let file = stack_dir().join("run").join(format!("{name}.pid"));
    std::fs::write(&file, format!("{pid}\n")).with_context(|| file.display().to_string())
}

/// The "partitions assigned" lines of a service log: (time, partitions held after, added).
pub fn assignments(log: &Path) -> Vec<(String, u64, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("partitions assigned"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            let f = &v["fields"];
            (
                v["timestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .skip(11)
                    .take(12)
                    .collect(),
                f["assigned"].as_u64().unwrap_or(0),
                f["added"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
