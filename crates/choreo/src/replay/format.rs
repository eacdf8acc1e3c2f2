//! The dump file: portable, self-contained JSON lines that `choreo replay dump` writes and
//! `choreo replay load` and a service's `replay --input` ([`super::run`]) read, and the
//! [`Record`] they hold. Nothing here talks to Kafka or a registry.
//!
//! ```text
//! {"format":"choreo-dump","version":1,"created_at":"2026-11-27T17:40:00.000Z",
//!  "source":{"brokers":"127.0.0.1:9092","registry":"http://…"},
//!  "topics":[{"name":"shop.orders.v1","partitions":12}],
//!  "schemas":[{"id":7,"subject":"shop.orders.v1-shop.order.OrderPlaced","schema":"{…}"}],
//!  "records":2}
//! {"topic":"shop.orders.v1","partition":3,"offset":41,"timestamp_ms":1764265200000,
//!  "key":"0199…","headers":[["event_id","0199…"],["event_type","shop.order.OrderPlaced"]],
//!  "value":"AAAAAAc…"}
//! …
//! ```
//!
//! The first line is the header (the writer's schemas of every value, by the source registry's
//! ids, and how many record lines follow); then one line per record, per partition in offset
//! order. A key or header value is a JSON string when it is UTF-8, else `{"base64": "…"}`, or
//! null; a value is base64 of its bytes as they were (Confluent framed: magic byte 0, schema id,
//! Avro binary), or null. The header is written last, once the schemas are known: records go to
//! a temporary file first, then header and records are written to `FILE` (by rename), so a file
//! that exists is complete.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::ReplayError;

pub const FORMAT: &str = "choreo-dump";
pub const VERSION: u32 = 1;

/// One Kafka record as read, with owned bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub value: Option<Vec<u8>>,
}

impl Record {
    /// The value of header `name` as UTF-8 text (the last one, if repeated); `None` when absent,
    /// null or not UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v.as_deref()?).ok())
    }

    /// The key as UTF-8 text, when it is.
    pub fn key_str(&self) -> Option<&str> {
        std::str::from_utf8(self.key.as_deref()?).ok()
    }
}

/// The first line of a dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// When the dump was written (RFC 3339, UTC).
    pub created_at: String,
    pub source: Source,
    pub topics: Vec<TopicInfo>,
    pub schemas: Vec<SchemaEntry>,
    /// How many record lines follow.
    pub records: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub brokers: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: usize,
}

/// A writer schema, under the id the source registry gave it and the subject it had on the
/// source topic (`<topic>-<record full name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaEntry {
    pub id: u32,
    pub subject: String,
    /// The schema as JSON text (normalized: compact, sorted keys).
    pub schema: String,
}

impl SchemaEntry {
    /// The record's full name, from the schema text.
    pub fn record_name(&self) -> Result<String, String> {
        let schema = apache_avro::Schema::parse_str(&self.schema)
            .map_err(|e| format!("schema id {} does not parse: {e}", self.id))?;
        schema
            .name()
            .map(|n| n.fullname(None))
            .ok_or_else(|| format!("schema id {} is not a named type", self.id))
    }
}

/// Bytes as JSON: text when UTF-8, else base64 with a marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bytes {
    Text(String),
    Binary { base64: String },
}

impl Bytes {
    pub fn new(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => Bytes::Text(text.to_owned()),
            Err(_) => Bytes::Binary {
                base64: to_base64(bytes),
            },
        }
    }

    pub fn to_vec(&self) -> Result<Vec<u8>, String> {
        match self {
            Bytes::Text(text) => Ok(text.as_bytes().to_vec()),
            Bytes::Binary { base64 } => unbase64(base64),
        }
    }
}

/// One record line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Base64 of the value's bytes.
    pub value: Option<String>,
}

