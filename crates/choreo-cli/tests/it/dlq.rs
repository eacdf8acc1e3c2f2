//! `choreo dlq list|show|redrive` against the real stack: a consumer of a topic of our own
//! dead-letters poison while a flag says it is poison; the binary lists and shows the dead
//! letters; once the flag is cleared (the fix) a redrive sends them back and the restarted
//! consumer applies them; a second redrive redrives nothing (the ledger), and `--again` does but
//! the inbox applies nothing twice.
//!
//! Needs the stack: `scripts/stack up` (scripts/test brings it up).

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use choreo::avro::{Codec, Event};
use choreo::consumer::{
    dlq, Consumer, ConsumerConfig, ConsumerStats, Handler, HandlerError, Incoming,
};
use choreo::envelope::Metadata;
use choreo::testing::{create_topic, kafka, registry, unique, TestDb};
use choreo_cli::read::{Reader, Record, Selection, Start, Stop};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Parcel")]
struct Parcel {
    key: String,
    seq: i32,
    note: String,
}

impl Event for Parcel {
    const NAME: &'static str = "test.dlq.Parcel";
    const SCHEMA: &'static str = r#"{"type":"record","name":"Parcel","namespace":"test.dlq","fields":[
        {"name":"key","type":"string"},{"name":"seq","type":"int"},{"name":"note","type":"string"}]}"#;
    const TOPIC: &'static str = "test.dlq.unused";
}

/// Applies parcels into `applied`; rejects a parcel noted "poison" while `poisoned` is set.
struct Parcels {
    codec: Arc<Codec>,
    poisoned: Arc<AtomicBool>,
}

impl Handler for Parcels {
    async fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &Incoming,
    ) -> Result<(), HandlerError> {
        let parcel: Parcel = self.codec.decode(&event.value).await?;
        if parcel.note == "poison" && self.poisoned.load(Ordering::SeqCst) {
            return Err(HandlerError::Rejected(format!(
                "parcel {} of {} is poison",
                parcel.seq, parcel.key
            )));
        }
        sqlx::query("insert into applied (key, seq, event_id) values ($1, $2, $3)")
            .bind(&parcel.key)
            .bind(parcel.seq)
            .bind(event.metadata.event_id)
            .execute(tx)
            .await?;
        Ok(())
    }
}

struct Fixture {
    db: TestDb,
    topic: String,
    group: String,
    codec: Arc<Codec>,
    producer: FutureProducer,
    poisoned: Arc<AtomicBool>,
}

impl Fixture {
    async fn new() -> Self {
        let db = TestDb::create().await;
        sqlx::raw_sql(
            "create table applied (key text not null, seq int not null, event_id uuid not null)",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        Self {
            db,
            topic: create_topic("test.dlq", 2).await,
            group: unique("test-dlq").replace('.', "-"),
            codec: Arc::new(Codec::new(&registry()).unwrap()),
            producer: choreo::kafka::producer_config(&kafka(), "dlq-test")
                .create()
                .unwrap(),
            poisoned: Arc::new(AtomicBool::new(true)),
        }
    }

    fn dlq(&self) -> String {
        dlq::topic(&self.topic, &self.group)
    }

    /// Starts a consumer in our group; stop it with the token.
    fn start_consumer(
        &self,
    ) -> (
        Arc<ConsumerStats>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let handler = Parcels {
            codec: self.codec.clone(),
            poisoned: self.poisoned.clone(),
        };
        let config = ConsumerConfig {
            batch_size: 50,
            backoff: (Duration::from_millis(10), Duration::from_millis(100)),
            max_retries: 5,
            grace: Duration::from_secs(10),
            ..ConsumerConfig::new(&self.group, &[&self.topic])
        };
        let consumer = Consumer::new(&kafka(), self.db.pool.clone(), handler, config);
        let stats = consumer.stats();
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { consumer.run(stop).await.expect("the consumer runs") }
        });
        (stats, stop, task)
    }

    /// Sends `value` with a proper envelope; returns the event id.
    async fn send_raw(&self, key: &str, value: &[u8]) -> uuid::Uuid {
        let metadata = Metadata::new(Parcel::NAME, key, "dlq-test");
        let owned = metadata
            .to_headers()
            .iter()
            .fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            });
        let record = FutureRecord::to(&self.topic)
            .key(key)
            .payload(value)
            .headers(owned);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .expect("delivered");
        metadata.event_id
    }

    async fn send(&self, key: &str, seq: i32, note: &str) -> uuid::Uuid {
        let parcel = Parcel {
            key: key.into(),
            seq,
            note: note.into(),
        };
        let value = self.codec.encode_for(&self.topic, &parcel).await.unwrap();
        self.send_raw(key, &value).await
    }

    async fn applied(&self) -> Vec<(String, i32, uuid::Uuid)> {
        sqlx::query_as("select key, seq, event_id from applied order by key, seq")
            .fetch_all(&self.db.pool)
            .await
            .unwrap()
    }
}

