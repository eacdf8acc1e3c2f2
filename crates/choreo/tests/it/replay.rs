//! The replay runner against real PostgreSQL and the stack's registry, with a small service of
//! the tests' own (a running total per key, `replay_migrations/`): each record applied once with
//! the inbox, duplicates and rejections counted, the outbox reported, a database that is not
//! fresh refused, `--init-sql`, `--create` and `--diff-against`. Dump files are written here; no
//! Kafka.

use std::path::Path;
use std::sync::Arc;

use choreo::avro::{Codec, Event};
use choreo::consumer::{Handler, HandlerError, Incoming};
use choreo::outbox::Outbox;
use choreo::replay::testing::{DumpBuilder, Scratch};
use choreo::replay::{run::run, Handled, RangeArgs, ReplayArgs, ReplayError, Service};
use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use sqlx::Connection as _;

use crate::{registry, unique, TestDb};

static MIGRATOR: Migrator = sqlx::migrate!("tests/it/replay_migrations");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename = "Counted")]
struct Counted {
    key: String,
    amount: i32,
}

impl Event for Counted {
    const NAME: &'static str = "test.replay.Counted";
    const SCHEMA: &'static str = r#"{"type":"record","name":"Counted","namespace":"test.replay","fields":[
        {"name":"key","type":"string"},{"name":"amount","type":"int"}]}"#;
    const TOPIC: &'static str = "test.replay.counts";
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename = "Tallied")]
struct Tallied {
    key: String,
    total: i64,
}

impl Event for Tallied {
    const NAME: &'static str = "test.replay.Tallied";
    const SCHEMA: &'static str = r#"{"type":"record","name":"Tallied","namespace":"test.replay","fields":[
        {"name":"key","type":"string"},{"name":"total","type":"long"}]}"#;
    const TOPIC: &'static str = "test.replay.tallies";
}

/// Adds each count to its key's total and announces the new total; rejects a negative amount.
struct Tally {
    codec: Arc<Codec>,
    outbox: Outbox,
}

impl Handler for Tally {
    async fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &Incoming,
    ) -> Result<(), HandlerError> {
        let counted: Counted = self.codec.decode(&event.value).await?;
        if counted.amount < 0 {
            return Err(HandlerError::Rejected(format!(
                "a negative amount for {}",
                counted.key
            )));
        }
        let total: i64 = sqlx::query_scalar(
            "insert into tallies (key, total) values ($1, $2)
             on conflict (key) do update set total = tallies.total + excluded.total,
                                             updated_at = now()
             returning total",
        )
        .bind(&counted.key)
        .bind(i64::from(counted.amount))
        .fetch_one(&mut *tx)
        .await?;
        let tallied = Tallied {
            key: counted.key.clone(),
            total,
        };
        let metadata = choreo::envelope::Metadata::new(Tallied::NAME, &counted.key, "tally");
        self.outbox
            .add(tx, &counted.key, &tallied, metadata)
            .await?;
        Ok(())
    }
}

fn tally(topic: &str) -> Service<Handled<Tally>> {
    Service {
        name: "tally",
        topics: vec![topic.to_owned()],
        migrator: &MIGRATOR,
        state_tables: &["tallies"],
        generated_ids: &["tally_id"],
        handlers: |codec, outbox| Handled(Tally { codec, outbox }),
    }
}

fn codec() -> Arc<Codec> {
    Arc::new(Codec::new(&registry()).unwrap())
}

fn args(input: &Path, database_url: &str) -> ReplayArgs {
    ReplayArgs {
        input: input.to_owned(),
        range: RangeArgs::default(),
        database_url: database_url.to_owned(),
        create: false,
        force: false,
        init_sql: None,
        diff_against: None,
        ignore: vec![],
        registry: Some(registry().url),
        timeout: 30,
    }
}

/// Runs the replay; returns its result and what it wrote.
async fn replay(
    service: &Service<Handled<Tally>>,
    args: ReplayArgs,
) -> (Result<(), ReplayError>, String) {
    let mut out = Vec::new();
    let result = run(service, args, &mut out).await.map(drop);
    (result, String::from_utf8(out).unwrap())
}

