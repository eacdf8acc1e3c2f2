//! `schemas register`: puts every subject of the catalog in the registry, idempotently.
//!
//! For each subject: set its compatibility level to BACKWARD_TRANSITIVE, look the normalized
//! schema up (already there: same id, nothing added), else register it. A subject the registry
//! refuses as incompatible is reported with the reasons found against its registered versions,
//! and the others are still registered: each subject stands on its own.

use std::fmt;

use apache_avro::Schema;
use backon::Retryable as _;

use super::catalog::{Catalog, Subject};
use super::compat::check_transitive;
use super::registry::{Registry, RegistryError, LEVEL};

/// What happened to one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Registered now, as a new version.
    New { id: u32 },
    /// Exactly this schema was registered already.
    AlreadyThere { id: u32, version: u32 },
    /// The registry refused it: one readable reason a line.
    Refused(Vec<String>),
}

/// One subject and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The subject and its file.
    pub label: String,
    pub outcome: Outcome,
}

/// Every subject's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub url: String,
    pub lines: Vec<Line>,
}

impl Report {
    /// One line per refusal: `<label>: <reason>`.
    pub fn refusals(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for line in &self.lines {
            if let Outcome::Refused(reasons) = &line.outcome {
                lines.extend(reasons.iter().map(|r| format!("{}: {r}", line.label)));
            }
        }
        lines
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "schemas register: {} subject(s) at {}",
            self.lines.len(),
            self.url
        )?;
        let (mut new, mut there, mut refused) = (0, 0, 0);
        for Line { label, outcome } in &self.lines {
            match outcome {
                Outcome::New { id } => {
                    new += 1;
                    writeln!(f, "  + {label}: registered as id {id} (new)")?;
                }
                Outcome::AlreadyThere { id, version } => {
                    there += 1;
                    writeln!(
                        f,
                        "  = {label}: already registered as id {id} (version {version})"
                    )?;
                }
                Outcome::Refused(reasons) => {
                    refused += 1;
                    writeln!(f, "  ! {label}: refused")?;
                    for reason in reasons {
                        writeln!(f, "      {reason}")?;
                    }
                }
            }
        }
        write!(
            f,
            "Registered: {new} new, {there} already there, {refused} refused; every subject is \
             checked under {LEVEL}."
        )
    }
}

/// Registers every subject of `catalog`. Fails only when the registry cannot be used at all;
/// a refused subject is an [`Outcome::Refused`] line. A subject whose calls meet an unreachable
/// or failing registry (a dropped keep-alive connection, a registry still starting) is tried
/// again, up to [`ATTEMPTS`] times with backoff: every call is idempotent.
pub async fn register(catalog: &Catalog, registry: &Registry) -> Result<Report, RegistryError> {
    let backoff = choreo::resilience::Backoff::default();
    let mut lines = Vec::with_capacity(catalog.subjects.len());
    for subject in &catalog.subjects {
        let line = (|| register_one(catalog, registry, subject))
            .retry(backoff.delays().take(ATTEMPTS as usize - 1))
            .sleep(tokio::time::sleep)
            .when(|e| matches!(e, RegistryError::Unavailable { .. }))
            .notify(|e, wait| {
                let detail = match e {
                    RegistryError::Unavailable { detail, .. } => detail.as_str(),
                    _ => "",
                };
                eprintln!(
                    "schemas register: {}: the registry failed ({detail}); again in {wait:?}",
                    subject.name
                );
            })
            .await?;
        lines.push(line);
    }
    Ok(Report {
        url: registry.url().to_owned(),
        lines,
    })
}

/// Calls per subject before an unreachable registry fails the command.
pub const ATTEMPTS: u32 = 5;

/// Sets `subject`'s level, then finds or registers its schema.
async fn register_one(
    catalog: &Catalog,
    registry: &Registry,
    subject: &Subject,
) -> Result<Line, RegistryError> {
    let file = catalog.schema_of(subject);
    let label = format!("{} ({})", subject.name, file.path.display());
    registry.set_level(&subject.name, LEVEL).await?;
    let outcome = match registry.lookup(&subject.name, &file.normalized).await? {
        Some((id, version)) => Outcome::AlreadyThere { id, version },
        None => match registry
            .register(&subject.name, &file.full_name, &file.normalized)
            .await
        {
            Ok(id) => Outcome::New { id },
            Err(RegistryError::Incompatible { detail, .. }) => {
                let mut reasons =
                    reasons_against_registry(registry, &subject.name, &file.schema).await?;
                reasons.push(format!("the registry says: {detail}"));
                Outcome::Refused(reasons)
            }
            Err(e) => return Err(e),
        },
    };
    Ok(Line { label, outcome })
}

/// Why `schema` cannot follow what `subject` holds, found here field by field.
async fn reasons_against_registry(
    registry: &Registry,
    subject: &str,
    schema: &Schema,
) -> Result<Vec<String>, RegistryError> {
    let earlier: Vec<(String, Schema)> = registry
        .versions(subject)
        .await?
        .into_iter()
        .filter_map(|v| {
            Some((
                format!("version {}", v.version),
                Schema::parse_str(&v.schema).ok()?,
            ))
        })
        .collect();
    Ok(check_transitive(&earlier, schema))
}