/// Runs the binary (on a blocking thread: consumers may be running on this runtime).
async fn choreo(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_choreo"))
            .args(&args)
            .env("KAFKA_BROKERS", kafka().brokers)
            .env("SCHEMA_REGISTRY_URL", registry().url)
            .output()
            .expect("run choreo")
    })
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

fn json_lines(text: &str) -> Vec<Json> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every record of `topic` as it is now.
async fn read_topic(topic: &str) -> Vec<Record> {
    let selection = Selection {
        topics: vec![topic.to_owned()],
        partitions: None,
        start: Start::Beginning,
        stop: Stop::End,
    };
    tokio::task::spawn_blocking(move || {
        let mut reader = Reader::open(&kafka(), &selection, Duration::from_secs(30)).unwrap();
        let mut records = Vec::new();
        while let Some(record) = reader.next().unwrap() {
            records.push(record);
        }
        records
    })
    .await
    .unwrap()
}

/// The ledger topic's `cleanup.policy`.
async fn ledger_cleanup_policy() -> String {
    let admin: AdminClient<DefaultClientContext> =
        choreo::kafka::admin_config(&kafka(), "dlq-test")
            .create()
            .unwrap();
    let resources = admin
        .describe_configs(
            &[ResourceSpecifier::Topic("choreo.dlq.redrives")],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let resource = resources.into_iter().next().unwrap().unwrap();
    resource
        .get("cleanup.policy")
        .and_then(|entry| entry.value.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_is_listed_shown_and_redriven_once_after_the_fix() {
    let fx = Fixture::new().await;
    for seq in 0..5 {
        fx.send(&format!("key-{}", seq % 2), seq, "").await;
    }
    let poison = [
        fx.send("key-0", 10, "poison").await,
        fx.send("key-1", 11, "poison").await,
    ];
    fx.send_raw("key-2", b"not avro at all").await;

    // The consumer dead-letters the two poisoned parcels and the garbage.
    let (stats, stop, task) = fx.start_consumer();
    wait_for("five applied and three dead letters", || {
        stats.applied.load(Ordering::Relaxed) == 5
            && stats.dead_lettered.load(Ordering::Relaxed) == 3
    })
    .await;
    stop.cancel();
    task.await.unwrap();
    let dlq = fx.dlq();

    // list: grouped by reason.
    let listed = json_lines(&succeeded(
        &choreo(&["dlq", "list", "--topic", &dlq, "--json"]).await,
    ));
    let group = |reason: &str| {
        listed
            .iter()
            .find(|g| g["reason"] == reason)
            .unwrap_or_else(|| panic!("a {reason} group in {listed:?}"))
            .clone()
    };
    assert_eq!(listed.len(), 2, "{listed:?}");
    let rejected = group("rejected");
    assert_eq!(
        (rejected["count"].as_u64(), rejected["redriven"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(rejected["source_topic"], fx.topic.as_str());
    assert_eq!(rejected["group"], fx.group.as_str());
    assert!(rejected["first_failed_at"].is_string());
    assert_eq!(group("not_wire_format")["count"], 1);
    let table = succeeded(&choreo(&["dlq", "list", "--topic", &dlq]).await);
    assert!(
        table.contains("REASON") && table.contains("3 dead letter(s) in 2 group(s)"),
        "{table}"
    );

    // show: decoded with every header, or raw with the decode error.
    let shown = json_lines(&succeeded(&choreo(&["dlq", "show", &dlq]).await));
    assert_eq!(shown.len(), 3, "{shown:?}");
    for letter in shown.iter().filter(|l| l["reason"] == "rejected") {
        assert_eq!(letter["event_type"], Parcel::NAME);
        assert_eq!(letter["value"]["note"], "poison");
        assert!(letter["error"].as_str().unwrap().contains("is poison"));
        assert_eq!(letter["original"]["topic"], fx.topic.as_str());
        assert_eq!(letter["headers"]["dlq.group"], fx.group.as_str());
        let event_id = letter["headers"]["event_id"].as_str().unwrap();
        assert!(
            poison.iter().any(|id| id.to_string() == event_id),
            "{letter}"
        );
    }
    let garbage = shown
        .iter()
        .find(|l| l["reason"] == "not_wire_format")
        .unwrap();
    assert_eq!(garbage["value"], Json::Null);
    assert_eq!(garbage["value_base64"], "bm90IGF2cm8gYXQgYWxs");
    assert!(
        garbage["decode_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{garbage}"
    );
    let (partition, offset) = (
        garbage["dlq"]["partition"].to_string(),
        garbage["dlq"]["offset"].to_string(),
    );
    let one = json_lines(&succeeded(
        &choreo(&[
            "dlq",
            "show",
            &dlq,
            "--partition",
            &partition,
            "--from-offset",
            &offset,
            "--to-offset",
            &offset,
        ])
        .await,
    ));
    assert_eq!(
        one,
        std::slice::from_ref(garbage),
        "the range selects that letter alone"
    );
    let limited =
        succeeded(&choreo(&["dlq", "show", &dlq, "--reason", "rejected", "--limit", "1"]).await);
    assert_eq!(json_lines(&limited).len(), 1);

    // The fix, then the redrive: the restarted consumer applies the parcels, same event ids.
    fx.poisoned.store(false, Ordering::SeqCst);
    let redriven = succeeded(&choreo(&["dlq", "redrive", &dlq, "--reason", "rejected"]).await);
    assert!(
        redriven.contains("Redriven 2, skipped 0, failed 0."),
        "{redriven}"
    );
    let (stats, stop, task) = fx.start_consumer();
    wait_for("the redriven parcels applied", || {
        stats.applied.load(Ordering::Relaxed) == 2
    })
    .await;
    let applied = fx.applied().await;
    assert_eq!(applied.len(), 7, "{applied:?}");
    for id in poison {
        assert!(
            applied.iter().any(|a| a.2 == id),
            "{id} applied under its own event id"
        );
    }
    let back: Vec<Record> = read_topic(&fx.topic)
        .await
        .into_iter()
        .filter(|r| r.header("redriven_from").is_some())
        .collect();
    assert_eq!(back.len(), 2);
    for record in &back {
        assert_eq!(record.header("redrive_count"), Some("1"));
        assert!(record
            .header("redriven_from")
            .unwrap()
            .starts_with(&format!("{dlq}/")));
        assert!(record
            .headers
            .iter()
            .all(|(name, _)| !name.starts_with("dlq.")));
        assert!(record.header("event_id").is_some());
    }

    assert_eq!(
        ledger_cleanup_policy().await,
        "compact",
        "the ledger keeps the latest entry per dead letter"
    );

    // A second redrive of the same selection redrives nothing, and says why.
    let again = succeeded(&choreo(&["dlq", "redrive", &dlq, "--reason", "rejected"]).await);
    assert!(
        again.contains("Redriven 0, skipped 2, failed 0."),
        "{again}"
    );
    assert!(again.contains("already redriven"), "{again}");
    let dry = succeeded(
        &choreo(&[
            "dlq",
            "redrive",
            &dlq,
            "--reason",
            "rejected",
            "--again",
            "--dry-run",
        ])
        .await,
    );
    assert!(dry.contains("would redrive 2, skip 0"), "{dry}");

    // --again does redrive them, and the inbox applies nothing twice.
    let forced =
        succeeded(&choreo(&["dlq", "redrive", &dlq, "--reason", "rejected", "--again"]).await);
    assert!(forced.contains("Redriven 2, skipped 0"), "{forced}");
    wait_for("the second copies skipped by the inbox", || {
        stats.duplicates.load(Ordering::Relaxed) == 2
    })
    .await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(fx.applied().await.len(), 7);

    let listed = json_lines(&succeeded(
        &choreo(&["dlq", "list", "--topic", &dlq, "--json"]).await,
    ));
    let rejected = listed.iter().find(|g| g["reason"] == "rejected").unwrap();
    assert_eq!(rejected["redriven"], 2);
    fx.db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_and_an_unreachable_cluster_are_told_apart() {
    let missing = format!("{}.nobody.dlq", unique("test.dlq.missing"));
    let shown = choreo(&["dlq", "show", &missing]).await;
    assert_eq!(shown.status.code(), Some(2), "{}", stderr(&shown));
    assert!(stderr(&shown).contains(&missing), "{}", stderr(&shown));

    let unselected = choreo(&["dlq", "redrive", &missing]).await;
    assert_eq!(unselected.status.code(), Some(2));
    assert!(
        stderr(&unselected).contains("--all"),
        "{}",
        stderr(&unselected)
    );

    let both = choreo(&["dlq", "redrive", &missing, "--all", "--reason", "rejected"]).await;
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));

    let unreachable = choreo(&["--brokers", "127.0.0.1:1", "--timeout", "2", "dlq", "list"]).await;
    assert_eq!(
        unreachable.status.code(),
        Some(1),
        "{}",
        stderr(&unreachable)
    );
    assert!(
        stderr(&unreachable).contains("no Kafka broker answered at 127.0.0.1:1"),
        "{}",
        stderr(&unreachable)
    );
}
