//! `choreo lag`: lag per consumer group and partition, and outbox backlog per service database.
//!
//! [`groups`] reads Kafka, [`outbox`] the databases; this module takes the flags and prints a
//! table or JSON.

pub mod groups;
pub mod outbox;

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

use crate::cluster::ClusterArgs;
use crate::failure::Failure;
use groups::GroupLag;
use outbox::{Backlog, Database};

const HELP: &str = "\
Examples:
  choreo lag                                     every group, every DATABASE_URL_<NAME> database
  choreo lag --group inventory --group payment
  choreo lag --database order=postgres://shop:shop@127.0.0.1:5432/shop_order --json

Per group: the committed offset, end offset and lag of each partition it committed, and its
total. Lag is in records: a transaction's commit marker takes an offset, so an idle partition is
one offset behind with nothing to read; lags of up to 1000 offsets are counted by reading them,
larger ones are offset differences. The CLI's own readers (groups named choreo-cli.*) commit nothing and are skipped. Per
database: the events waiting in choreo_outbox and the age of the oldest; a database without
that table or one that does not answer is reported as such, and the others still are.

Parked rows: an outbox row the relay can never publish (its topic does not exist, its value is
larger than Kafka accepts) is moved to choreo_outbox_parked, and the later rows of its key wait
behind it (held) while other keys flow. Each is listed with its reason. Once the cause is fixed,
un-park the key: its rows go back under their ids, ahead of the held ones:

  with moved as (delete from choreo_outbox_parked where topic = 'T' and key = 'K'
                 returning id, topic, key, value, headers, created_at)
  insert into choreo_outbox (id, topic, key, value, headers, created_at)
  overriding system value select * from moved;

or give one row up: delete from choreo_outbox_parked where id = N;";

/// Arguments of `choreo lag`.
#[derive(Debug, clap::Args)]
#[command(after_help = HELP)]
pub struct LagArgs {
    /// Only this consumer group; repeatable (default: every group).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// A service database as name=URL; repeatable (default: every DATABASE_URL_<NAME> variable).
    #[arg(long = "database", value_name = "NAME=URL", value_parser = outbox::parse_database)]
    pub databases: Vec<Database>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cluster: &ClusterArgs, args: LagArgs) -> Result<(), Failure> {
    let kafka = cluster.kafka()?;
    let timeout = Duration::from_secs(cluster.timeout);
    let wanted = args.groups.clone();
    let groups = tokio::task::spawn_blocking(move || groups::lag(&kafka, &wanted, timeout))
        .await
        .map_err(|e| Failure::Error(e.into()))??;
    let databases = if args.databases.is_empty() {
        outbox::from_env(std::env::vars())
    } else {
        args.databases
    };
    let backlogs = futures_join(&databases, timeout).await;
    if args.json {
        let outboxes: Vec<_> = databases
            .iter()
            .zip(&backlogs)
            .map(|(db, backlog)| {
                let mut entry = serde_json::to_value(backlog).expect("plain data");
                entry["database"] = db.name.clone().into();
                entry
            })
            .collect();
        println!("{}", json!({ "groups": groups, "outboxes": outboxes }));
    } else {
        print!("{}", render(&groups, &databases, &backlogs));
    }
    Ok(())
}

/// Every database's backlog, asked at once.
async fn futures_join(databases: &[Database], timeout: Duration) -> Vec<Backlog> {
    let tasks: Vec<_> = databases
        .iter()
        .cloned()
        .map(|db| tokio::spawn(async move { outbox::backlog(&db, timeout).await }))
        .collect();
    let mut backlogs = Vec::with_capacity(tasks.len());
    for task in tasks {
        backlogs.push(task.await.unwrap_or_else(|e| Backlog::Unreachable {
            error: e.to_string(),
        }));
    }
    backlogs
}

