//! `choreo replay dump|load` through the binary, on topics of the tests' own (never a service's:
//! live services may consume them) carrying the fixture job events ([`super::fixtures`]).
//! Replaying through a service's handlers is the service binary's `replay` subcommand, tested in
//! `crates/choreo` and in the services.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use choreo::avro::{wire, Codec};
use choreo::replay::testing::{expect_exit, DumpBuilder, Scratch};
use choreo::testing::{create_topic, kafka, registry, unique};
use choreo_cli::read::Record;
use choreo_cli::replay::format::{DumpReader, Header};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::fixtures::{cancelled, started, CancelReason};

fn choreo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_choreo"))
        .args(args)
        .env("KAFKA_BROKERS", kafka().brokers)
        .env("SCHEMA_REGISTRY_URL", registry().url)
        .output()
        .expect("run choreo")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn codec() -> Arc<Codec> {
    Arc::new(Codec::new(&registry()).unwrap())
}

fn job_id() -> String {
    unique("job").replace('.', "-")
}

async fn produce(topic: &str, records: &[Record]) {
    let producer: FutureProducer = choreo::kafka::producer_config(&kafka(), "replay-test")
        .create()
        .unwrap();
    for record in records {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(KafkaHeader {
                key,
                value: value.as_deref(),
            });
        }
        let out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition(record.partition)
            .key(record.key.as_deref().unwrap())
            .payload(record.value.as_deref().unwrap())
            .timestamp(record.timestamp_ms.unwrap())
            .headers(headers);
        producer
            .send(out, Duration::from_secs(10))
            .await
            .expect("delivered");
    }
}

/// The records of a dump, each with its value decoded by the registry (through its schema id).
async fn read_dump(file: &Path) -> (Header, Vec<(Record, serde_json::Value)>) {
    let (header, records) = DumpReader::open(file).unwrap().read_all().unwrap();
    let codec = codec();
    let mut decoded = Vec::new();
    for record in records {
        let value = choreo_cli::decode::value_json(&codec, record.value.as_deref().unwrap())
            .await
            .expect("the value decodes with the registry's schema for its id");
        decoded.push((record, value.1));
    }
    (header, decoded)
}

#[tokio::test]
async fn dump_load_and_dump_again_give_the_same_records() {
    let scratch = Scratch::new();
    let source = create_topic("test.replay.source", 3).await;
    let target = create_topic("test.replay.target", 3).await;
    let mut events = DumpBuilder::new(codec());
    for partition in 0..3 {
        let job = job_id();
        events.add(&source, partition, &job, &started(&job)).await;
        let timed_out = cancelled(&job, CancelReason::Timeout, None);
        events.add(&source, partition, &job, &timed_out).await;
    }
    // A header that is not text travels as base64.
    events.records[0]
        .headers
        .push(("binary".into(), Some(vec![0xff, 0x00, 0xfe])));
    produce(&source, &events.records).await;

    let first = scratch.file("first.jsonl");
    let output = choreo(&[
        "replay",
        "dump",
        "--topic",
        &source,
        "--output",
        path(&first),
    ]);
    let (stdout, _) = expect_exit(&output, 0);
    assert!(stdout.contains("dumped 6 record(s)"), "{stdout}");
    let mapping = format!("{source}={target}");
    let output = choreo(&["replay", "load", path(&first), "--topic-map", &mapping]);
    let (stdout, _) = expect_exit(&output, 0);
    assert!(stdout.contains("loaded 6 record(s)"), "{stdout}");
    let second = scratch.file("second.jsonl");
    let output = choreo(&[
        "replay",
        "dump",
        "--topic",
        &target,
        "--output",
        path(&second),
    ]);
    expect_exit(&output, 0);

    let (first_header, before) = read_dump(&first).await;
    let (second_header, after) = read_dump(&second).await;
    assert_eq!(first_header.topics[0].partitions, 3);
    assert_eq!(before.len(), 6);
    assert!(second_header
        .schemas
        .iter()
        .all(|s| s.subject.starts_with(&format!("{target}-"))));
    let key = |(r, _): &(Record, serde_json::Value)| (r.partition, r.offset);
    let (mut before, mut after) = (before, after);
    before.sort_by_key(key);
    after.sort_by_key(key);
    for ((b, b_value), (a, a_value)) in before.iter().zip(&after) {
        assert_eq!(a.topic, target);
        // Offsets match here: the source was written without transactions, so it has no commit
        // markers, and each partition gets the same records in the same order. A topic the
        // relay wrote (in transactions) loads with smaller offsets: the markers are not copied.
        assert_eq!((a.partition, a.offset), (b.partition, b.offset));
        assert_eq!(a.timestamp_ms, b.timestamp_ms);
        assert_eq!(a.key, b.key);
        assert_eq!(a.headers, b.headers);
        assert_eq!(a_value, b_value, "the decoded values are the same");
        assert_eq!(
            a.value.as_ref().unwrap()[5..],
            b.value.as_ref().unwrap()[5..]
        );
    }
    assert_eq!(before.len(), after.len());
    // The second dump's ids are the ones the target subjects have; the values decoded above
    // with them, so the ids were rewritten to ids the registry knows under the target topic.
    for (record, _) in &after {
        let (id, _) = wire::split(record.value.as_deref().unwrap()).unwrap();
        assert!(second_header.schemas.iter().any(|s| s.id == id));
    }
}

#[tokio::test]
async fn load_refuses_a_topic_that_already_holds_records() {
    let scratch = Scratch::new();
    let topic = create_topic("test.replay.busy", 1).await;
    let mut events = DumpBuilder::new(codec());
    let job = job_id();
    events.add(&topic, 0, &job, &started(&job)).await;
    produce(&topic, &events.records).await;
    let file = scratch.file("busy.jsonl");
    events.write(&file);

    let output = choreo(&["replay", "load", path(&file)]);
    let (_, stderr) = expect_exit(&output, 3);
    assert!(
        stderr.contains(&topic) && stderr.contains("--force"),
        "{stderr}"
    );
    let output = choreo(&["replay", "load", path(&file), "--force"]);
    expect_exit(&output, 0);
}

#[test]
fn bad_arguments_and_files_are_bad_input_and_an_unreachable_cluster_an_error() {
    let scratch = Scratch::new();
    let (_, stderr) = expect_exit(&choreo(&["replay", "dump", "--topic", "t"]), 2);
    assert!(stderr.contains("--output"), "{stderr}");

    let missing = scratch.file("missing.jsonl");
    let (_, stderr) = expect_exit(&choreo(&["replay", "load", path(&missing)]), 2);
    assert!(stderr.contains("cannot read the dump"), "{stderr}");

    let garbled = scratch.file("garbled.jsonl");
    std::fs::write(&garbled, "this is not json\n").unwrap();
    let (_, stderr) = expect_exit(&choreo(&["replay", "load", path(&garbled)]), 2);
    assert!(stderr.contains("not a choreo dump header"), "{stderr}");

    let output = choreo(&[
        "--brokers",
        "127.0.0.1:1",
        "--timeout",
        "2",
        "replay",
        "dump",
        "--topic",
        "t",
        "--output",
        path(&scratch.file("out.jsonl")),
    ]);
    let (_, stderr) = expect_exit(&output, 1);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
}