impl Line {
    pub fn from_record(record: &Record) -> Self {
        Self {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            key: record.key.as_deref().map(Bytes::new),
            headers: record
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.as_deref().map(Bytes::new)))
                .collect(),
            value: record.value.as_deref().map(to_base64),
        }
    }

    pub fn into_record(self) -> Result<Record, String> {
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in self.headers {
            let value = value
                .map(|v| v.to_vec())
                .transpose()
                .map_err(|e| format!("header {name}: {e}"))?;
            headers.push((name, value));
        }
        Ok(Record {
            topic: self.topic,
            partition: self.partition,
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            key: self
                .key
                .map(|k| k.to_vec())
                .transpose()
                .map_err(|e| format!("key: {e}"))?,
            headers,
            value: self
                .value
                .map(|v| unbase64(&v))
                .transpose()
                .map_err(|e| format!("value: {e}"))?,
        })
    }
}

/// Standard base64 with padding.
fn to_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unbase64(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("not base64: {e}"))
}

/// Writes a dump: records to a temporary file as they come, then the header and the records to
/// the final path.
pub struct DumpWriter {
    path: PathBuf,
    scratch: PathBuf,
    records: BufWriter<File>,
    count: u64,
}

impl DumpWriter {
    /// Fails as bad input when the file cannot be created (its folder is missing, say).
    pub fn create(path: &Path) -> Result<Self, ReplayError> {
        let scratch = sibling(path, "records.partial");
        let file = File::create(&scratch).map_err(|e| {
            ReplayError::BadInput(format!("cannot write the dump {}: {e}", path.display()))
        })?;
        Ok(Self {
            path: path.to_owned(),
            scratch,
            records: BufWriter::new(file),
            count: 0,
        })
    }

    pub fn write(&mut self, record: &Record) -> Result<(), ReplayError> {
        let line = serde_json::to_string(&Line::from_record(record)).map_err(io_error)?;
        writeln!(self.records, "{line}").map_err(io_error)?;
        self.count += 1;
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Writes the header (with the record count filled in) and the records to the path; returns
    /// the file's size in bytes.
    pub fn finish(mut self, mut header: Header) -> Result<u64, ReplayError> {
        header.records = self.count;
        self.records.flush().map_err(io_error)?;
        let partial = sibling(&self.path, "partial");
        let mut out = BufWriter::new(File::create(&partial).map_err(io_error)?);
        serde_json::to_writer(&mut out, &header).map_err(io_error)?;
        out.write_all(b"\n").map_err(io_error)?;
        std::io::copy(&mut File::open(&self.scratch).map_err(io_error)?, &mut out)
            .map_err(io_error)?;
        out.into_inner()
            .map_err(|e| io_error(e.into_error()))?
            .sync_all()
            .map_err(io_error)?;
        std::fs::rename(&partial, &self.path).map_err(io_error)?;
        let _ = std::fs::remove_file(&self.scratch);
        Ok(std::fs::metadata(&self.path).map_err(io_error)?.len())
    }
}

impl Drop for DumpWriter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.scratch);
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
}

fn io_error(e: impl std::fmt::Display) -> ReplayError {
    ReplayError::Failed(format!("writing the dump failed: {e}"))
}

/// Reads a dump: the header on opening, then one record at a time. A file that is missing, not
/// a dump, garbled or cut short is bad input naming the file and the line.
pub struct DumpReader {
    path: PathBuf,
    lines: std::io::Lines<BufReader<File>>,
    line: u64,
    read: u64,
    pub header: Header,
}

impl DumpReader {
    pub fn open(path: &Path) -> Result<Self, ReplayError> {
        let file = File::open(path).map_err(|e| {
            ReplayError::BadInput(format!("cannot read the dump {}: {e}", path.display()))
        })?;
        let mut lines = BufReader::new(file).lines();
        let bad = |why: String| ReplayError::BadInput(format!("{}: {why}", path.display()));
        let first = lines
            .next()
            .ok_or_else(|| bad("empty file, not a choreo dump".into()))?
            .map_err(|e| bad(format!("line 1: {e}")))?;
        let header: Header = serde_json::from_str(&first)
            .map_err(|e| bad(format!("line 1 is not a choreo dump header: {e}")))?;
        if header.format != FORMAT {
            return Err(bad(format!("format `{}`, not `{FORMAT}`", header.format)));
        }
        if header.version != VERSION {
            return Err(bad(format!(
                "dump version {} (this choreo reads version {VERSION})",
                header.version
            )));
        }
        Ok(Self {
            path: path.to_owned(),
            lines,
            line: 1,
            read: 0,
            header,
        })
    }