/// The tables: one per group, then the outboxes.
fn render(groups: &[GroupLag], databases: &[Database], backlogs: &[Backlog]) -> String {
    let mut out = String::new();
    if groups.is_empty() {
        out.push_str("no consumer groups\n");
    }
    for group in groups {
        let _ = writeln!(
            out,
            "group {} ({}, {} member(s)): total lag {}",
            group.group, group.state, group.members, group.total_lag
        );
        if group.partitions.is_empty() {
            out.push_str("  no committed offsets\n");
            continue;
        }
        let rows: Vec<[String; 5]> = group
            .partitions
            .iter()
            .map(|p| {
                [
                    p.topic.clone(),
                    p.partition.to_string(),
                    p.committed.to_string(),
                    p.end.to_string(),
                    p.lag.to_string(),
                ]
            })
            .collect();
        table(
            &mut out,
            ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG"],
            &rows,
        );
        for stuck in group.partitions.iter().filter(|p| !p.note.is_empty()) {
            let _ = writeln!(
                out,
                "  STUCK {}/{} at offset {}: {}",
                stuck.topic, stuck.partition, stuck.committed, stuck.note
            );
        }
    }
    out.push('\n');
    if databases.is_empty() {
        out.push_str(
            "no service databases (pass --database name=URL or set DATABASE_URL_<NAME>)\n",
        );
        return out;
    }
    out.push_str("outboxes\n");
    let rows: Vec<[String; 2]> = databases
        .iter()
        .zip(backlogs)
        .map(|(db, backlog)| [db.name.clone(), backlog.to_string()])
        .collect();
    table(&mut out, ["DATABASE", "BACKLOG"], &rows);
    let parked: Vec<[String; 5]> = databases
        .iter()
        .zip(backlogs)
        .flat_map(|(db, backlog)| {
            match backlog {
                Backlog::Ok { parked_rows, .. } => parked_rows.as_slice(),
                _ => &[],
            }
            .iter()
            .map(|row| {
                [
                    db.name.clone(),
                    row.id.to_string(),
                    row.topic.clone(),
                    row.key.clone(),
                    row.error.clone(),
                ]
            })
        })
        .collect();
    if !parked.is_empty() {
        out.push_str("\nparked outbox rows (never publishable; later rows of their key wait; see --help to un-park)\n");
        table(
            &mut out,
            ["DATABASE", "ID", "TOPIC", "KEY", "ERROR"],
            &parked,
        );
    }
    out
}

/// Rows under headers, columns padded to their widest cell, indented by two spaces.
fn table<const N: usize>(out: &mut String, headers: [&str; N], rows: &[[String; N]]) {
    let mut widths = headers.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "  {}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use groups::PartitionLag;

    #[test]
    fn the_table_shows_each_partition_and_the_group_total() {
        let groups = vec![GroupLag {
            group: "inventory".into(),
            state: "Stable".into(),
            members: 1,
            partitions: vec![PartitionLag {
                topic: "shop.orders.v1".into(),
                partition: 0,
                committed: 7,
                end: 10,
                lag: 3,
                note: String::new(),
            }],
            total_lag: 3,
        }];
        let databases = vec![Database {
            name: "gateway".into(),
            url: String::new(),
        }];
        let text = render(&groups, &databases, &[Backlog::NoOutbox]);
        assert!(
            text.contains("group inventory (Stable, 1 member(s)): total lag 3"),
            "{text}"
        );
        assert!(
            text.contains("  shop.orders.v1  0          7          10   3"),
            "{text}"
        );
        assert!(text.contains("gateway   no choreo_outbox table"), "{text}");
    }

    #[test]
    fn a_stuck_partition_shows_its_note() {
        let stuck = PartitionLag {
            topic: "shop.orders.v1".into(),
            partition: 4,
            committed: 120,
            end: 180,
            lag: 60,
            note: "stuck since 2026-12-04T16:00:00+00:00: database: lock timeout".into(),
        };
        let groups = vec![GroupLag {
            group: "inventory".into(),
            state: "Stable".into(),
            members: 1,
            partitions: vec![stuck],
            total_lag: 60,
        }];
        let text = render(&groups, &[], &[]);
        assert!(
            text.contains("  STUCK shop.orders.v1/4 at offset 120: stuck since 2026-12-04T16:00:00+00:00: database: lock timeout"),
            "{text}"
        );
    }

    #[test]
    fn parked_rows_are_counted_and_listed_with_their_reason() {
        let databases = vec![Database {
            name: "order".into(),
            url: String::new(),
        }];
        let parked = choreo::outbox::Parked {
            id: 41,
            topic: "shop.orders.v1".into(),
            key: "o-1".into(),
            error: "Message production error: MessageSizeTooLarge".into(),
            created_at: chrono::Utc::now(),
            parked_at: chrono::Utc::now(),
        };
        let backlog = Backlog::Ok {
            backlog: 3,
            oldest_age_seconds: 1.0,
            parked: 1,
            held: 2,
            parked_rows: vec![parked],
        };
        let text = render(&[], &databases, &[backlog]);
        assert!(
            text.contains("3 event(s), oldest 1.0s; 1 PARKED, 2 held behind them"),
            "{text}"
        );
        assert!(
            text.contains(
                "order     41  shop.orders.v1  o-1  Message production error: MessageSizeTooLarge"
            ),
            "{text}"
        );
    }
}
