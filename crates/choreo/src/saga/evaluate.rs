//! How far one run of a saga got, from the events seen of it: pure, no I/O. The caller reads
//! the events (from Kafka, from a test's records) and hands them over as [`Observed`].
//!
//! The rules are those of the file: a run has ended at the first end whose events were all
//! seen, and then owes each compensation triggered by what it saw (in any order: an effect
//! that comes after the end is owed one too); otherwise it waits at the last step that
//! something it saw triggered and that no outcome answered yet.

use super::{Compensation, End, Saga};

/// One event of a run, as the caller saw it.
pub trait Observed {
    /// The event's record name, full (`acme.jobs.JobStarted`) or short (`JobStarted`).
    fn event(&self) -> &str;
    /// A text field of the event's value (an enum symbol, a string), if known.
    fn field(&self, _name: &str) -> Option<&str> {
        None
    }
    /// When it happened, in milliseconds since the epoch, if known.
    fn at_ms(&self) -> Option<i64> {
        None
    }
}

impl Observed for str {
    fn event(&self) -> &str {
        self
    }
}

impl<T: Observed + ?Sized> Observed for &T {
    fn event(&self) -> &str {
        (**self).event()
    }
    fn field(&self, name: &str) -> Option<&str> {
        (**self).field(name)
    }
    fn at_ms(&self) -> Option<i64> {
        (**self).at_ms()
    }
}

impl Observed for String {
    fn event(&self) -> &str {
        self
    }
}

/// The short name of a record name: the part after its last dot.
pub fn short_name(record: &str) -> &str {
    record.rsplit('.').next().unwrap_or(record)
}

/// How a run stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    Ended(Ending),
    Waiting(Waiting),
}

/// A run that reached one of its ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// The end's name.
    pub end: String,
    /// Why, when the end has reasons: the field's value, or `unknown` when it was not seen.
    pub reason: Option<String>,
    /// The compensations done (each as its `seen_as`), in the file's order.
    pub compensated: Vec<String>,
    /// The compensations owed and not seen (each as its `missing`), in the file's order.
    pub missing: Vec<String>,
}

/// A run that has not ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The step it waits at; none when it waits for its start or for an end.
    pub step: Option<String>,
    /// What it waits for, as said to people.
    pub waiting_for: String,
    /// The time of its latest event, if any carried one.
    pub since_ms: Option<i64>,
}

impl Standing {
    /// Ended, and every compensation owed is done.
    pub fn is_settled(&self) -> bool {
        matches!(self, Standing::Ended(ending) if ending.missing.is_empty())
    }
}

impl Saga {
    /// How the run that showed `events` stands.
    pub fn evaluate<E: Observed>(&self, events: &[E]) -> Standing {
        let seen = |name: &str| events.iter().any(|e| short_name(e.event()) == name);
        if let Some(end) = self
            .ends
            .iter()
            .find(|end| end.when.iter().all(|event| seen(event)))
        {
            return Standing::Ended(ending(end, events, &seen));
        }
        let triggered = |after: &[String]| after.iter().any(|event| seen(event));
        let at = self
            .steps
            .iter()
            .rev()
            .find(|s| triggered(&s.after) && !triggered(&s.outcomes));
        let (step, waiting_for) = match at {
            Some(step) => (Some(step.name.clone()), step.waiting.clone()),
            None if !self.steps.iter().any(|s| triggered(&s.after)) => (
                None,
                format!(
                    "{} (no event of the {}'s start was seen)",
                    self.start, self.name
                ),
            ),
            None => (
                None,
                format!("an end of the {}: {}", self.name, self.ends_said()),
            ),
        };
        Standing::Waiting(Waiting {
            step,
            waiting_for,
            since_ms: events.iter().filter_map(Observed::at_ms).max(),
        })
    }

    /// When the run that showed `events` must have ended by the file's default deadline: its
    /// first start event's time plus the default. None without a deadline or a timed start.
    pub fn deadline_ms<E: Observed>(&self, events: &[E]) -> Option<i64> {
        let deadline = self.deadline.as_ref()?;
        let started = events
            .iter()
            .find(|e| short_name(e.event()) == self.start)?
            .at_ms()?;
        let length = i64::try_from(deadline.default.as_millis()).unwrap_or(i64::MAX);
        Some(started.saturating_add(length))
    }

    /// Whether the run that showed `events` has not ended though its default deadline passed
    /// before `now_ms`.
    pub fn is_overdue<E: Observed>(&self, events: &[E], now_ms: i64) -> bool {
        matches!(self.evaluate(events), Standing::Waiting(_))
            && self.deadline_ms(events).is_some_and(|at| at < now_ms)
    }

    /// The ends, as said to people: `A, or B and C`.
    fn ends_said(&self) -> String {
        let ends: Vec<String> = self.ends.iter().map(|e| e.when.join(" and ")).collect();
        ends.join(", or ")
    }
}

