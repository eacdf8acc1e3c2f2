//! `choreo trace` against the real broker: the sagas of three jobs written to topics of the
//! test's own (created from the fixture topic specs, see [`super::fixtures`]), traced to their
//! verdicts through `--saga` and `--topics-dir` by the rules of the fixture saga file
//! (tests/fixtures/sagas/job.yaml).

use choreo::envelope::Metadata;

use super::fixtures::{
    cancelled, claimed, done, finished, released, started, undone, CancelReason, FixtureTopics,
    JobCancelled, JobStarted, StepDone, StepUndone, WorkerClaimed, WorkerReleased, SAGA,
};
use super::inspect::{choreo, json_lines, stderr, stdout, Events};

/// `choreo trace <job_id>` by the fixture saga on the topics of `topics`' specs, plus `extra`
/// arguments.
fn trace(topics: &FixtureTopics, job_id: &str, extra: &[&str]) -> std::process::Output {
    let dir = topics.dir().to_str().expect("a UTF-8 path");
    let mut args = vec!["trace", job_id, "--saga", SAGA, "--topics-dir", dir];
    args.extend(extra);
    choreo(&args)
}

fn job_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn meta(job_id: &str, producer: &str, cause: Option<&Metadata>) -> Metadata {
    let metadata = Metadata::new("unset", job_id, producer);
    match cause {
        Some(cause) => metadata.caused_by(cause),
        None => metadata,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_gives_each_job_its_steps_in_causal_order_and_a_verdict() {
    let topics = FixtureTopics::create().await;
    let events = Events::new();
    let jobs = topics.of::<JobStarted>();
    let workers = topics.of::<WorkerClaimed>();
    let steps = topics.of::<StepDone>();
    assert_eq!(jobs, topics.of::<JobCancelled>());
    assert_eq!(workers, topics.of::<WorkerReleased>());
    assert_eq!(steps, topics.of::<StepUndone>());

    // Completed: started, claimed, step done, finished.
    let complete = job_id();
    // Started by a request in a trace, which the events it causes carry on.
    let mut first = meta(&complete, "scheduler", None);
    first.traceparent = Some(format!("00-{TRACE}-00f067aa0ba902b7-01"));
    let (s, _, _) = events
        .send(jobs, &complete, &started(&complete), first)
        .await;
    let (c, _, _) = events
        .send(
            workers,
            &complete,
            &claimed(&complete),
            meta(&complete, "pool", Some(&s)),
        )
        .await;
    let (d, _, _) = events
        .send(
            steps,
            &complete,
            &done(&complete),
            meta(&complete, "worker", Some(&c)),
        )
        .await;
    events
        .send(
            jobs,
            &complete,
            &finished(&complete),
            meta(&complete, "scheduler", Some(&d)),
        )
        .await;

    // Cancelled on its budget while its step ran, which was done after all: the worker given
    // back and the step undone.
    let gone = job_id();
    let (s, _, _) = events
        .send(jobs, &gone, &started(&gone), meta(&gone, "scheduler", None))
        .await;
    let (c, _, _) = events
        .send(
            workers,
            &gone,
            &claimed(&gone),
            meta(&gone, "pool", Some(&s)),
        )
        .await;
    let (cancel, _, _) = events
        .send(
            jobs,
            &gone,
            &cancelled(&gone, CancelReason::Timeout, None),
            meta(&gone, "scheduler", None),
        )
        .await;
    let (d, _, _) = events
        .send(steps, &gone, &done(&gone), meta(&gone, "worker", Some(&c)))
        .await;
    events
        .send(
            workers,
            &gone,
            &released(&gone),
            meta(&gone, "pool", Some(&cancel)),
        )
        .await;
    events
        .send(
            steps,
            &gone,
            &undone(&gone),
            meta(&gone, "worker", Some(&d)),
        )
        .await;

    // Stuck: a worker claimed, then nothing from it.
    let stuck = job_id();
    let (s, _, _) = events
        .send(
            jobs,
            &stuck,
            &started(&stuck),
            meta(&stuck, "scheduler", None),
        )
        .await;
    events
        .send(
            workers,
            &stuck,
            &claimed(&stuck),
            meta(&stuck, "pool", Some(&s)),
        )
        .await;

    let output = trace(
        &topics,
        &complete,
        &["--trace-ui", "http://jaeger.test:16686/"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains(&format!(
            "trace {TRACE}: 4 event(s)  http://jaeger.test:16686/trace/{TRACE}"
        )),
        "{text}"
    );
    // The run is named by its saga file's name and its id, which no step repeats as a field.
    assert!(
        text.starts_with(&format!("job {complete}: 4 event(s)")),
        "{text}"
    );
    assert!(!text.contains(&format!("={complete}")), "{text}");
    assert!(text.contains("verdict: completed"), "{text}");
    let order: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            ["JobStarted", "WorkerClaimed", "StepDone", "JobFinished"]
                .into_iter()
                .find(|t| l.contains(&format!(" {t} ")))
        })
        .collect();
    assert_eq!(
        order,
        ["JobStarted", "WorkerClaimed", "StepDone", "JobFinished"],
        "{text}"
    );
    assert!(text.contains("worker=w-7"), "{text}");
    assert!(text.contains("causal chain: complete"), "{text}");

    let json = &json_lines(&trace(&topics, &gone, &["--json"]))[0];
    assert_eq!(json["saga"], "job");
    assert_eq!(json["id"], gone.as_str());
    assert_eq!(json["verdict"]["status"], "cancelled");
    assert_eq!(json["verdict"]["reason"], "TIMEOUT");
    assert_eq!(
        json["verdict"]["compensated"],
        serde_json::json!(["WorkerReleased", "StepUndone"])
    );
    assert_eq!(json["verdict"]["missing"], serde_json::json!([]));
    assert_eq!(json["steps"].as_array().unwrap().len(), 6);
    // The timeout's cancellation was sent naming no cause: the one break in the chain.
    assert_eq!(
        json["chain_gaps"],
        serde_json::json!([{"gap": "no_cause", "event_id": cancel.event_id.to_string()}])
    );
    let types: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["event_type"].as_str().unwrap())
        .collect();
    let position = |t: &str| types.iter().position(|x| x.ends_with(t)).unwrap();
    assert!(position("StepDone") < position("StepUndone"), "{types:?}");
    assert!(
        position("JobCancelled") < position("WorkerReleased"),
        "{types:?}"
    );

    let output = trace(&topics, &stuck, &[]);
    let text = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        text.contains("stuck since") && text.contains("waiting for a step outcome"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_of_a_job_with_no_events_exits_1_saying_so() {
    let topics = FixtureTopics::create().await;
    let missing = job_id();
    let output = trace(&topics, &missing, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("no event has the key `{missing}`")),
        "{}",
        stderr(&output)
    );
}
