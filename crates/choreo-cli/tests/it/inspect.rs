//! `choreo inspect` against the real broker and registry: events of a test's own topic (the
//! fixture job events, see [`super::fixtures`]) decoded and filtered, raw bytes, values that are
//! not ours, and bad arguments. Also the helpers the trace and lag tests share: running the
//! binary and producing events with their headers.

use std::process::{Command, Output};
use std::time::Duration;

use choreo::avro::{Codec, Event};
use choreo::envelope::Metadata;
use choreo::testing::{create_topic, kafka, registry};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value as Json;

use super::fixtures::{cancelled, started, CancelReason};

/// Runs `choreo` with the stack's addresses.
pub(crate) fn choreo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_choreo"))
        .args(args)
        .env("KAFKA_BROKERS", kafka().brokers)
        .env("SCHEMA_REGISTRY_URL", registry().url)
        .env("CHOREO_LOG", "off")
        .output()
        .expect("run choreo")
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The JSON lines of a successful run.
pub(crate) fn json_lines(output: &Output) -> Vec<Json> {
    assert!(output.status.success(), "choreo failed: {}", stderr(output));
    stdout(output)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Writes events to test topics as the relay would: key, Avro value, envelope headers.
pub(crate) struct Events {
    producer: FutureProducer,
    pub codec: Codec,
}

impl Events {
    pub(crate) fn new() -> Self {
        let producer = choreo::kafka::producer_config(&kafka(), "choreo-cli-test")
            .create()
            .expect("producer");
        Self {
            producer,
            codec: Codec::new(&registry()).expect("codec"),
        }
    }

    /// Encodes `event` for `topic` and writes it with `metadata`'s headers; returns the
    /// metadata (with the event type set) and where the record landed.
    pub(crate) async fn send<E: Event>(
        &self,
        topic: &str,
        key: &str,
        event: &E,
        mut metadata: Metadata,
    ) -> (Metadata, i32, i64) {
        metadata.event_type = E::NAME.to_owned();
        let value = self.codec.encode_for(topic, event).await.expect("encode");
        let (partition, offset) = self.send_bytes(topic, key, &value, &metadata).await;
        (metadata, partition, offset)
    }

    /// Writes `value` as it is.
    pub(crate) async fn send_bytes(
        &self,
        topic: &str,
        key: &str,
        value: &[u8],
        metadata: &Metadata,
    ) -> (i32, i64) {
        let headers = metadata.to_headers();
        let owned = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            })
        });
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(value)
            .headers(owned);
        let delivery = self
            .producer
            .send(record, Duration::from_secs(30))
            .await
            .expect("delivered");
        (delivery.partition, delivery.offset)
    }
}

