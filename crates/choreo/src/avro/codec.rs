//! Encoding and decoding typed events with schema ids from the registry, cached.
//!
//! The first encode of a type on a topic looks its schema's id up (one registry call), registers
//! it when the registry has no such schema under the subject (one more call; only a user allowed
//! to write may: a service's read-only user is refused, and the operator registers with `choreo
//! schemas register`), and prepares a writer; the first decode of a schema id fetches the writer's schema (one call) and prepares a
//! reader for the target type: a direct one when writer and reader schemas are the same, a
//! resolving one (writer's schema to the reader's) when an older or newer producer wrote it.
//! After that, encoding and decoding are a map lookup plus the Avro work: no registry call and no
//! schema parse.
//!
//! Prepared schemas live as long as the process (they are leaked into `'static` so the prepared
//! writers and readers can borrow them): one per event type and one per writer schema id seen.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use schema_registry_converter::async_impl::schema_registry::{
    get_schema_by_id, post_schema, SrSettings,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

use super::registry::{self as registry_api, RegistryFailure};
use super::wire::{self, WireError};
use super::{normalize_schema, subject, Event};
use crate::config::RegistryConfig;

/// Why an event could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not a Confluent-framed value (garbage, JSON, another serializer): permanent.
    #[error("not in the Confluent wire format: {0}")]
    NotWireFormat(#[from] WireError),
    /// The registry does not know the id in the header: permanent.
    #[error("schema id {id} is not in the registry")]
    UnknownSchemaId { id: u32 },
    /// The registry could not be reached or failed on its side: retry later.
    #[error("the schema registry is unreachable or failing, try again: {detail}")]
    RegistryUnavailable { detail: String },
    /// The registry refused to register a schema (for example, incompatible with the subject).
    #[error("the registry refused the schema for {subject}: {detail}")]
    Rejected { subject: String, detail: String },
    /// The writer's schema cannot be read as the requested type.
    #[error("schema mismatch: {found} (schema id {id}) cannot be read as {expected}: {detail}")]
    SchemaMismatch {
        id: u32,
        expected: String,
        found: String,
        detail: String,
    },
    /// The datum does not decode with the schema its header names.
    #[error("malformed Avro datum for schema id {id}: {detail}")]
    Malformed { id: u32, detail: String },
    /// The value does not fit its own schema, or the schema itself is invalid.
    #[error("cannot encode {record}: {detail}")]
    Encode { record: String, detail: String },
}

impl CodecError {
    /// True when trying again later may succeed; false when the message can never be processed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CodecError::RegistryUnavailable { .. })
    }
}

/// Encodes and decodes events; cheap to share behind an `Arc`.
pub struct Codec {
    settings: SrSettings,
    writers: RwLock<HashMap<TypeId, WritersByTopic>>,
    readers: RwLock<HashMap<(TypeId, u32), Arc<PreparedReader>>>,
    generic_readers: RwLock<HashMap<u32, Arc<PreparedReader>>>,
    writer_schemas: RwLock<HashMap<u32, &'static Schema>>,
    own_schemas: RwLock<HashMap<TypeId, &'static Schema>>,
    registry_calls: AtomicU64,
}

/// A type's prepared writers, one per topic (the subject, and so the id, depends on the topic).
type WritersByTopic = HashMap<Box<str>, Arc<PreparedWriter>>;

struct PreparedWriter {
    header: [u8; wire::HEADER_LEN],
    writer: GenericDatumWriter<'static>,
}

enum PreparedReader {
    /// The writer's schema is the reader's: deserialize straight from the bytes.
    Direct {
        name: String,
        reader: GenericDatumReader<'static>,
    },
    /// Another version wrote it: decode with the writer's schema, resolve to the reader's.
    Resolving { reader: GenericDatumReader<'static> },
}

impl Codec {
    /// A codec for the registry at `registry` (the Confluent API base URL).
    pub fn new(registry: &RegistryConfig) -> Result<Self, CodecError> {
        let settings = registry_api::settings(registry, Duration::from_secs(10)).map_err(|e| {
            CodecError::RegistryUnavailable {
                detail: e.to_string(),
            }
        })?;
        Ok(Self {
            settings,
            writers: RwLock::default(),
            readers: RwLock::default(),
            generic_readers: RwLock::default(),
            writer_schemas: RwLock::default(),
            own_schemas: RwLock::default(),
            registry_calls: AtomicU64::new(0),
        })
    }

