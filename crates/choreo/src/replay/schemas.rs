//! A dump's schemas in another registry: each schema id the records use is looked up (or else
//! registered) under `<target topic>-<record>` in the target registry, giving the id to rewrite
//! the values with. `choreo replay load` and a service's `replay` both need it; nothing else of
//! the registry's API lives here.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use schema_registry_converter::async_impl::schema_registry::{post_schema, SrSettings};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

use super::format::Header;
use super::ReplayError;
use crate::avro::registry::{self, describe, RegistryFailure};
use crate::RegistryConfig;

/// The target registry's id of every `(source topic, source schema id)` in `used`, registering
/// the header's schema where the target has none; `target` names the topic a source topic's
/// records go to. A schema the registry refuses as incompatible is refused (exit 3).
pub async fn register(
    registry: &RegistryConfig,
    timeout: Duration,
    header: &Header,
    used: &BTreeSet<(String, u32)>,
    target: &dyn Fn(&str) -> String,
) -> Result<HashMap<(String, u32), u32>, ReplayError> {
    let settings = registry::settings(registry, timeout).map_err(|e| {
        ReplayError::Failed(format!(
            "the schema registry at {} is unusable: {}",
            registry.url,
            describe(&e)
        ))
    })?;
    let mut ids = HashMap::new();
    for (topic, id) in used {
        let prefix = format!("{topic}-");
        let entry = header
            .schemas
            .iter()
            .find(|s| s.id == *id && s.subject.starts_with(&prefix))
            .or_else(|| header.schemas.iter().find(|s| s.id == *id))
            .ok_or_else(|| {
                ReplayError::BadInput(format!("the dump's header does not list schema id {id}"))
            })?;
        let record = entry.record_name().map_err(ReplayError::BadInput)?;
        let subject = crate::avro::subject(&target(topic), &record);
        let new = match lookup(&settings, &registry.url, &subject, &entry.schema).await? {
            Some(found) => found,
            None => {
                let supplied = SuppliedSchema::new(
                    Some(record.clone()),
                    SchemaType::Avro,
                    entry.schema.clone(),
                );
                post_schema(&settings, subject.clone(), supplied)
                    .await
                    .map(|registered| registered.id)
                    .map_err(|e| failure(&registry.url, &subject, &e))?
            }
        };
        ids.insert((topic.clone(), *id), new);
    }
    Ok(ids)
}

/// The id of exactly this schema text under `subject`, if registered there.
async fn lookup(
    settings: &SrSettings,
    url: &str,
    subject: &str,
    schema: &str,
) -> Result<Option<u32>, ReplayError> {
    registry::lookup(settings, subject, schema)
        .await
        .map_err(|e| failure(url, subject, &e))
}

/// A refusal as incompatible (409) is refused; anything else failed, the registry being away
/// (no answer, 5xx, no answer of its own) told apart from its refusing the call.
fn failure(url: &str, subject: &str, error: &SRCError) -> ReplayError {
    let detail = describe(error);
    match RegistryFailure::of(error) {
        RegistryFailure::Answered(409) => ReplayError::Refused(format!(
            "the registry refused the schema for {subject} as incompatible: {detail}"
        )),
        RegistryFailure::Answered(code) if code < 500 || (1000..50000).contains(&code) => {
            ReplayError::Failed(format!("the registry failed on {subject}: {detail}"))
        }
        _ => ReplayError::Failed(format!(
            "the schema registry at {url} is unreachable or failing: {detail}"
        )),
    }
}
