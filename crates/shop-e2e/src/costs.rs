//! What an order costs the machine, measured from outside the services: committed PostgreSQL
//! transactions per service database (`pg_stat_database`), the broker's requests by kind (its
//! JMX counters, through `scripts/stack kafka-requests`) and CPU seconds per process (`/proc`).
//! The load benchmark samples them before a phase and after its sagas drained, and divides the
//! difference by the orders placed: ratios that do not depend on how fast the machine is.
//! [`statements`] is the profile beside it: `pg_stat_statements`' busiest statements.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sqlx::{Connection, PgConnection};

/// One reading of every counter.
#[derive(Debug, Default, Clone)]
pub struct Sample {
    /// Committed transactions per database (`shop_order`, ...).
    pub commits: BTreeMap<String, f64>,
    /// Broker requests by API key (`Produce`, `Fetch`, `EndTxn`, ...).
    pub kafka: BTreeMap<String, f64>,
    /// CPU seconds per part of the system (a service, `postgresql`, `kafka`, `registry`).
    pub cpu: BTreeMap<String, f64>,
}

impl Sample {
    /// What each counter advanced from `before` to `self`.
    pub fn since(&self, before: &Sample) -> Sample {
        fn diff(
            after: &BTreeMap<String, f64>,
            before: &BTreeMap<String, f64>,
        ) -> BTreeMap<String, f64> {
            after
                .iter()
                .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
                .collect()
        }
        Sample {
            commits: diff(&self.commits, &before.commits),
            kafka: diff(&self.kafka, &before.kafka),
            cpu: diff(&self.cpu, &before.cpu),
        }
    }

    /// The lines that print this difference per order of `orders`.
    pub fn per_order(&self, orders: usize) -> Vec<String> {
        let n = orders.max(1) as f64;
        let list = |map: &BTreeMap<String, f64>, digits: usize| {
            map.iter()
                .filter(|(_, v)| **v > 0.0)
                .map(|(k, v)| format!("{} {:.*}", k.trim_start_matches("shop_"), digits, v / n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let total =
            |map: &BTreeMap<String, f64>| map.values().filter(|v| **v > 0.0).sum::<f64>() / n;
        let kafka_of = |names: &[&str]| {
            names
                .iter()
                .map(|k| self.kafka.get(*k).copied().unwrap_or(0.0))
                .sum::<f64>()
                / n
        };
        vec![
            format!(
                "    per order: pg commits {:.1} ({}); kafka txns {:.2}, produce requests {:.2}, all requests {:.1}; cpu {:.1} ms",
                total(&self.commits),
                list(&self.commits, 1),
                kafka_of(&["EndTxn"]),
                kafka_of(&["Produce"]),
                total(&self.kafka),
                1000.0 * total(&self.cpu),
            ),
            format!("    kafka requests per order: {}", list(&self.kafka, 2)),
            format!(
                "    cpu ms per order: {}",
                self.cpu
                    .iter()
                    .filter(|(_, v)| **v > 0.0)
                    .map(|(k, v)| format!("{k} {:.2}", 1000.0 * v / n))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ]
    }
}

/// Reads the counters. `admin_url` is a superuser URL of the stack's PostgreSQL; `stack` the
/// `scripts/stack` to ask for the broker's counters (left out, with a note, when it fails).
pub async fn sample(admin_url: &str, stack: &PathBuf) -> anyhow::Result<Sample> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select datname::text, xact_commit from pg_stat_database where datname like 'shop\\_%'",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    let commits = rows.into_iter().map(|(d, c)| (d, c as f64)).collect();
    Ok(Sample {
        commits,
        kafka: kafka_requests(stack).await,
        cpu: cpu_by_part(),
    })
}

async fn kafka_requests(stack: &PathBuf) -> BTreeMap<String, f64> {
    let output = tokio::process::Command::new(stack)
        .arg("kafka-requests")
        .output()
        .await;
    match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let (name, count) = line.split_once(' ')?;
                Some((name.to_owned(), count.trim().parse().ok()?))
            })
            .collect(),
        Ok(out) => {
            eprintln!(
                "kafka request counters unavailable: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            BTreeMap::new()
        }
        Err(error) => {
            eprintln!("kafka request counters unavailable: {error}");
            BTreeMap::new()
        }
    }
}

/// Starts a statement profile: clears `pg_stat_statements` (false when the extension is
/// missing: the stack loads it with `shared_preload_libraries`).
pub async fn reset_statements(admin_url: &str) -> anyhow::Result<bool> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let ok = sqlx::query("create extension if not exists pg_stat_statements")
        .execute(&mut conn)
        .await
        .is_ok()
        && sqlx::query("select pg_stat_statements_reset()")
            .execute(&mut conn)
            .await
            .is_ok();
    conn.close().await?;
    Ok(ok)
}