async fn totals(pool: &sqlx::PgPool) -> Vec<(String, i64)> {
    sqlx::query_as("select key, total from tallies order by key")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Counts for keys a and b (a: 2 + 3, b: 5), the last count of a published twice, and a
/// negative count for b that the handler rejects.
async fn counts(topic: &str) -> DumpBuilder {
    let mut events = DumpBuilder::new(codec());
    for (key, amount) in [("a", 2), ("b", 5), ("a", 3)] {
        let counted = Counted {
            key: key.into(),
            amount,
        };
        events.add(topic, 0, key, &counted).await;
    }
    events.duplicate_last();
    let negative = Counted {
        key: "b".into(),
        amount: -1,
    };
    events.add(topic, 1, "b", &negative).await;
    events
}

#[tokio::test]
async fn a_replay_applies_each_record_once_and_reports_what_it_would_publish() {
    let scratch = Scratch::new();
    let topic = unique("test.replay.counts");
    let file = scratch.file("counts.jsonl");
    counts(&topic).await.write(&file);
    let db = TestDb::create().await;

    let (result, out) = replay(&tally(&topic), args(&file, &db.url)).await;

    result.unwrap();
    assert!(
        out.contains("tally replay: 5 record(s) of 2 order(s)"),
        "{out}"
    );
    assert!(out.contains("test.replay.Counted: 3"), "{out}");
    assert!(out.contains("duplicates skipped: 1"), "{out}");
    assert!(out.contains("handler failures: 1"), "{out}");
    assert!(out.contains("rejected: a negative amount for b"), "{out}");
    let (_, published) = out.split_once("would publish").unwrap();
    assert!(published.contains("test.replay.Tallied: 3"), "{out}");
    assert_eq!(totals(&db.pool).await, [("a".into(), 5), ("b".into(), 5)]);
    db.drop().await;
}

#[tokio::test]
async fn a_database_holding_the_services_rows_is_refused_and_a_forced_replay_changes_nothing() {
    let scratch = Scratch::new();
    let topic = unique("test.replay.counts");
    let file = scratch.file("counts.jsonl");
    counts(&topic).await.write(&file);
    let db = TestDb::create().await;
    let service = tally(&topic);
    replay(&service, args(&file, &db.url)).await.0.unwrap();

    let (again, _) = replay(&service, args(&file, &db.url)).await;
    let Err(ReplayError::Refused(why)) = again else {
        panic!("a database that is not fresh must be refused: {again:?}");
    };
    assert!(why.contains("already holds tally rows"), "{why}");
    assert!(why.contains("tallies"), "{why}");

    let forced = ReplayArgs {
        force: true,
        ..args(&file, &db.url)
    };
    let (result, out) = replay(&service, forced).await;
    result.unwrap();
    assert!(out.contains("applied: none"), "{out}");
    assert!(out.contains("duplicates skipped: 4"), "{out}");
    assert_eq!(totals(&db.pool).await, [("a".into(), 5), ("b".into(), 5)]);
    db.drop().await;
}

#[tokio::test]
async fn init_sql_comes_first_and_the_diff_finds_only_real_differences() {
    let scratch = Scratch::new();
    let topic = unique("test.replay.counts");
    let file = scratch.file("counts.jsonl");
    let events = counts(&topic).await;
    events.write(&file);
    let init = scratch.file("opening.sql");
    let opening = "insert into tallies (key, total) values ('c', 100), ('a', 10);";
    std::fs::write(&init, opening).unwrap();

    // The live side: the same state and records, straight through the handler (without the
    // rejected record, which its consumer would have dead-lettered).
    let live = TestDb::create().await;
    MIGRATOR.run(&live.pool).await.unwrap();
    sqlx::raw_sql(opening).execute(&live.pool).await.unwrap();
    let codec = codec();
    let handler = Tally {
        codec: codec.clone(),
        outbox: Outbox::new(codec, "tally"),
    };
    let mut accepted = DumpBuilder::new(self::codec());
    accepted.records = events.records[..4].to_vec();
    accepted.apply_directly(&live.pool, "tally", &handler).await;

    let diffed = |url: &str| ReplayArgs {
        init_sql: Some(init.clone()),
        diff_against: Some(live.url.clone()),
        ..args(&file, url)
    };
    let clean = TestDb::create().await;
    let (result, out) = replay(&tally(&topic), diffed(&clean.url)).await;
    result.unwrap();
    assert!(out.contains("no differences"), "{out}");
    assert_eq!(
        totals(&clean.pool).await,
        [("a".into(), 15), ("b".into(), 5), ("c".into(), 100)]
    );

    sqlx::query("update tallies set total = 99 where key = 'a'")
        .execute(&live.pool)
        .await
        .unwrap();
    let differing = TestDb::create().await;
    let (result, out) = replay(&tally(&topic), diffed(&differing.url)).await;
    let Err(ReplayError::Refused(why)) = result else {
        panic!("differences must be refused: {result:?}\n{out}");
    };
    assert!(why.contains("1 difference(s)"), "{why}");
    assert!(out.contains("tallies [key=\"a\"]: changed"), "{out}");
    assert!(out.contains("total: replay 15, compared 99"), "{out}");
    for db in [live, clean, differing] {
        db.drop().await;
    }
}

#[tokio::test]
async fn create_makes_the_missing_database_and_bad_files_are_bad_input() {
    let scratch = Scratch::new();
    let topic = unique("test.replay.counts");
    let file = scratch.file("counts.jsonl");
    counts(&topic).await.write(&file);
    let existing = TestDb::create().await;
    let name = format!("test_{}", uuid::Uuid::now_v7().simple());
    let url = choreo::db::with_database(&existing.url, &name);

    let (missing, _) = replay(&tally(&topic), args(&file, &url)).await;
    let Err(ReplayError::BadInput(why)) = missing else {
        panic!("a missing database without --create is bad input: {missing:?}");
    };
    assert!(why.contains("pass --create"), "{why}");

    let create = ReplayArgs {
        create: true,
        ..args(&file, &url)
    };
    let (result, out) = replay(&tally(&topic), create).await;
    result.unwrap();
    assert!(out.contains(&format!("created database {name}")), "{out}");
    assert!(out.contains("test.replay.Counted: 3"), "{out}");
    let mut admin = sqlx::PgConnection::connect(&std::env::var("PG_ADMIN_URL").unwrap())
        .await
        .unwrap();
    sqlx::raw_sql(&format!("drop database {name} with (force)"))
        .execute(&mut admin)
        .await
        .unwrap();

    let garbled = scratch.file("garbled.jsonl");
    std::fs::write(&garbled, "this is not json\n").unwrap();
    let (result, _) = replay(&tally(&topic), args(&garbled, &existing.url)).await;
    let Err(ReplayError::BadInput(why)) = result else {
        panic!("a file that is not a dump is bad input: {result:?}");
    };
    assert!(why.contains("not a choreo dump header"), "{why}");
    let no_init = ReplayArgs {
        init_sql: Some(scratch.file("missing.sql")),
        ..args(&file, &existing.url)
    };
    let (result, _) = replay(&tally(&topic), no_init).await;
    assert!(
        matches!(&result, Err(ReplayError::BadInput(why)) if why.contains("--init-sql")),
        "{result:?}"
    );
    existing.drop().await;
}