fn metadata(job_id: &str) -> Metadata {
    Metadata::new("unset", job_id, "scheduler")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_decodes_values_and_filters_by_key_type_partition_and_last() {
    let topic = create_topic("test.inspect", 3).await;
    let events = Events::new();
    let stop = |job_id| {
        cancelled(
            job_id,
            CancelReason::OperatorRequest,
            Some("no longer needed"),
        )
    };
    events
        .send(&topic, "job-a", &started("job-a"), metadata("job-a"))
        .await;
    events
        .send(&topic, "job-a", &stop("job-a"), metadata("job-a"))
        .await;
    let (_, b_partition, _) = events
        .send(&topic, "job-b", &started("job-b"), metadata("job-b"))
        .await;
    let (_, _, b_last) = events
        .send(&topic, "job-b", &stop("job-b"), metadata("job-b"))
        .await;

    let all = json_lines(&choreo(&["inspect", &topic]));
    assert_eq!(all.len(), 4, "{all:?}");
    let first_a = all.iter().find(|l| l["key"] == "job-a").unwrap();
    assert_eq!(first_a["event_type"], "test.job.JobStarted");
    assert_eq!(first_a["value"]["budget_ms"], 1200);
    assert_eq!(
        first_a["value"]["steps"][0]["name"], "fetch",
        "arrays of records as arrays of objects"
    );
    assert_eq!(first_a["headers"]["producer"], "scheduler");
    assert_eq!(first_a["topic"], topic.as_str());

    let a = json_lines(&choreo(&["inspect", &topic, "--key", "job-a"]));
    assert_eq!(a.len(), 2);
    assert!(a.iter().all(|l| l["key"] == "job-a"));
    assert_eq!(
        a[1]["value"]["reason"], "OPERATOR_REQUEST",
        "enums as symbols"
    );
    assert_eq!(
        a[1]["value"]["detail"], "no longer needed",
        "unions as the inner value"
    );

    let short = json_lines(&choreo(&["inspect", &topic, "--type", "JobCancelled"]));
    assert_eq!(short.len(), 2);
    let full = json_lines(&choreo(&[
        "inspect",
        &topic,
        "--type",
        "test.job.JobStarted",
    ]));
    assert_eq!(full.len(), 2);
    assert!(full
        .iter()
        .all(|l| l["event_type"] == "test.job.JobStarted"));

    let b_part = b_partition.to_string();
    let partition = json_lines(&choreo(&["inspect", &topic, "--partition", &b_part]));
    assert!(partition.iter().all(|l| l["partition"] == b_partition));
    assert!(partition.iter().any(|l| l["key"] == "job-b"));

    let last = json_lines(&choreo(&[
        "inspect",
        &topic,
        "--partition",
        &b_part,
        "--last",
        "1",
    ]));
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["offset"], b_last);

    let limited = json_lines(&choreo(&["inspect", &topic, "--limit", "3"]));
    assert_eq!(limited.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_not_in_the_wire_format_is_reported_and_reading_goes_on() {
    let topic = create_topic("test.inspect-garbage", 1).await;
    let events = Events::new();
    events
        .send_bytes(&topic, "k", b"{\"not\":\"avro\"}", &metadata("k"))
        .await;
    events.send(&topic, "k", &started("k"), metadata("k")).await;

    let lines = json_lines(&choreo(&["inspect", &topic]));
    assert_eq!(lines.len(), 2, "{lines:?}");
    let error = lines[0]["value_error"].as_str().expect("value_error");
    assert!(error.contains("wire format"), "{error}");
    assert_eq!(lines[0]["value"]["utf8"], "{\"not\":\"avro\"}");
    assert_eq!(lines[1]["value"]["job_id"], "k");
    assert!(lines[1].get("value_error").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_prints_values_as_base64_and_text_without_a_registry() {
    let topic = create_topic("test.inspect-raw", 1).await;
    let events = Events::new();
    events
        .send_bytes(&topic, "k", b"hello", &metadata("k"))
        .await;
    events
        .send_bytes(&topic, "k", &[0xff, 0x00], &metadata("k"))
        .await;

    let output = Command::new(env!("CARGO_BIN_EXE_choreo"))
        .args(["inspect", &topic, "--raw"])
        .env("KAFKA_BROKERS", kafka().brokers)
        .env("SCHEMA_REGISTRY_URL", "http://127.0.0.1:1")
        .output()
        .unwrap();
    let lines = json_lines(&output);
    assert_eq!(lines[0]["value"]["base64"], "aGVsbG8=");
    assert_eq!(lines[0]["value"]["utf8"], "hello");
    assert_eq!(lines[1]["value"]["base64"], "/wA=");
    assert!(lines[1]["value"].get("utf8").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_exit_2_and_an_unreachable_cluster_exits_1() {
    let missing = format!("test.inspect-missing.{}", uuid::Uuid::now_v7().simple());
    let output = choreo(&["inspect", &missing]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains(&missing), "{}", stderr(&output));

    let output = choreo(&["inspect", "test.jobs.v1", "--offset", "5"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--offset needs exactly one --partition"));

    let topic = create_topic("test.inspect-partition", 1).await;
    let output = choreo(&["inspect", &topic, "--partition", "7"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no partition 7"),
        "{}",
        stderr(&output)
    );

    let output = choreo(&["inspect", &topic, "--from-time", "yesterday"]);
    assert_eq!(output.status.code(), Some(2));

    let output = choreo(&[
        "--brokers",
        "127.0.0.1:1",
        "--timeout",
        "2",
        "inspect",
        "test.jobs.v1",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no Kafka broker answered at 127.0.0.1:1"),
        "{}",
        stderr(&output)
    );
}