    /// How many requests this codec has sent to the registry so far.
    pub fn registry_calls(&self) -> u64 {
        self.registry_calls.load(Ordering::Relaxed)
    }

    /// Encodes `event` for its own topic ([`Event::TOPIC`]).
    pub async fn encode<E: Event>(&self, event: &E) -> Result<Vec<u8>, CodecError> {
        self.encode_for(E::TOPIC, event).await
    }

    /// Encodes `event` for `topic`, registering its schema under `<topic>-<record>` the first time.
    pub async fn encode_for<E: Event>(
        &self,
        topic: &str,
        event: &E,
    ) -> Result<Vec<u8>, CodecError> {
        let writer = match self.cached_writer::<E>(topic) {
            Some(writer) => writer,
            None => self.prepare_writer::<E>(topic).await?,
        };
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&writer.header);
        writer
            .writer
            .write_ser(&mut out, event)
            .map_err(|e| CodecError::Encode {
                record: E::NAME.into(),
                detail: e.to_string(),
            })?;
        Ok(out)
    }

    /// Decodes a framed value as `E`, resolving the writer's schema to `E`'s when they differ.
    pub async fn decode<E: Event>(&self, bytes: &[u8]) -> Result<E, CodecError> {
        let (id, mut datum) = wire::split(bytes)?;
        let key = (TypeId::of::<E>(), id);
        let cached = self.readers.read().expect("codec lock").get(&key).cloned();
        let reader = match cached {
            Some(reader) => reader,
            None => {
                let reader = Arc::new(self.prepare_reader::<E>(id).await?);
                self.readers
                    .write()
                    .expect("codec lock")
                    .insert(key, reader.clone());
                reader
            }
        };
        let event = match &*reader {
            PreparedReader::Direct { reader, .. } => reader
                .read_deser::<E>(&mut datum)
                .map_err(|e| malformed(id, e))?,
            PreparedReader::Resolving { reader, .. } => {
                let value = reader
                    .read_value(&mut datum)
                    .map_err(|e| malformed(id, e))?;
                apache_avro::from_value::<E>(&value).map_err(|e| malformed(id, e))?
            }
        };
        ensure_consumed(id, datum)?;
        Ok(event)
    }

    /// Decodes a framed value with its writer's schema alone, for tools that do not know the
    /// type: the record's full name and its generic value.
    pub async fn decode_any(&self, bytes: &[u8]) -> Result<(String, Value), CodecError> {
        let (id, mut datum) = wire::split(bytes)?;
        let cached = self
            .generic_readers
            .read()
            .expect("codec lock")
            .get(&id)
            .cloned();
        let reader = match cached {
            Some(reader) => reader,
            None => {
                let schema = self.writer_schema(id).await?;
                let reader = GenericDatumReader::builder(schema)
                    .build()
                    .map_err(|e| malformed(id, e))?;
                let name = full_name(schema);
                let reader = Arc::new(PreparedReader::Direct { name, reader });
                self.generic_readers
                    .write()
                    .expect("codec lock")
                    .insert(id, reader.clone());
                reader
            }
        };
        let PreparedReader::Direct { name, reader, .. } = &*reader else {
            unreachable!("generic readers are direct")
        };
        let value = reader
            .read_value(&mut datum)
            .map_err(|e| malformed(id, e))?;
        ensure_consumed(id, datum)?;
        Ok((name.clone(), value))
    }

    fn cached_writer<E: Event>(&self, topic: &str) -> Option<Arc<PreparedWriter>> {
        let writers = self.writers.read().expect("codec lock");
        writers.get(&TypeId::of::<E>())?.get(topic).cloned()
    }