fn ending<E: Observed>(end: &End, events: &[E], seen: &dyn Fn(&str) -> bool) -> Ending {
    let reason = end.reason.as_deref().map(|field| {
        events
            .iter()
            .find(|e| end.when.iter().any(|w| short_name(e.event()) == w))
            .and_then(|e| e.field(field))
            .unwrap_or("unknown")
            .to_owned()
    });
    let mut compensated = Vec::new();
    let mut missing = Vec::new();
    for c in &end.compensations {
        if events.iter().any(|e| done_by(c, e)) {
            compensated.push(c.seen_as.clone());
        } else if c.after.iter().any(|e| seen(e)) && !c.unless.iter().any(|e| seen(e)) {
            missing.push(c.missing.clone());
        }
    }
    Ending {
        end: end.name.clone(),
        reason,
        compensated,
        missing,
    }
}

/// Whether `event` is the compensation `c`: its name, and the field values it asks for.
fn done_by<E: Observed>(c: &Compensation, event: &E) -> bool {
    short_name(event.event()) == c.event
        && c.fields
            .iter()
            .all(|(name, value)| event.field(name) == Some(value.as_str()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::saga::TEST_SAGA;

    fn job() -> Saga {
        Saga::parse(Path::new("job.yaml"), TEST_SAGA).unwrap()
    }

    /// An event with fields and a time.
    #[derive(Debug, Clone)]
    struct Event {
        name: String,
        fields: BTreeMap<String, String>,
        at: Option<i64>,
    }

    impl Observed for Event {
        fn event(&self) -> &str {
            &self.name
        }
        fn field(&self, name: &str) -> Option<&str> {
            self.fields.get(name).map(String::as_str)
        }
        fn at_ms(&self) -> Option<i64> {
            self.at
        }
    }

    fn event(name: &str, fields: &[(&str, &str)], at: i64) -> Event {
        Event {
            name: format!("jobs.{name}"),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            at: Some(at),
        }
    }

    fn ended(standing: Standing) -> Ending {
        match standing {
            Standing::Ended(ending) => ending,
            other => panic!("not ended: {other:?}"),
        }
    }

    fn waiting(standing: Standing) -> Waiting {
        match standing {
            Standing::Waiting(waiting) => waiting,
            other => panic!("ended: {other:?}"),
        }
    }

    #[test]
    fn a_run_that_saw_all_of_an_ends_events_has_ended_owing_nothing() {
        let standing = job().evaluate(&["JobRequested", "JobStarted", "JobDone", "ReportSent"]);
        assert!(standing.is_settled());
        assert_eq!(
            ended(standing),
            Ending {
                end: "done".into(),
                reason: None,
                compensated: vec![],
                missing: vec![],
            }
        );
    }

    #[test]
    fn a_failed_run_lists_the_compensations_done_and_missing_with_its_reason() {
        let events = [
            event("JobRequested", &[], 1),
            event("JobStarted", &[], 2),
            event("JobFailed", &[("why", "TIMEOUT")], 3),
            event("SlotFreed", &[], 4),
        ];
        let standing = job().evaluate(&events);
        assert!(!standing.is_settled());
        assert_eq!(
            ended(standing),
            Ending {
                end: "failed".into(),
                reason: Some("TIMEOUT".into()),
                compensated: vec!["SlotFreed".into()],
                missing: vec!["an abort or an outcome".into()],
            }
        );
    }

    #[test]
    fn a_compensation_counts_only_with_the_field_values_it_asks_for() {
        let mut events = vec![
            event("JobRequested", &[], 1),
            event("JobStarted", &[], 2),
            event("JobFailed", &[], 3),
            event("SlotFreed", &[], 4),
            event("JobStopped", &[("how", "LOST")], 5),
        ];
        let missing = ended(job().evaluate(&events)).missing;
        assert_eq!(missing, ["an abort or an outcome"]);
        events.push(event("JobStopped", &[("how", "ABORTED")], 6));
        let ending = ended(job().evaluate(&events));
        assert_eq!(ending.reason.as_deref(), Some("unknown"));
        assert_eq!(ending.compensated, ["SlotFreed", "job aborted"]);
        assert!(ending.missing.is_empty());
    }

    #[test]
    fn an_outcome_lifts_what_it_makes_unnecessary_and_an_effect_after_the_end_is_owed_too() {
        let ending =
            ended(job().evaluate(&["JobRequested", "JobFailed", "JobStarted", "JobCrashed"]));
        assert_eq!(ending.missing, ["SlotFreed (the slot was not freed)"]);
        let refused = ended(job().evaluate(&["JobRequested", "JobRefused", "JobFailed"]));
        assert!(refused.missing.is_empty() && refused.compensated.is_empty());
    }

    #[test]
    fn a_run_waits_at_the_last_step_triggered_and_not_answered() {
        let saga = job();
        let at = |events: &[&str]| waiting(saga.evaluate(events));
        let first = at(&["JobRequested"]);
        assert_eq!(first.step.as_deref(), Some("run"));
        assert_eq!(first.waiting_for, "a start or a refusal");
        assert_eq!(
            at(&["JobRequested", "JobStarted"]).waiting_for,
            "JobDone or JobCrashed"
        );
        assert_eq!(at(&["JobRequested", "JobRefused"]).waiting_for, "JobFailed");
        let crashed = at(&["JobRequested", "JobStarted", "JobCrashed"]);
        assert_eq!(crashed.step.as_deref(), Some("fail"));
        let done = at(&["JobStarted", "JobDone"]);
        assert_eq!(done.step.as_deref(), Some("report"));
        let nothing = at(&["SomethingElse"]);
        assert_eq!(nothing.step, None);
        assert_eq!(
            nothing.waiting_for,
            "JobRequested (no event of the job's start was seen)"
        );
    }

    #[test]
    fn a_run_whose_steps_are_all_answered_waits_for_an_end() {
        let saga = Saga::parse(
            Path::new("job.yaml"),
            &TEST_SAGA.replace(
                "outcomes: [ReportSent]",
                "outcomes: [ReportSent, ReportSkipped]",
            ),
        )
        .unwrap();
        let all =
            waiting(saga.evaluate(&["JobRequested", "JobStarted", "JobDone", "ReportSkipped"]));
        assert_eq!(
            (all.step, all.waiting_for.as_str()),
            (
                None,
                "an end of the job: JobFailed, or JobDone and ReportSent"
            )
        );
    }

    #[test]
    fn a_waiting_run_is_overdue_once_its_start_is_older_than_the_deadline() {
        let saga = job();
        let events = [
            event("JobRequested", &[], 1_000),
            event("JobStarted", &[], 3_000),
        ];
        let standing = waiting(saga.evaluate(&events));
        assert_eq!(standing.since_ms, Some(3_000));
        assert_eq!(saga.deadline_ms(&events), Some(11_000));
        assert!(!saga.is_overdue(&events, 11_000));
        assert!(saga.is_overdue(&events, 11_001));
        let mut over = events.to_vec();
        over.push(event("JobFailed", &[], 20_000));
        assert!(
            !saga.is_overdue(&over, 30_000),
            "an ended run is never overdue"
        );
        assert_eq!(
            saga.deadline_ms(&["JobRequested"]),
            None,
            "no time, no deadline"
        );
    }

    #[test]
    fn the_pairs_in_causal_order_are_the_start_before_the_ends_and_an_effect_before_its_undoing() {
        assert_eq!(
            job().causal_pairs(),
            [
                ("JobRequested", "JobDone"),
                ("JobRequested", "JobFailed"),
                ("JobRequested", "ReportSent"),
                ("JobStarted", "JobStopped"),
                ("JobStarted", "SlotFreed"),
            ]
        );
    }

    fn any_run() -> impl Strategy<Value = Vec<Event>> {
        let names = job()
            .events()
            .into_iter()
            .map(str::to_owned)
            .chain(["Unrelated".to_owned()])
            .collect::<Vec<_>>();
        let one = (
            proptest::sample::select(names),
            proptest::option::of(proptest::sample::select(vec!["ABORTED", "LOST", "TIMEOUT"])),
            0i64..1_000,
        )
            .prop_map(|(name, value, at)| Event {
                fields: value
                    .map(|v| {
                        [
                            ("how".to_owned(), v.to_owned()),
                            ("why".to_owned(), v.to_owned()),
                        ]
                    })
                    .into_iter()
                    .flatten()
                    .collect(),
                name,
                at: Some(at),
            });
        proptest::collection::vec(one, 0..12)
    }

    proptest! {
        #[test]
        fn the_standing_does_not_depend_on_the_order_events_were_seen_in(
            (run, shuffled) in any_run().prop_flat_map(|run| {
                let shuffled = Just(run.clone()).prop_shuffle();
                (Just(run), shuffled)
            })
        ) {
            let saga = job();
            // Only the reason comes from one event (the first of the end's); compare without.
            let without_reason = |standing: Standing| match standing {
                Standing::Ended(ending) => Standing::Ended(Ending { reason: None, ..ending }),
                waiting => waiting,
            };
            prop_assert_eq!(
                without_reason(saga.evaluate(&run)),
                without_reason(saga.evaluate(&shuffled))
            );
        }

        #[test]
        fn doing_every_missing_compensation_settles_an_ended_run(run in any_run()) {
            let saga = job();
            let Standing::Ended(ending) = saga.evaluate(&run) else {
                return Ok(());
            };
            let end = saga.end(&ending.end).unwrap();
            let mut settled = run.clone();
            for c in &end.compensations {
                settled.push(Event {
                    name: c.event.clone(),
                    fields: c.fields.clone(),
                    at: None,
                });
            }
            let after = saga.evaluate(&settled);
            prop_assert!(after.is_settled(), "{:?}", after);
            let Standing::Ended(after) = after else { unreachable!() };
            prop_assert_eq!(after.end, ending.end);
            prop_assert!(ending.missing.len() + ending.compensated.len() <= end.compensations.len());
        }

        #[test]
        fn a_waiting_run_never_waits_at_a_step_it_saw_answered(run in any_run()) {
            let saga = job();
            if let Standing::Waiting(Waiting { step: Some(step), .. }) = saga.evaluate(&run) {
                let step = saga.steps.iter().find(|s| s.name == step).unwrap();
                for outcome in &step.outcomes {
                    prop_assert!(!run.iter().any(|e| short_name(e.event()) == outcome));
                }
            }
        }
    }
}
