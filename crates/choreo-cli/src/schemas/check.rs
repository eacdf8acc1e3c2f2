//! `schemas check`: can a consumer on each local schema read every event written before?
//!
//! Online ([`online`]), each subject is checked against every version the registry holds: the
//! registry's own verdict (`POST /compatibility/subjects/{s}/versions`, under the subject's level)
//! and the same BACKWARD_TRANSITIVE rule applied here to the versions it returns, which also gives
//! the reasons. Offline ([`offline`]), each schema file is checked against every distinct version
//! of it in git history up to a ref; no registry is asked. Both produce a [`Report`]; deciding the
//! exit code is the caller's.

use std::fmt;

use apache_avro::Schema;

use super::catalog::{Catalog, SchemaFile};
use super::compat::check_transitive;
use super::history::{self, GitError, Repo};
use super::registry::{Registry, RegistryError, LEVEL};

/// What the check found for one subject or file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Nothing to be compatible with yet.
    New,
    /// Exactly this schema is registered already.
    Unchanged { version: u32, id: u32 },
    /// Reads every earlier version.
    Compatible { earlier: usize },
    /// Cannot read some earlier version: one readable reason a line.
    Breaks(Vec<String>),
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The subject and its file (online), or the file and its record (offline).
    pub label: String,
    pub status: Status,
    /// Things worth knowing that do not decide the outcome.
    pub notes: Vec<String>,
}

/// Every entry of one check, with a heading that says what was checked against what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub heading: String,
    pub entries: Vec<Entry>,
}

impl Report {
    /// One line per break: `<label>: <reason>`.
    pub fn breaks(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for entry in &self.entries {
            if let Status::Breaks(reasons) = &entry.status {
                lines.extend(reasons.iter().map(|r| format!("{}: {r}", entry.label)));
            }
        }
        lines
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.heading)?;
        let (mut new, mut same, mut compatible, mut breaking) = (0, 0, 0, 0);
        for entry in &self.entries {
            let label = &entry.label;
            match &entry.status {
                Status::New => {
                    new += 1;
                    writeln!(f, "  + {label}: new, nothing earlier to be compatible with")?;
                }
                Status::Unchanged { version, id } => {
                    same += 1;
                    writeln!(
                        f,
                        "  = {label}: unchanged, registered as version {version} (id {id})"
                    )?;
                }
                Status::Compatible { earlier } => {
                    compatible += 1;
                    writeln!(
                        f,
                        "  ~ {label}: compatible with {earlier} earlier version(s)"
                    )?;
                }
                Status::Breaks(reasons) => {
                    breaking += 1;
                    writeln!(f, "  ! {label}: breaks {LEVEL}")?;
                    for reason in reasons {
                        writeln!(f, "      {reason}")?;
                    }
                }
            }
            for note in &entry.notes {
                writeln!(f, "      note: {note}")?;
            }
        }
        write!(
            f,
            "Check: {new} new, {same} unchanged, {compatible} compatible, {breaking} breaking."
        )
    }
}

