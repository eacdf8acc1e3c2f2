//! `choreo trace`: every event of one saga run (an order, say) across its topics, in causal and
//! time order, with a verdict by the rules of the saga file the system declares (`--saga`,
//! default `sagas/`): ended (which end, why, the compensations seen and missing) or stuck
//! waiting for a step. The topics are those of `topics/*.yaml` that carry the saga's events,
//! or `--topic`.
//!
//! This module reads and prints; the ordering, the choice of topics and saga and the verdict
//! are pure, in [`saga`] (the rules themselves are evaluated by [`choreo::saga`]).

pub mod saga;

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::{json, Value as Json};

use crate::cluster::ClusterArgs;
use crate::decode;
use crate::failure::Failure;
use crate::inspect::{format_ms, parse_time};
use crate::read::{self, Record, Selection, Start, Stop};
use saga::{Step, Verdict};

const HELP: &str = "\
Examples:
  choreo trace 0190f1c2-7d7e-7c3a-9f1e-2b8f6c0a1d11
  choreo trace 0190f1c2-... --since 2025-01-31T12:00:00Z --json
  choreo trace order-1 --saga sagas/order.yaml --topic my.orders --topic my.payments

Reads the saga file(s) (--saga: a file, or every *.yaml of a folder) and the topics of
topics/*.yaml that carry an event the saga names (or --topic) up to their current ends, keeps
the records whose key is the given id (only the key's partition when every topic has the same
partition count), and prints one line per event: time, time since the previous step, producer,
event type, topic/partition@offset and the value's fields. Events follow their causes
(causation_id), then time (occurred_at). The verdict, by the saga's rules: the end reached
(e.g. completed, or cancelled (reason) with the compensations seen and missing), or stuck since
the last event waiting for the next step. With several sagas, the one that names the events
seen judges. Then the causal chain: complete when every event after the first names an event
of the run as its cause, else each break; and the OpenTelemetry trace(s) the events were
written in (their traceparent), with a link when --trace-ui (or JAEGER_UI) gives a Jaeger UI.
Exit 1 when no event has that key.";

/// Arguments of `choreo trace`.
#[derive(Debug, clap::Args)]
#[command(after_help = HELP)]
pub struct TraceArgs {
    /// The saga's id (the events' key), e.g. an order id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The saga file, or a folder of them, whose rules give the verdict.
    #[arg(long, value_name = "PATH", default_value = "sagas")]
    pub saga: PathBuf,
    /// The topic specs; the topics that carry the saga's events are read.
    #[arg(long, value_name = "DIR", default_value = "topics")]
    pub topics_dir: PathBuf,
    /// Read these topics instead of those of the topic specs; repeatable.
    #[arg(long = "topic", value_name = "TOPIC")]
    pub topics: Vec<String>,
    /// Read only records written at or after this time (RFC 3339); default: from the beginning.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Print the steps and the verdict as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// The schema registry's Confluent API base URL.
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    pub registry: Option<String>,
    /// A Jaeger UI (e.g. http://127.0.0.1:16686): print a link to the run's trace.
    #[arg(long, value_name = "URL", env = "JAEGER_UI")]
    pub trace_ui: Option<String>,
}

pub async fn run(cluster: &ClusterArgs, args: TraceArgs) -> Result<(), Failure> {
    let kafka = cluster.kafka()?;
    let timeout = std::time::Duration::from_secs(cluster.timeout);
    let sagas = choreo::saga::load(&args.saga).map_err(|e| Failure::BadInput(e.to_string()))?;
    let topics: Vec<String> = if args.topics.is_empty() {
        let specs = crate::topics::load_dir(&args.topics_dir)
            .map_err(|e| Failure::BadInput(format!("{e} (or name the topics with --topic)")))?;
        let topics = saga::topics_for(&sagas, &specs);
        if topics.is_empty() {
            return Err(Failure::BadInput(format!(
                "no topic in {} carries an event of the saga(s) in {}",
                args.topics_dir.display(),
                args.saga.display()
            )));
        }
        topics
    } else {
        args.topics.clone()
    };
    let start = match &args.since {
        Some(time) => Start::Time(parse_time("--since", time)?),
        None => Start::Beginning,
    };
    let codec = decode::codec(args.registry.as_deref())?;
    let counts = read::partition_counts(&kafka, &topics, timeout)?;
    let partitions = match counts.first() {
        Some(&n) if counts.iter().all(|&c| c == n) => {
            let n = i32::try_from(n).map_err(|e| Failure::Error(e.into()))?;
            Some(vec![choreo::kafka::partition_for_key(
                args.id.as_bytes(),
                n,
            )])
        }
        _ => None,
    };
    let selection = Selection {
        topics: topics.clone(),
        partitions: partitions.clone(),
        start,
        stop: Stop::End,
    };
    let mut records = read::stream(&kafka, selection, timeout).await?;
    let mut steps = Vec::new();
    while let Some(record) = records.recv().await {
        let record = record?;
        if record.key_str() == Some(args.id.as_str()) {
            steps.push(step(&codec, &record).await?);
        }
    }
    if steps.is_empty() {
        let place = match &partitions {
            Some(p) => format!(" (partition {})", p[0]),
            None => String::new(),
        };
        return Err(Failure::Error(anyhow::anyhow!(
            "no event has the key `{}` on {}{place}",
            args.id,
            topics.join(", ")
        )));
    }
    let steps = saga::causal_order(steps);
    let rules = saga::choose(&sagas, &steps).map_err(|why| {
        Failure::BadInput(format!(
            "{why} in {}; name one file with --saga",
            args.saga.display()
        ))
    })?;
    let verdict = saga::verdict(rules, &steps);
    let ui = args.trace_ui.as_deref();
    if args.json {
        println!("{}", to_json(&rules.name, &args.id, &steps, &verdict, ui));
    } else {
        print!("{}", to_text(&rules.name, &args.id, &steps, &verdict, ui));
    }
    Ok(())
}

/// A record as a step: the envelope's headers and the decoded value (null when it does not
/// decode; only an unreachable registry fails the trace).
async fn step(codec: &choreo::avro::Codec, record: &Record) -> Result<Step, Failure> {
    use choreo::envelope::{
        CAUSATION_ID, EVENT_ID, EVENT_TYPE, OCCURRED_AT, PRODUCER, TRACEPARENT,
    };
    let (name, value) = match &record.value {
        None => (None, Json::Null),
        Some(bytes) => match decode::value_json(codec, bytes).await {
            Ok((name, value)) => (Some(name), value),
            Err(e) if e.is_retryable() => return Err(Failure::Error(e.into())),
            Err(e) => (None, json!({ "value_error": e.to_string() })),
        },
    };
    let occurred_at_ms = record
        .header(OCCURRED_AT)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
        .or(record.timestamp_ms);
    Ok(Step {
        event_id: record.header(EVENT_ID).map(str::to_owned),
        causation_id: record.header(CAUSATION_ID).map(str::to_owned),
        event_type: record
            .header(EVENT_TYPE)
            .map(str::to_owned)
            .or(name)
            .unwrap_or_else(|| "(unknown)".into()),
        producer: record.header(PRODUCER).map(str::to_owned),
        trace_id: record.header(TRACEPARENT).and_then(saga::trace_id_of),
        occurred_at_ms,
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        value,
    })
}

/// The time since the previous step, signed (a step may follow its cause but carry an earlier
/// clock).
fn delta_ms(previous: Option<&Step>, step: &Step) -> Option<i64> {
    Some(step.occurred_at_ms? - previous?.occurred_at_ms?)
}

/// The value's fields worth a glance: scalars other than the saga's id (a field that holds the
/// key) and the `*_at` times, arrays as their length.
fn fields(value: &Json, id: &str) -> String {
    let Some(object) = value.as_object() else {
        return String::new();
    };
    let mut out = Vec::new();
    for (name, field) in object {
        if field.as_str() == Some(id) || name.ends_with("_at") {
            continue;
        }
        match field {
            Json::Null => {}
            Json::String(s) => out.push(format!("{name}={s}")),
            Json::Array(items) => out.push(format!("{name}=[{} item(s)]", items.len())),
            Json::Object(_) => out.push(format!("{name}={field}")),
            other => out.push(format!("{name}={other}")),
        }
    }
    out.join(" ")
}

/// A link to `trace` in the Jaeger UI at `ui`.
fn trace_link(ui: &str, trace: &str) -> String {
    format!("{}/trace/{trace}", ui.trim_end_matches('/'))
}

fn to_text(saga: &str, id: &str, steps: &[Step], verdict: &Verdict, ui: Option<&str>) -> String {
    let mut out = format!("{saga} {id}: {} event(s)\n", steps.len());
    let mut previous = None;
    for step in steps {
        let time = step
            .occurred_at_ms
            .map_or_else(|| "?".to_owned(), format_ms);
        let delta = match delta_ms(previous, step) {
            Some(ms) => format!("{:+.3}s", ms as f64 / 1000.0),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{time}  {delta:>9}  {:<10} {:<18} {}/{}@{}  {}",
            step.producer.as_deref().unwrap_or("?"),
            step.short_type(),
            step.topic,
            step.partition,
            step.offset,
            fields(&step.value, id)
        );
        previous = Some(step);
    }
    let _ = writeln!(out, "verdict: {verdict}");
    let gaps = saga::chain_gaps(steps);
    if gaps.is_empty() {
        let _ = writeln!(out, "causal chain: complete");
    } else {
        let _ = writeln!(out, "causal chain: {} break(s)", gaps.len());
        for gap in &gaps {
            let _ = match gap {
                saga::Gap::NoCause { event_id } => writeln!(
                    out,
                    "  event {} names no cause",
                    event_id.as_deref().unwrap_or("?")
                ),
                saga::Gap::CauseNotSeen {
                    event_id,
                    causation_id,
                } => writeln!(
                    out,
                    "  event {} names cause {causation_id}, not an event of this run",
                    event_id.as_deref().unwrap_or("?")
                ),
            };
        }
    }
    let traces = saga::traces(steps);
    let untraced = steps.len() - traces.iter().map(|(_, n)| n).sum::<usize>();
    for (trace, n) in &traces {
        let link = ui
            .map(|ui| format!("  {}", trace_link(ui, trace)))
            .unwrap_or_default();
        let _ = writeln!(out, "trace {trace}: {n} event(s){link}");
    }
    if untraced > 0 {
        let _ = writeln!(out, "{untraced} event(s) carry no traceparent");
    }
    out
}

fn to_json(saga: &str, id: &str, steps: &[Step], verdict: &Verdict, ui: Option<&str>) -> Json {
    let mut previous = None;
    let gaps = saga::chain_gaps(steps);
    let traces = saga::traces(steps);
    let steps: Vec<Json> = steps
        .iter()
        .map(|step| {
            let mut object = serde_json::to_value(step).expect("steps are plain data");
            object["occurred_at"] = step.occurred_at_ms.map(format_ms).into();
            object["delta_ms"] = delta_ms(previous, step).into();
            previous = Some(step);
            object
        })
        .collect();
    json!({
        "saga": saga,
        "id": id,
        "steps": steps,
        "verdict": verdict,
        "summary": verdict.to_string(),
        "chain_gaps": gaps,
        "traces": traces
            .into_iter()
            .map(|(trace, events)| json!({
                "trace_id": trace,
                "events": events,
                "link": ui.map(|ui| trace_link(ui, &trace)),
            }))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_shown_leave_out_the_saga_id_and_times() {
        let value = json!({
            "order_id": "o-1",
            "currency": "EUR",
            "total_minor": 1200,
            "lines": [{}, {}],
            "placed_at": 1,
            "detail": null,
        });
        assert_eq!(
            fields(&value, "o-1"),
            "currency=EUR lines=[2 item(s)] total_minor=1200"
        );
    }
}
