//! `choreo dlq list`: dead letters counted by dead-letter topic, source topic, group and reason,
//! as a table or JSON lines. Reads every dead letter of the topics (values are not kept) and the
//! redrive ledger.

use std::ops::ControlFlow;
use std::time::Duration;

use super::ledger;
use super::select::{address_of, Group, Summary};
use super::ListArgs;
use crate::failure::Failure;
use crate::read::{Selection, Start, Stop};

pub async fn run(
    kafka: &choreo::KafkaConfig,
    timeout: Duration,
    args: ListArgs,
) -> Result<(), Failure> {
    let (_admin, existing) = super::connect(kafka, timeout).await?;
    let topics: Vec<String> = if args.topics.is_empty() {
        existing
            .iter()
            .filter(|t| t.ends_with(".dlq"))
            .cloned()
            .collect()
    } else {
        for topic in &args.topics {
            super::check_dlq_topic(topic, &existing)?;
        }
        args.topics.clone()
    };
    if topics.is_empty() {
        if !args.json {
            println!("No dead-letter topics: no topic name ends in .dlq.");
        }
        return Ok(());
    }
    let ledger = ledger::read(kafka, timeout, &existing, &topics).await?;
    let selection = Selection {
        topics: topics.clone(),
        partitions: None,
        start: Start::Beginning,
        stop: Stop::End,
    };
    let summary = super::scan(
        kafka,
        selection,
        timeout,
        Summary::default(),
        |summary, record| {
            summary.add(&record, ledger.contains(&address_of(&record)));
            ControlFlow::Continue(())
        },
    )
    .await?;
    let groups = summary.groups();
    if args.json {
        for group in &groups {
            let line = serde_json::to_string(group).map_err(|e| Failure::Error(e.into()))?;
            println!("{line}");
        }
    } else {
        print!("{}", table(&groups, topics.len()));
    }
    Ok(())
}

/// The groups as an aligned table with a closing total.
fn table(groups: &[Group], topics: usize) -> String {
    if groups.is_empty() {
        return format!("No dead letters in {topics} dead-letter topic(s).\n");
    }
    let none = || "-".to_owned();
    let mut rows = vec![[
        "DLQ TOPIC".to_owned(),
        "SOURCE TOPIC".to_owned(),
        "GROUP".to_owned(),
        "REASON".to_owned(),
        "COUNT".to_owned(),
        "REDRIVEN".to_owned(),
        "FIRST FAILED".to_owned(),
        "LAST FAILED".to_owned(),
    ]];
    rows.extend(groups.iter().map(|g| {
        [
            g.dlq_topic.clone(),
            g.source_topic.clone(),
            g.group.clone(),
            g.reason.clone(),
            g.count.to_string(),
            g.redriven.to_string(),
            g.first_failed_at.clone().unwrap_or_else(none),
            g.last_failed_at.clone().unwrap_or_else(none),
        ]
    }));
    let mut widths = [0usize; 8];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    let letters: u64 = groups.iter().map(|g| g.count).sum();
    let redriven: u64 = groups.iter().map(|g| g.redriven).sum();
    out.push_str(&format!(
        "{letters} dead letter(s) in {} group(s) across {topics} dead-letter topic(s); {redriven} \
         redriven.\n",
        groups.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_its_columns_and_totals_them() {
        let group = |reason: &str, count, redriven| Group {
            dlq_topic: "t.g.dlq".into(),
            source_topic: "t".into(),
            group: "g".into(),
            reason: reason.into(),
            count,
            redriven,
            first_failed_at: Some("2024-05-01T10:00:00.000Z".into()),
            last_failed_at: None,
        };
        let text = table(
            &[group("not_wire_format", 1, 0), group("rejected", 2, 2)],
            1,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("DLQ TOPIC  SOURCE TOPIC  GROUP  REASON           COUNT"));
        assert!(lines[2].contains("rejected         2      2"), "{text}");
        assert!(lines[1].ends_with(" -"), "no last failure: {text}");
        assert_eq!(
            lines[3],
            "3 dead letter(s) in 2 group(s) across 1 dead-letter topic(s); 2 redriven."
        );
        assert_eq!(
            table(&[], 2),
            "No dead letters in 2 dead-letter topic(s).\n"
        );
    }
}