    async fn prepare_writer<E: Event>(
        &self,
        topic: &str,
    ) -> Result<Arc<PreparedWriter>, CodecError> {
        let schema = self.own_schema::<E>()?;
        let subject = subject(topic, E::NAME);
        let text = normalize_schema(E::SCHEMA).map_err(|e| encode_error::<E>(e))?;
        let refused = |subject: &str, e: &SRCError| match classify(e) {
            Failure::Refused => CodecError::Rejected {
                subject: subject.to_owned(),
                detail: describe(e),
            },
            Failure::NotFound | Failure::Unavailable => CodecError::RegistryUnavailable {
                detail: describe(e),
            },
        };
        self.registry_calls.fetch_add(1, Ordering::Relaxed);
        let found = registry_api::lookup(&self.settings, &subject, &text)
            .await
            .map_err(|e| refused(&subject, &e))?;
        let id = match found {
            Some(id) => id,
            None => {
                self.registry_calls.fetch_add(1, Ordering::Relaxed);
                let supplied =
                    SuppliedSchema::new(Some(E::NAME.to_owned()), SchemaType::Avro, text);
                post_schema(&self.settings, subject.clone(), supplied)
                    .await
                    .map_err(|e| match refused(&subject, &e) {
                        CodecError::RegistryUnavailable { detail } => {
                            CodecError::RegistryUnavailable {
                                detail: format!(
                                    "{subject} has no such schema and registering it failed \
                                     (a read-only user may not: `choreo schemas register` does): \
                                     {detail}"
                                ),
                            }
                        }
                        other => other,
                    })?
                    .id
            }
        };
        let writer = GenericDatumWriter::builder(schema)
            .build()
            .map_err(|e| encode_error::<E>(e))?;
        let prepared = Arc::new(PreparedWriter {
            header: wire::header(id),
            writer,
        });
        self.writers
            .write()
            .expect("codec lock")
            .entry(TypeId::of::<E>())
            .or_default()
            .insert(topic.into(), prepared.clone());
        Ok(prepared)
    }

    async fn prepare_reader<E: Event>(&self, id: u32) -> Result<PreparedReader, CodecError> {
        let writer = self.writer_schema(id).await?;
        let reader = self.own_schema::<E>()?;
        let found = full_name(writer);
        let mismatch = |detail: String| CodecError::SchemaMismatch {
            id,
            expected: E::NAME.into(),
            found: found.clone(),
            detail,
        };
        if found != E::NAME {
            return Err(mismatch("another record type".into()));
        }
        if writer.canonical_form() == reader.canonical_form() {
            let prepared = GenericDatumReader::builder(writer)
                .build()
                .map_err(|e| malformed(id, e))?;
            return Ok(PreparedReader::Direct {
                name: found,
                reader: prepared,
            });
        }
        SchemaCompatibility::can_read(writer, reader).map_err(|e| mismatch(e.to_string()))?;
        let prepared = GenericDatumReader::builder(writer)
            .reader_schema(reader)
            .build()
            .map_err(|e| mismatch(e.to_string()))?;
        Ok(PreparedReader::Resolving { reader: prepared })
    }

    /// `E`'s own schema, parsed once.
    fn own_schema<E: Event>(&self) -> Result<&'static Schema, CodecError> {
        if let Some(schema) = self
            .own_schemas
            .read()
            .expect("codec lock")
            .get(&TypeId::of::<E>())
        {
            return Ok(schema);
        }
        let schema = Schema::parse_str(E::SCHEMA).map_err(|e| encode_error::<E>(e))?;
        let schema: &'static Schema = Box::leak(Box::new(schema));
        Ok(*self
            .own_schemas
            .write()
            .expect("codec lock")
            .entry(TypeId::of::<E>())
            .or_insert(schema))
    }

    /// The schema registered under `id`, fetched and parsed once.
    async fn writer_schema(&self, id: u32) -> Result<&'static Schema, CodecError> {
        if let Some(schema) = self.writer_schemas.read().expect("codec lock").get(&id) {
            return Ok(schema);
        }
        self.registry_calls.fetch_add(1, Ordering::Relaxed);
        let registered =
            get_schema_by_id(id, &self.settings)
                .await
                .map_err(|e| match classify(&e) {
                    Failure::NotFound => CodecError::UnknownSchemaId { id },
                    Failure::Unavailable | Failure::Refused => CodecError::RegistryUnavailable {
                        detail: describe(&e),
                    },
                })?;
        let schema = Schema::parse_str(&registered.schema).map_err(|e| CodecError::Malformed {
            id,
            detail: format!("the registry's schema does not parse: {e}"),
        })?;
        let schema: &'static Schema = Box::leak(Box::new(schema));
        Ok(*self
            .writer_schemas
            .write()
            .expect("codec lock")
            .entry(id)
            .or_insert(schema))
    }
}

