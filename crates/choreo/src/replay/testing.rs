//! Dump files for tests (feature `testing`): [`DumpBuilder`] encodes events with the stack's
//! registry into records as a producer would have written them, writes them as a dump file, and
//! applies them straight through a consumer's handler (the "live" side a replay is compared
//! with); [`Scratch`] is a folder to write them in; [`run`] and [`expect_exit`] drive a binary's
//! `replay` as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use sqlx::PgPool;

use super::format::{DumpWriter, Header, Record, SchemaEntry, Source, FORMAT, VERSION};
use crate::avro::{normalize_schema, wire, Codec, Event};
use crate::consumer::{Handler, Incoming};
use crate::envelope::Metadata;

/// Records of events, in the order added, and the dump header's schemas for them.
pub struct DumpBuilder {
    codec: Arc<Codec>,
    pub records: Vec<Record>,
    schemas: Vec<SchemaEntry>,
    at: i64,
}

impl DumpBuilder {
    /// An empty dump whose records start a minute ago, 10 ms apart.
    pub fn new(codec: Arc<Codec>) -> Self {
        Self {
            codec,
            records: Vec::new(),
            schemas: Vec::new(),
            at: chrono::Utc::now().timestamp_millis() - 60_000,
        }
    }

    /// Adds `event` on `topic` partition `partition` at its next offset, keyed by `key`, its
    /// schema registered under the topic; returns its metadata.
    pub async fn add<E: Event>(
        &mut self,
        topic: &str,
        partition: i32,
        key: &str,
        event: &E,
    ) -> Metadata {
        let metadata = Metadata::new(E::NAME, key, "replay-test");
        let value = self
            .codec
            .encode_for(topic, event)
            .await
            .expect("the registry takes the event's schema");
        let (id, _) = wire::split(&value).expect("a framed value");
        let subject = crate::avro::subject(topic, E::NAME);
        if !self.schemas.iter().any(|s| s.subject == subject) {
            self.schemas.push(SchemaEntry {
                id,
                subject,
                schema: normalize_schema(E::SCHEMA).expect("the event's schema is JSON"),
            });
        }
        self.at += 10;
        let offset = self
            .records
            .iter()
            .filter(|r| r.topic == topic && r.partition == partition)
            .count() as i64;
        self.records.push(Record {
            topic: topic.into(),
            partition,
            offset,
            timestamp_ms: Some(self.at),
            key: Some(key.as_bytes().to_vec()),
            headers: metadata
                .to_headers()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Some(v.into_bytes())))
                .collect(),
            value: Some(value),
        });
        metadata
    }

    /// The last record again (same event id) at the next offset, as a relay that published
    /// twice would.
    pub fn duplicate_last(&mut self) {
        let mut again = self.records.last().expect("a record to repeat").clone();
        again.offset += 1;
        self.at += 10;
        again.timestamp_ms = Some(self.at);
        self.records.push(again);
    }

    /// Writes the records as a dump file at `file`.
    pub fn write(&self, file: &Path) {
        let mut writer = DumpWriter::create(file).expect("the dump file can be created");
        for record in &self.records {
            writer.write(record).expect("the record is written");
        }
        writer
            .finish(Header {
                format: FORMAT.into(),
                version: VERSION,
                created_at: chrono::Utc::now().to_rfc3339(),
                source: Source {
                    brokers: "test".into(),
                    registry: None,
                },
                topics: vec![],
                schemas: self.schemas.clone(),
                records: 0,
            })
            .expect("the dump is finished");
    }

    /// Applies the records straight through `handler` into `pool`, each in a transaction with
    /// the inbox of `consumer`, as the service's consumer would.
    pub async fn apply_directly(&self, pool: &PgPool, consumer: &str, handler: &impl Handler) {
        for record in &self.records {
            let metadata = Metadata::from_headers(
                record
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_deref())),
            )
            .expect("the builder's headers");
            let mut tx = pool.begin().await.expect("a transaction");
            if !crate::inbox::record(&mut tx, consumer, metadata.event_id)
                .await
                .expect("the inbox")
            {
                continue;
            }
            let incoming = Incoming {
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
                key: record.key_str().unwrap_or_default().to_owned(),
                metadata,
                value: record.value.clone().unwrap_or_default(),
            };
            handler
                .handle(&mut tx, &incoming)
                .await
                .expect("the handler applies the event");
            tx.commit().await.expect("commit");
        }
    }
}

/// A folder of one test's own, deleted when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(crate::testing::unique("choreo-replay"));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        Self(dir)
    }

    /// The path of `name` in the folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary `exe` (`env!("CARGO_BIN_EXE_<name>")`) with `args`, the stack's registry in
/// `SCHEMA_REGISTRY_URL`.
pub fn run(exe: &str, args: &[&str]) -> Output {
    Command::new(exe)
        .args(args)
        .env("SCHEMA_REGISTRY_URL", crate::testing::registry().url)
        .output()
        .expect("the binary runs")
}

/// The output's stdout and stderr, once its exit code is checked to be `code`.
#[track_caller]
pub fn expect_exit(output: &Output, code: i32) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}