/// Checks every subject of `catalog` against the versions `registry` holds.
pub async fn online(catalog: &Catalog, registry: &Registry) -> Result<Report, RegistryError> {
    let mut entries = Vec::with_capacity(catalog.subjects.len());
    for subject in &catalog.subjects {
        let file = catalog.schema_of(subject);
        let label = format!("{} ({})", subject.name, file.path.display());
        let registered = registry.versions(&subject.name).await?;
        if registered.is_empty() {
            entries.push(Entry {
                label,
                status: Status::New,
                notes: Vec::new(),
            });
            continue;
        }
        let verdict = registry
            .is_compatible(&subject.name, &file.normalized)
            .await?;
        let level = registry.level(&subject.name).await?;
        let mut notes = Vec::new();
        if level.as_deref() != Some(LEVEL) {
            notes.push(format!(
                "the registry checks this subject under {}, not {LEVEL}; `choreo schemas register` \
                 sets it",
                level.as_deref().unwrap_or("no level")
            ));
        }
        let mut earlier = Vec::with_capacity(registered.len());
        for version in &registered {
            match Schema::parse_str(&version.schema) {
                Ok(schema) => earlier.push((format!("version {}", version.version), schema)),
                Err(e) => notes.push(format!(
                    "registered version {} does not parse here and was skipped: {e}",
                    version.version
                )),
            }
        }
        let mut reasons = check_transitive(&earlier, &file.schema);
        if verdict == Some(false) && reasons.is_empty() {
            reasons.push(format!(
                "the registry calls it incompatible under {} but gives no reason, and none was \
                 found here",
                level.as_deref().unwrap_or("its default level")
            ));
        }
        let status = if !reasons.is_empty() {
            Status::Breaks(reasons)
        } else if let Some(same) = registered.iter().find(|v| same_text(&v.schema, file)) {
            Status::Unchanged {
                version: same.version,
                id: same.id,
            }
        } else {
            Status::Compatible {
                earlier: registered.len(),
            }
        };
        entries.push(Entry {
            label,
            status,
            notes,
        });
    }
    Ok(Report {
        heading: format!(
            "schemas check: {} subject(s) against the registry at {}",
            catalog.subjects.len(),
            registry.url()
        ),
        entries,
    })
}

/// Apicurio answers with its own key order, not the text it was sent: compare normalized forms.
fn same_text(registered: &str, file: &SchemaFile) -> bool {
    choreo::avro::normalize_schema(registered).is_ok_and(|text| text == file.normalized)
}

/// Checks every schema file of `catalog` against its versions in git history up to `reference`.
pub fn offline(catalog: &Catalog, repo: &Repo, reference: &str) -> Result<Report, GitError> {
    let commit = repo.resolve(reference)?;
    let mut entries = Vec::with_capacity(catalog.files.len());
    for file in &catalog.files {
        entries.push(offline_entry(file, repo, &commit)?);
    }
    Ok(Report {
        heading: format!(
            "schemas check: {} schema file(s) against git history up to {reference} ({})",
            catalog.files.len(),
            history::short(&commit)
        ),
        entries,
    })
}

fn offline_entry(file: &SchemaFile, repo: &Repo, commit: &str) -> Result<Entry, GitError> {
    let label = format!("{} ({})", file.path.display(), file.full_name);
    let path = repo.path_of(&file.path)?;
    if !repo.exists_at(commit, &path)? {
        return Ok(Entry {
            label,
            status: Status::New,
            notes: Vec::new(),
        });
    }
    let mut notes = Vec::new();
    let mut earlier = Vec::new();
    for version in repo.versions(commit, &path)? {
        let name = format!("commit {}", history::short(&version.commit));
        match Schema::parse_str(&version.text) {
            Ok(schema) => earlier.push((name, schema)),
            Err(e) => notes.push(format!(
                "the version of {name} does not parse and was skipped: {e}"
            )),
        }
    }
    let reasons = check_transitive(&earlier, &file.schema);
    let status = if reasons.is_empty() {
        Status::Compatible {
            earlier: earlier.len(),
        }
    } else {
        Status::Breaks(reasons)
    };
    Ok(Entry {
        label,
        status,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(label: &str, status: Status) -> Entry {
        Entry {
            label: label.into(),
            status,
            notes: Vec::new(),
        }
    }

    #[test]
    fn the_report_counts_each_status_and_lists_every_reason() {
        let report = Report {
            heading: "schemas check: 3 subject(s)".into(),
            entries: vec![
                entry("a", Status::New),
                entry("b", Status::Compatible { earlier: 2 }),
                entry("c", Status::Breaks(vec!["field `x` ...".into()])),
            ],
        };
        let text = report.to_string();
        assert!(text.contains("  ! c: breaks BACKWARD_TRANSITIVE\n      field `x` ..."));
        assert!(text.ends_with("Check: 1 new, 0 unchanged, 1 compatible, 1 breaking."));
        assert_eq!(report.breaks(), ["c: field `x` ..."]);
    }
}
