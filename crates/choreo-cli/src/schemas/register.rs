//! `schemas register`: puts every subject of the catalog in the registry, idempotently.
//!
//! For each subject: set its compatibility level to BACKWARD_TRANSITIVE, look the normalized
//! schema up (already there: same id, nothing added), else register it. A subject the registry
//! refuses as incompatible is reported with the reasons found against its registered versions,
//! and the others are still registered: each subject stands on its own.

use std::fmt;

use apache_avro::Schema;

use super::catalog::Catalog;
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
/// a refused subject is an [`Outcome::Refused`] line.
pub async fn register(catalog: &Catalog, registry: &Registry) -> Result<Report, RegistryError> {
    let mut lines = Vec::with_capacity(catalog.subjects.len());
    for subject in &catalog.subjects {
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
        lines.push(Line { label, outcome });
    }
    Ok(Report {
        url: registry.url().to_owned(),
        lines,
    })
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
