//! The run's figures: per fault kind how many were injected, how long until the shop served
//! again (the first order placed after the fault ended that was shipped, counted from the
//! fault's end; not measured when the next fault started first), and the saga latency (placed to the last step on the order's timeline) of
//! orders placed during a fault (or in the 10 s after it) and outside, as p50/p99.

use std::collections::BTreeMap;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::fleet::{Happening, Lifecycle};
use super::inject::Injection;
use super::schedule::Fault;
use crate::invariants::time;
use crate::mix::Kind;
use crate::scenario::{Placed, Settled};
use crate::stats::Latencies;

/// How long after a fault an order still counts as placed "during" it.
const AFTERMATH: chrono::Duration = chrono::Duration::seconds(10);

/// One settled order's times.
struct Timing {
    placed: DateTime<Utc>,
    /// Placed to the last step of its saga.
    latency: chrono::TimeDelta,
    shipped: Option<DateTime<Utc>>,
}

fn timing(order: &Value) -> Option<Timing> {
    let placed = time(&order["placed_at"]).ok()?;
    let steps = order["timeline"].as_array()?;
    let last = steps.iter().filter_map(|s| time(&s["at"]).ok()).max()?;
    let shipped = steps
        .iter()
        .find(|s| s["event_type"] == "ShipmentScheduled")
        .and_then(|s| time(&s["at"]).ok());
    Some(Timing {
        placed,
        latency: last - placed,
        shipped,
    })
}

/// Seconds with two decimals, or `-` for none (NaN: nothing was measured).
fn secs(value: f64) -> String {
    if value.is_nan() {
        "-".into()
    } else {
        format!("{value:.2}")
    }
}

fn p50_p99(values: Latencies) -> String {
    let n = values.len();
    let p50 = secs(values.quantile_secs(0.5));
    let p99 = secs(values.quantile_secs(0.99));
    format!("{p50:>6} / {p99:>6} {:>7}", format!("({n})"))
}

/// Prints the per-fault table, the latency split and the processes' lifecycle counts.
pub fn print(
    injections: &[Injection],
    placed: &[Placed],
    settled: &HashMap<String, Settled>,
    happenings: &[Happening],
) {
    // Orders that wait out their deadline by design (pending charges) say nothing of latency.
    let timings: Vec<Timing> = placed
        .iter()
        .filter(|p| p.plan.kind != Kind::Timeout)
        .filter_map(|p| settled.get(&p.order_id))
        .filter_map(|s| timing(&s.order))
        .collect();
    let during =
        |t: &Timing, i: &Injection| t.placed >= i.started && t.placed <= i.ended + AFTERMATH;
    let done: Vec<&Injection> = injections.iter().filter(|i| i.failed.is_none()).collect();

    let mut kinds: BTreeMap<Fault, Vec<&Injection>> = BTreeMap::new();
    for i in injections {
        kinds.entry(i.fault).or_default().push(i);
    }
    println!(
        "\n{:<16} {:>8} {:>6}  {:>27}  {:>30}  took effect",
        "fault", "injected", "failed", "recovery s (p50 / max, n)", "saga s during (p50 / p99, n)",
    );
    for (fault, all) in &kinds {
        let ok: Vec<&&Injection> = all.iter().filter(|i| i.failed.is_none()).collect();
        // Only until the next fault starts: a recovery that one hides is not measured.
        let recoveries: Latencies = ok
            .iter()
            .filter_map(|i| {
                let next = injections
                    .iter()
                    .map(|n| n.started)
                    .filter(|&at| at >= i.ended)
                    .min();
                timings
                    .iter()
                    .filter(|t| t.placed >= i.ended)
                    .filter_map(|t| t.shipped)
                    .filter(|&at| next.is_none_or(|next| at < next))
                    .min()
                    .map(|s| s - i.ended)
            })
            .collect();
        let recovery = format!(
            "{:>6} / {:>6} {:>4}",
            secs(recoveries.quantile_secs(0.5)),
            secs(recoveries.max_secs()),
            format!("({})", recoveries.len())
        );
        let latencies: Latencies = timings
            .iter()
            .filter(|t| ok.iter().any(|i| during(t, i)))
            .map(|t| t.latency)
            .collect();
        let watched: Vec<bool> = ok
            .iter()
            .filter_map(|i| i.evidence.as_ref().map(|e| e.seen()))
            .collect();
        let effect = if watched.is_empty() {
            String::new()
        } else {
            let seen = watched.iter().filter(|s| **s).count();
            format!("{seen} of {} seen in the log", watched.len())
        };
        println!(
            "{:<16} {:>8} {:>6}  {recovery:>27}  {:>30}  {effect}",
            fault.name(),
            ok.len(),
            all.len() - ok.len(),
            p50_p99(latencies)
        );
    }
    let (inside, outside): (Vec<&Timing>, Vec<&Timing>) = timings
        .iter()
        .partition(|t| done.iter().any(|i| during(t, i)));
    println!(
        "saga latency s (p50 / p99, orders): during faults {}, outside faults {}",
        p50_p99(inside.iter().map(|t| t.latency).collect()),
        p50_p99(outside.iter().map(|t| t.latency).collect())
    );
    for i in injections.iter().filter(|i| i.failed.is_some()) {
        println!(
            "not injected: {} at {}: {}",
            i.fault.name(),
            i.started.format("%H:%M:%S"),
            i.failed.as_deref().unwrap_or_default()
        );
    }
    let count = |what: Lifecycle| happenings.iter().filter(|h| h.what == what).count();
    println!(
        "processes: {} exits injected, {} exits of their own, {} hung on SIGTERM, {} (re)starts",
        count(Lifecycle::InjectedExit),
        count(Lifecycle::OwnExit),
        count(Lifecycle::HungOnTerm),
        count(Lifecycle::Started)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_print_as_seconds_with_their_count_and_a_dash_for_none() {
        let three: Latencies = [1500, 2000, 2500]
            .into_iter()
            .map(chrono::TimeDelta::milliseconds)
            .collect();
        assert_eq!(p50_p99(three), "  2.00 /   2.50     (3)");
        assert_eq!(p50_p99(Latencies::default()), "     - /      -     (0)");
    }
}