/// The `limit` statements that took the most time since [`reset_statements`], one line each:
/// calls per order, mean and total milliseconds, database and text.
pub async fn statements(admin_url: &str, orders: usize, limit: i64) -> anyhow::Result<Vec<String>> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let rows: Vec<(String, i64, f64, f64, String)> = sqlx::query_as(
        "select d.datname::text, s.calls, s.mean_exec_time, s.total_exec_time,
                regexp_replace(s.query, '\\s+', ' ', 'g')
         from pg_stat_statements s join pg_database d on d.oid = s.dbid
         where d.datname like 'shop\\_%'
         order by s.total_exec_time desc limit $1",
    )
    .bind(limit)
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    let n = orders.max(1) as f64;
    Ok(rows
        .into_iter()
        .map(|(db, calls, mean, total, query)| {
            let query: String = query.chars().take(110).collect();
            format!(
                "    {:>6.2}/order {:>7.3} ms {:>8.0} ms  {:<10} {query}",
                calls as f64 / n,
                mean,
                total,
                db.trim_start_matches("shop_")
            )
        })
        .collect())
}

/// Row counts of the tables that grow with traffic, per service database: the outbox, the inbox
/// and the gateway's idempotency keys.
pub async fn table_sizes(admin_url: &str) -> anyhow::Result<Vec<String>> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let dbs: Vec<String> = sqlx::query_scalar(
        "select datname::text from pg_database where datname like 'shop\\_%' order by 1",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    let mut lines = Vec::new();
    for db in dbs {
        let url = choreo::db::with_database(admin_url, &db);
        let mut conn = PgConnection::connect(&url).await?;
        let tables: Vec<String> = sqlx::query_scalar(
            "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where c.relkind = 'r' and n.nspname = 'public'
               and c.relname in ('choreo_outbox', 'choreo_inbox', 'idempotency_keys')
             order by 1",
        )
        .fetch_all(&mut conn)
        .await?;
        let mut counts = Vec::new();
        for table in tables {
            let rows: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
                .fetch_one(&mut conn)
                .await?;
            counts.push(format!("{table} {rows}"));
        }
        conn.close().await?;
        lines.push(format!(
            "    {:<10} {}",
            db.trim_start_matches("shop_"),
            counts.join(", ")
        ));
    }
    Ok(lines)
}

/// CPU seconds each part of the system has used so far (all its threads; PostgreSQL summed over
/// its backends), from /proc.
pub fn cpu_by_part() -> BTreeMap<String, f64> {
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

/// Samples what the shop's PostgreSQL backends are waiting on, every 20 ms from
/// [`WaitSampler::start`] to [`WaitSampler::finish`]: a count per
/// `wait_event_type:wait_event` (`CPU` when running, `Lock:transactionid` or `Lock:tuple` when
/// queueing on a row lock, `Lock:object` for the lock NOTIFY takes at commit, `IO:WALSync`, ...),
/// over the backends in a transaction or a statement.
pub struct WaitSampler {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<BTreeMap<String, u64>>>,
}

impl WaitSampler {
    pub fn start(admin_url: String) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let mut conn = PgConnection::connect(&admin_url).await?;
            let mut waits = BTreeMap::new();
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
            while !token.is_cancelled() {
                tick.tick().await;
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "select coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*)
                     from pg_stat_activity
                     where datname like 'shop\\_%' and pid <> pg_backend_pid()
                       and state in ('active', 'idle in transaction')
                     group by 1",
                )
                .fetch_all(&mut conn)
                .await?;
                for (event, count) in rows {
                    *waits.entry(event).or_insert(0) += count as u64;
                }
            }
            Ok(waits)
        });
        Self { stop, task }
    }

    /// Stops sampling; the counts per wait event.
    pub async fn finish(self) -> anyhow::Result<BTreeMap<String, u64>> {
        self.stop.cancel();
        self.task.await?
    }
}

/// The samples of a [`WaitSampler`] as one line, largest first.
pub fn waits_line(waits: &BTreeMap<String, u64>) -> String {
    let total: u64 = waits.values().sum();
    let mut by_count: Vec<_> = waits.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1));
    let parts: Vec<String> = by_count
        .iter()
        .take(8)
        .map(|(event, count)| {
            format!(
                "{event} {:.0}%",
                100.0 * **count as f64 / total.max(1) as f64
            )
        })
        .collect();
    format!("    backends busy ({total} samples): {}", parts.join(", "))
}
