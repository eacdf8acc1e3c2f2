//! A choreographed saga described in a file, and how far one run of it got from the events it
//! published. The services decide in their own domain cores; a saga file says, in one place,
//! what the tools and the checks outside them expect: where a saga starts, its steps and their
//! outcomes, the ends it can reach, the compensations each end owes for what happened before,
//! and its deadline.
//!
//! [`Saga::parse`] and [`load`] build a [`Saga`] from YAML (unknown fields rejected; every error
//! names the file and the field); [`Saga::evaluate`] answers, without I/O, for the events seen
//! of one run ([`Observed`]): has it ended, which compensations are done and which missing, at
//! which step does it wait, is it past its deadline. Reading the events from Kafka is the
//! caller's job.
//!
//! ```yaml
//! name: job                       # the run's noun, as in "the job's start"
//! description: ...                # optional
//! start: JobRequested             # the event that begins a run
//! deadline:                       # optional
//!   default: 10s                  # ms, s, m or h; how long after the start a run may take
//!   config: JOB_DEADLINE_SECS     # optional: where the owner reads its own value
//!   ends_as: failed               # optional: the end a passed deadline leads to
//! steps:                          # a run waits at the last step triggered and not answered
//!   - name: run
//!     by: worker                  # optional: who takes the step
//!     after: [JobRequested]       # any of these triggers it
//!     outcomes: [JobStarted, JobRefused]
//!     waiting: ...                # optional (default: the outcomes), as said to people
//! ends:                           # the first whose `when` events were all seen
//!   - name: failed
//!     when: [JobFailed]
//!     reason: why                 # optional: the field of that event saying why
//!     compensations:
//!       - event: JobStopped       # the compensating event ...
//!         where: { how: ABORTED } # ... with these field values (optional)
//!         after: [JobStarted]     # owed once any of these was seen ...
//!         unless: [JobDone]       # ... and none of these (optional)
//!         seen_as: job aborted    # optional: how a done compensation is named
//!         missing: ...            # optional: how a missing one is named
//! ```
//!
//! Events are named by their record's short name (`JobStarted` for `acme.jobs.JobStarted`);
//! an event seen matches by the last dotted part of its name. Nothing here knows any saga.

mod evaluate;
mod parse;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub use evaluate::{short_name, Ending, Observed, Standing, Waiting};
pub use parse::{load, SagaError};

/// A saga as its file declares it, checked: built only by [`Saga::parse`] or [`load`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saga {
    /// What one run is about (`job`), used in what is said about it.
    pub name: String,
    pub description: String,
    /// The event that begins a run.
    pub start: String,
    pub deadline: Option<Deadline>,
    /// In saga order: a run waits at the last one triggered and not answered.
    pub steps: Vec<Step>,
    /// In the order they are tried: a run has ended at the first whose events were all seen.
    pub ends: Vec<End>,
}

/// How long a run may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    /// After the start event, unless the owner is configured otherwise.
    pub default: Duration,
    /// Where the owner reads its own value (an environment variable, say); for people.
    pub config: Option<String>,
    /// The end a passed deadline leads to (one of [`Saga::ends`]).
    pub ends_as: Option<String>,
}

/// One step: something a participant does once any of `after` happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    /// Who takes it (a service), for people.
    pub by: Option<String>,
    pub after: Vec<String>,
    pub outcomes: Vec<String>,
    /// What a run waiting here waits for, as said to people.
    pub waiting: String,
}

/// A state a run ends in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    pub name: String,
    /// Reached once every one of these was seen.
    pub when: Vec<String>,
    /// The field of the first `when` event seen that says why, if the end has reasons.
    pub reason: Option<String>,
    /// What the end owes for what happened before (or after) it.
    pub compensations: Vec<Compensation>,
}

/// An effect to undo: `event` (with the `fields` given) is owed once any of `after` and none
/// of `unless` was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compensation {
    pub event: String,
    pub fields: BTreeMap<String, String>,
    pub after: Vec<String>,
    pub unless: Vec<String>,
    /// How it is named once done.
    pub seen_as: String,
    /// How it is named while owed.
    pub missing: String,
}

impl Saga {
    /// Every event the saga names: its start, the steps' triggers and outcomes, the ends'
    /// events and the compensations'.
    pub fn events(&self) -> BTreeSet<&str> {
        let mut events = BTreeSet::from([self.start.as_str()]);
        for step in &self.steps {
            events.extend(step.after.iter().chain(&step.outcomes).map(String::as_str));
        }
        for end in &self.ends {
            events.extend(end.when.iter().map(String::as_str));
            for c in &end.compensations {
                events.insert(c.event.as_str());
                events.extend(c.after.iter().chain(&c.unless).map(String::as_str));
            }
        }
        events
    }

    /// Pairs of events where the first, when both happened, happened before the second: the
    /// start before each end's events, and what a compensation undoes before the compensation.
    pub fn causal_pairs(&self) -> Vec<(&str, &str)> {
        let mut pairs = Vec::new();
        for end in &self.ends {
            for event in end.when.iter().filter(|e| **e != self.start) {
                pairs.push((self.start.as_str(), event.as_str()));
            }
            for c in &end.compensations {
                for cause in c.after.iter().filter(|e| **e != c.event) {
                    pairs.push((cause.as_str(), c.event.as_str()));
                }
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        pairs
    }

    /// The end named `name`.
    pub fn end(&self, name: &str) -> Option<&End> {
        self.ends.iter().find(|e| e.name == name)
    }
}

/// A saga of its own for the tests (not anyone's real one): a job is started or refused, then
/// done or crashed; a failed job frees its slot, and one that was started is aborted unless it
/// had an outcome.
#[cfg(test)]
const TEST_SAGA: &str = "\
name: job
start: JobRequested
deadline:
  default: 10s
  config: JOB_DEADLINE_SECS
  ends_as: failed
steps:
  - name: run
    by: worker
    after: [JobRequested]
    outcomes: [JobStarted, JobRefused]
    waiting: a start or a refusal
  - name: fail
    after: [JobRefused, JobCrashed]
    outcomes: [JobFailed]
  - name: work
    after: [JobStarted]
    outcomes: [JobDone, JobCrashed]
  - name: report
    after: [JobDone]
    outcomes: [ReportSent]
ends:
  - name: failed
    when: [JobFailed]
    reason: why
    compensations:
      - event: SlotFreed
        after: [JobStarted]
        missing: SlotFreed (the slot was not freed)
      - event: JobStopped
        where: { how: ABORTED }
        after: [JobStarted]
        unless: [JobDone, JobCrashed]
        seen_as: job aborted
        missing: an abort or an outcome
  - name: done
    when: [JobDone, ReportSent]
";