    /// The next record; `None` at the end, after checking that every record was there.
    pub fn next_record(&mut self) -> Result<Option<Record>, ReplayError> {
        let Some(text) = self.lines.next() else {
            if self.read != self.header.records {
                return Err(ReplayError::BadInput(format!(
                    "{}: cut short: {} record(s) of the {} its header announces",
                    self.path.display(),
                    self.read,
                    self.header.records
                )));
            }
            return Ok(None);
        };
        self.line += 1;
        let bad = |why: String| {
            ReplayError::BadInput(format!("{} line {}: {why}", self.path.display(), self.line))
        };
        let text = text.map_err(|e| bad(e.to_string()))?;
        let line: Line =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a record line: {e}")))?;
        let record = line.into_record().map_err(bad)?;
        self.read += 1;
        if self.read > self.header.records {
            return Err(bad(format!(
                "more records than the {} the header announces",
                self.header.records
            )));
        }
        Ok(Some(record))
    }

    /// Every remaining record.
    pub fn read_all(mut self) -> Result<(Header, Vec<Record>), ReplayError> {
        let mut records = Vec::new();
        while let Some(record) = self.next_record()? {
            records.push(record);
        }
        Ok((self.header, records))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &[u8], value: &[u8]) -> Record {
        Record {
            topic: "t".into(),
            partition: 2,
            offset: 7,
            timestamp_ms: Some(1_700_000_000_000),
            key: Some(key.to_vec()),
            headers: vec![
                (
                    "event_type".into(),
                    Some(b"shop.order.OrderPlaced".to_vec()),
                ),
                ("odd".into(), Some(vec![0xff, 0x00])),
                ("none".into(), None),
            ],
            value: Some(value.to_vec()),
        }
    }

    #[test]
    fn a_record_survives_its_line() {
        let original = record(&[0xfe, 0x01], &[0, 0, 0, 0, 7, 2, 4]);
        let text = serde_json::to_string(&Line::from_record(&original)).unwrap();
        assert!(text.contains(r#""key":{"base64":"/gE="}"#), "{text}");
        assert!(
            text.contains(r#"["event_type","shop.order.OrderPlaced"]"#),
            "{text}"
        );
        let line: Line = serde_json::from_str(&text).unwrap();
        assert_eq!(line.into_record().unwrap(), original);
    }

    #[test]
    fn text_keys_stay_readable() {
        let text = serde_json::to_string(&Line::from_record(&record(b"order-1", b"x"))).unwrap();
        assert!(text.contains(r#""key":"order-1""#), "{text}");
    }

    #[test]
    fn a_dump_is_read_back_and_a_cut_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("dump-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.jsonl");
        let mut writer = DumpWriter::create(&path).unwrap();
        writer.write(&record(b"a", b"1")).unwrap();
        writer.write(&record(b"b", b"2")).unwrap();
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            created_at: "now".into(),
            source: Source {
                brokers: "b".into(),
                registry: None,
            },
            topics: vec![],
            schemas: vec![],
            records: 0,
        };
        writer.finish(header).unwrap();
        let (header, records) = DumpReader::open(&path).unwrap().read_all().unwrap();
        assert_eq!(header.records, 2);
        assert_eq!(records[1].key.as_deref(), Some(&b"b"[..]));

        let text = std::fs::read_to_string(&path).unwrap();
        let cut: Vec<&str> = text.lines().take(2).collect();
        std::fs::write(&path, cut.join("\n")).unwrap();
        let Err(ReplayError::BadInput(why)) = DumpReader::open(&path).unwrap().read_all() else {
            panic!("a cut dump must be bad input");
        };
        assert!(why.contains("cut short"), "{why}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