enum Failure {
    NotFound,
    Unavailable,
    Refused,
}

/// Confluent's error code for "schema not found" (`GET /schemas/ids/{id}` on an id it never
/// issued); Apicurio's ccompat API answers the same.
const SCHEMA_NOT_FOUND: u32 = 40403;
/// Codes for a registration the registry refuses on its merits: incompatible with the subject
/// (409) or not a valid schema (42201).
const INCOMPATIBLE: u32 = 409;
const INVALID_SCHEMA: u32 = 42201;

/// Only a definite answer is permanent: the registry's own error body saying the schema id does
/// not exist (reads) or that it refuses the schema itself (registrations). Anything else (a
/// refused connection, a timeout, 5xx, but also 401/403/429, a 404 from a wrong path or a
/// registry still starting, a body that is not the registry's) may pass, and is retried.
fn classify(error: &SRCError) -> Failure {
    match RegistryFailure::of(error) {
        RegistryFailure::Answered(SCHEMA_NOT_FOUND) => Failure::NotFound,
        RegistryFailure::Answered(INCOMPATIBLE | INVALID_SCHEMA) => Failure::Refused,
        _ => Failure::Unavailable,
    }
}

fn describe(error: &SRCError) -> String {
    match &error.cause {
        Some(cause) => format!("{}: {cause}", error.error),
        None => error.error.clone(),
    }
}

fn full_name(schema: &Schema) -> String {
    schema
        .name()
        .map(|n| n.fullname(None))
        .unwrap_or_else(|| "(not a named type)".into())
}

fn malformed(id: u32, error: impl std::fmt::Display) -> CodecError {
    CodecError::Malformed {
        id,
        detail: error.to_string(),
    }
}

fn encode_error<E: Event>(error: impl std::fmt::Display) -> CodecError {
    CodecError::Encode {
        record: E::NAME.into(),
        detail: error.to_string(),
    }
}

fn ensure_consumed(id: u32, rest: &[u8]) -> Result<(), CodecError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(CodecError::Malformed {
            id,
            detail: format!("{} byte(s) left over after the datum", rest.len()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{registry_answer as answered, registry_unreachable as unreachable};

    #[test]
    fn a_codec_can_be_shared_between_tasks() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<Codec>();
    }

    #[test]
    fn only_the_registrys_own_schema_not_found_is_permanent() {
        let missing = answered(
            404,
            r#"{"error_code":40403,"message":"Schema 9 not found"}"#,
        );
        assert!(matches!(classify(&missing), Failure::NotFound));
        // A 404 from a wrong path or a proxy has no such body: it is not an answer about the id.
        let wrong_path = answered(404, "<html>Not Found</html>");
        assert!(matches!(classify(&wrong_path), Failure::Unavailable));
        for (status, body) in [
            (401, r#"{"error_code":401,"message":"Unauthorized"}"#),
            (403, r#"{"error_code":40301,"message":"Forbidden"}"#),
            (429, "too many requests"),
            (500, r#"{"error_code":50001,"message":"store error"}"#),
            (
                503,
                r#"{"error_code":40403,"message":"a proxy's odd body"}"#,
            ),
        ] {
            assert!(
                matches!(classify(&answered(status, body)), Failure::Unavailable),
                "status {status} must be retried"
            );
        }
        assert!(matches!(classify(&unreachable()), Failure::Unavailable));
        let incompatible = answered(409, r#"{"error_code":409,"message":"incompatible"}"#);
        assert!(matches!(classify(&incompatible), Failure::Refused));
        let invalid = answered(422, r#"{"error_code":42201,"message":"invalid schema"}"#);
        assert!(matches!(classify(&invalid), Failure::Refused));
    }

    #[test]
    fn only_an_unreachable_registry_is_worth_a_retry() {
        let retryable = CodecError::RegistryUnavailable {
            detail: "connection refused".into(),
        };
        assert!(retryable.is_retryable());
        assert!(!CodecError::UnknownSchemaId { id: 7 }.is_retryable());
        assert!(!CodecError::NotWireFormat(WireError::BadMagic { found: 1 }).is_retryable());
    }
}
