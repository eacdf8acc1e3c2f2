//! The tests' own events, so that they need nothing of the shop: a job saga declared in
//! `tests/fixtures/` as a team would declare theirs (schemas in `schemas/job/*.avsc`, the topics
//! that carry them in `topics/*.yaml`, the saga in `sagas/job.yaml`), its events as Rust types
//! implementing [`choreo::avro::Event`] by hand with those schemas, and [`FixtureTopics`], which
//! creates topics of one test's own from the topic specs. The check at the end holds the files
//! and the types together without the stack.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use choreo::avro::Event;
use choreo::replay::testing::Scratch;
use choreo::testing::create_topic;
use serde::{Deserialize, Serialize};

/// The fixture files' folder.
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The job saga's file, for `choreo trace --saga`.
pub(crate) const SAGA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sagas/job.yaml");

/// Implements [`Event`] for a fixture type: its record name, its schema file under
/// `tests/fixtures/schemas/job/`, and the topic spec that lists it.
macro_rules! fixture_event {
    ($ty:ident, $topic:literal) => {
        impl Event for $ty {
            const NAME: &'static str = concat!("test.job.", stringify!($ty));
            const SCHEMA: &'static str = include_str!(concat!(
                "../fixtures/schemas/job/",
                stringify!($ty),
                ".avsc"
            ));
            const TOPIC: &'static str = $topic;
        }
    };
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StepSpec {
    pub name: String,
    pub attempts: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobStarted {
    pub job_id: String,
    pub requested_by: String,
    pub steps: Vec<StepSpec>,
    pub budget_ms: i64,
    pub started_at: i64,
}
fixture_event!(JobStarted, "test.jobs.v1");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobFinished {
    pub job_id: String,
    pub output: String,
    pub finished_at: i64,
}
fixture_event!(JobFinished, "test.jobs.v1");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CancelReason {
    #[serde(rename = "STEP_FAILED")]
    StepFailed,
    #[serde(rename = "OPERATOR_REQUEST")]
    OperatorRequest,
    #[serde(rename = "TIMEOUT")]
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobCancelled {
    pub job_id: String,
    pub reason: CancelReason,
    #[serde(default)]
    pub detail: Option<String>,
    pub cancelled_at: i64,
}
fixture_event!(JobCancelled, "test.jobs.v1");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WorkerClaimed {
    pub job_id: String,
    pub worker: String,
    pub claimed_at: i64,
}
fixture_event!(WorkerClaimed, "test.workers.v1");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WorkerReleased {
    pub job_id: String,
    pub worker: String,
    pub released_at: i64,
}
fixture_event!(WorkerReleased, "test.workers.v1");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StepDone {
    pub job_id: String,
    pub step: String,
    pub attempt: i32,
    pub done_at: i64,
}
fixture_event!(StepDone, "test.steps.v1");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StepFailed {
    pub job_id: String,
    pub step: String,
    pub error: String,
    pub failed_at: i64,
}
fixture_event!(StepFailed, "test.steps.v1");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StepUndone {
    pub job_id: String,
    pub step: String,
    pub undone_at: i64,
}
fixture_event!(StepUndone, "test.steps.v1");

/// A job of two steps, `fetch` and `build`, with a budget of 1200 ms.
pub(crate) fn started(job_id: &str) -> JobStarted {
    JobStarted {
        job_id: job_id.into(),
        requested_by: "ops".into(),
        steps: vec![
            StepSpec {
                name: "fetch".into(),
                attempts: 3,
            },
            StepSpec {
                name: "build".into(),
                attempts: 1,
            },
        ],
        budget_ms: 1200,
        started_at: 1_700_000_000_000,
    }
}

pub(crate) fn cancelled(job_id: &str, reason: CancelReason, detail: Option<&str>) -> JobCancelled {
    JobCancelled {
        job_id: job_id.into(),
        reason,
        detail: detail.map(Into::into),
        cancelled_at: 1_700_000_001_000,
    }
}

pub(crate) fn claimed(job_id: &str) -> WorkerClaimed {
    WorkerClaimed {
        job_id: job_id.into(),
        worker: "w-7".into(),
        claimed_at: 1_700_000_000_100,
    }
}

pub(crate) fn released(job_id: &str) -> WorkerReleased {
    WorkerReleased {
        job_id: job_id.into(),
        worker: "w-7".into(),
        released_at: 1_700_000_030_100,
    }
}

pub(crate) fn done(job_id: &str) -> StepDone {
    StepDone {
        job_id: job_id.into(),
        step: "fetch".into(),
        attempt: 1,
        done_at: 1_700_000_000_200,
    }
}

pub(crate) fn undone(job_id: &str) -> StepUndone {
    StepUndone {
        job_id: job_id.into(),
        step: "fetch".into(),
        undone_at: 1_700_000_030_200,
    }
}

pub(crate) fn finished(job_id: &str) -> JobFinished {
    JobFinished {
        job_id: job_id.into(),
        output: "s3://results/job".into(),
        finished_at: 1_700_000_000_300,
    }
}

/// The topics of `tests/fixtures/topics/`, each created under a name of one test's own (the
/// spec's name plus a unique suffix), and a topics folder whose specs name them, for
/// `--topics-dir`.
pub(crate) struct FixtureTopics {
    /// Each spec's name to the name of the topic created for it.
    names: BTreeMap<String, String>,
    dir: PathBuf,
    _scratch: Scratch,
}

impl FixtureTopics {
    pub(crate) async fn create() -> Self {
        let scratch = Scratch::new();
        let dir = scratch.file("topics");
        std::fs::create_dir(&dir).expect("a topics folder");
        let mut names = BTreeMap::new();
        for spec in specs() {
            let partitions = i32::try_from(spec.partitions).expect("a small partition count");
            let name = create_topic(&spec.name, partitions).await;
            write_renamed(&spec.name, &name, &dir);
            names.insert(spec.name, name);
        }
        Self {
            names,
            dir,
            _scratch: scratch,
        }
    }

    /// The topic created for the spec named `spec`, e.g. `test.jobs.v1`.
    pub(crate) fn topic(&self, spec: &str) -> &str {
        &self.names[spec]
    }

    /// The topic created for the spec that carries `E`.
    pub(crate) fn of<E: Event>(&self) -> &str {
        self.topic(E::TOPIC)
    }

    /// The folder of specs naming the created topics.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Writes the fixture spec named `spec` into `dir` as the spec of the topic `name`.
fn write_renamed(spec: &str, name: &str, dir: &Path) {
    let file = Path::new(FIXTURES)
        .join("topics")
        .join(format!("{spec}.yaml"));
    let text = std::fs::read_to_string(file).expect("the spec");
    let own = text.replacen(
        &format!("\nname: {spec}\n"),
        &format!("\nname: {name}\n"),
        1,
    );
    assert_ne!(own, text, "{spec} has a `name:` line");
    std::fs::write(dir.join(format!("{name}.yaml")), own).expect("the spec copy");
}

fn specs() -> Vec<choreo_cli::topics::TopicSpec> {
    choreo_cli::topics::load_dir(&Path::new(FIXTURES).join("topics"))
        .expect("the fixture topic specs are valid")
}

/// Every fixture type: its record name, schema and topic.
const EVENTS: &[(&str, &str, &str)] = &[
    event::<JobStarted>(),
    event::<JobFinished>(),
    event::<JobCancelled>(),
    event::<WorkerClaimed>(),
    event::<WorkerReleased>(),
    event::<StepDone>(),
    event::<StepFailed>(),
    event::<StepUndone>(),
];

const fn event<E: Event>() -> (&'static str, &'static str, &'static str) {
    (E::NAME, E::SCHEMA, E::TOPIC)
}

#[test]
fn every_event_of_the_fixture_saga_has_a_type_with_its_schema_on_a_fixture_topic() {
    let sagas = choreo::saga::load(Path::new(SAGA)).expect("the fixture saga is valid");
    let specs = specs();
    for (name, schema, topic) in EVENTS {
        let schema: serde_json::Value = serde_json::from_str(schema).expect("the schema is JSON");
        assert_eq!(
            format!(
                "{}.{}",
                schema["namespace"].as_str().unwrap(),
                schema["name"].as_str().unwrap()
            ),
            *name,
            "the type's name is its schema's record name"
        );
        apache_avro::Schema::parse(&schema).expect("the schema is Avro");
        let spec = specs
            .iter()
            .find(|s| s.events.iter().any(|e| e == name))
            .unwrap_or_else(|| panic!("{name} is on no fixture topic"));
        assert_eq!(
            spec.name, *topic,
            "{name}'s TOPIC is the spec that lists it"
        );
    }
    let listed: Vec<&str> = specs
        .iter()
        .flat_map(|s| s.events.iter().map(String::as_str))
        .collect();
    assert_eq!(listed.len(), EVENTS.len(), "every listed event has a type");
    for event in sagas.iter().flat_map(choreo::saga::Saga::events) {
        assert!(
            EVENTS
                .iter()
                .any(|(name, _, _)| choreo::saga::short_name(name) == event),
            "the saga's {event} has a fixture type"
        );
    }
}

#[test]
fn the_renamed_specs_name_the_topics_of_one_test_and_carry_the_whole_saga() {
    let scratch = Scratch::new();
    let dir = scratch.file("topics");
    std::fs::create_dir(&dir).unwrap();
    let specs = specs();
    let own = |spec: &str| format!("{spec}.0123456789abcdef");
    for spec in &specs {
        write_renamed(&spec.name, &own(&spec.name), &dir);
    }
    let renamed = choreo_cli::topics::load_dir(&dir).expect("the copies are valid specs");
    let sagas = choreo::saga::load(Path::new(SAGA)).unwrap();
    let expected: Vec<String> = specs.iter().map(|s| own(&s.name)).collect();
    assert_eq!(
        choreo_cli::trace::saga::topics_for(&sagas, &renamed),
        expected
    );
}
