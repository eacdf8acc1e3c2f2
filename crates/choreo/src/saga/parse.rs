//! Saga files: YAML into a checked [`Saga`]. Unknown fields are rejected, and every error names
//! the file, the field (dotted, `steps[1].after[0]`) and why, so that a bad file is fixed
//! without reading code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{Compensation, Deadline, End, Saga, Step};

/// A saga file that cannot be used: the file, the field and why.
pub type SagaError = crate::declared::FileError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSaga {
    name: String,
    #[serde(default)]
    description: String,
    start: String,
    deadline: Option<RawDeadline>,
    steps: Vec<RawStep>,
    ends: Vec<RawEnd>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeadline {
    default: String,
    config: Option<String>,
    ends_as: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    by: Option<String>,
    after: Vec<String>,
    outcomes: Vec<String>,
    waiting: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnd {
    name: String,
    when: Vec<String>,
    reason: Option<String>,
    #[serde(default)]
    compensations: Vec<RawCompensation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompensation {
    event: String,
    #[serde(default, rename = "where")]
    fields: BTreeMap<String, String>,
    after: Vec<String>,
    #[serde(default)]
    unless: Vec<String>,
    seen_as: Option<String>,
    missing: Option<String>,
}

/// Reads the sagas at `path`: one file, or every `*.yaml`/`*.yml` file of a folder in file name
/// order. Fails on the first bad file, on a folder with none, and on two sagas of one name.
pub fn load(path: &Path) -> Result<Vec<Saga>, SagaError> {
    let whole = SagaError::whole;
    if !path.exists() {
        return Err(whole(path, "no such saga file or folder".into()));
    }
    let files = if path.is_dir() {
        crate::declared::yaml_files(path, "sagas", "saga files")?
    } else {
        vec![path.to_owned()]
    };
    let mut sagas: Vec<Saga> = Vec::with_capacity(files.len());
    for file in &files {
        let text =
            std::fs::read_to_string(file).map_err(|e| whole(file, format!("cannot read: {e}")))?;
        let saga = Saga::parse(file, &text)?;
        if let Some(i) = sagas.iter().position(|s| s.name == saga.name) {
            return Err(SagaError {
                file: file.clone(),
                field: "name".into(),
                why: format!(
                    "saga `{}` is already declared in {}",
                    saga.name,
                    files[i].display()
                ),
            });
        }
        sagas.push(saga);
    }
    Ok(sagas)
}

impl Saga {
    /// Parses and checks one saga; `file` is only used in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Saga, SagaError> {
        let err = |field: &str, why: String| SagaError {
            file: file.to_owned(),
            field: field.into(),
            why,
        };
        let raw: RawSaga = serde_yaml_ng::from_str(text).map_err(|e| {
            let message = e.to_string();
            match message.split_once(": ") {
                Some((path, why)) if !path.contains(' ') => err(path, why.to_owned()),
                _ => err("", message),
            }
        })?;
        let text = |field: &str, value: &str| match value.trim() {
            "" => Err(err(field, "must not be empty".into())),
            _ => Ok(()),
        };
        text("name", &raw.name)?;
        event_name(&raw.start).map_err(|why| err("start", why))?;
        if raw.steps.is_empty() {
            return Err(err("steps", "must list at least one step".into()));
        }
        if raw.ends.is_empty() {
            return Err(err("ends", "must list at least one end".into()));
        }
        // The events a run can show: its start and the steps' outcomes.
        let known: BTreeSet<String> = std::iter::once(&raw.start)
            .chain(raw.steps.iter().flat_map(|s| s.outcomes.iter()))
            .cloned()
            .collect();
        let known_events = |field: &str, events: &[String], may_be_empty: bool| {
            if events.is_empty() && !may_be_empty {
                return Err(err(field, "must name at least one event".into()));
            }
            for (i, event) in events.iter().enumerate() {
                let field = format!("{field}[{i}]");
                event_name(event).map_err(|why| err(&field, why))?;
                if !known.contains(event) {
                    return Err(err(
                        &field,
                        format!("`{event}` is neither the start nor an outcome of a step"),
                    ));
                }
                if events[..i].contains(event) {
                    return Err(err(&field, format!("`{event}` is listed twice")));
                }
            }
            Ok(())
        };

        let mut steps = Vec::with_capacity(raw.steps.len());
        for (i, step) in raw.steps.into_iter().enumerate() {
            let field = |name: &str| format!("steps[{i}].{name}");
            text(&field("name"), &step.name)?;
            if steps.iter().any(|s: &Step| s.name == step.name) {
                return Err(err(
                    &field("name"),
                    format!("`{}` is listed twice", step.name),
                ));
            }
            known_events(&field("after"), &step.after, false)?;
            if step.outcomes.is_empty() {
                return Err(err(
                    &field("outcomes"),
                    "must name at least one event".into(),
                ));
            }
            for (j, outcome) in step.outcomes.iter().enumerate() {
                let field = format!("steps[{i}].outcomes[{j}]");
                event_name(outcome).map_err(|why| err(&field, why))?;
                if step.outcomes[..j].contains(outcome) {
                    return Err(err(&field, format!("`{outcome}` is listed twice")));
                }
            }
            if let Some(waiting) = &step.waiting {
                text(&field("waiting"), waiting)?;
            }
            if let Some(by) = &step.by {
                text(&field("by"), by)?;
            }
            steps.push(Step {
                waiting: step.waiting.unwrap_or_else(|| step.outcomes.join(" or ")),
                name: step.name,
                by: step.by,
                after: step.after,
                outcomes: step.outcomes,
            });
        }

        let mut ends = Vec::with_capacity(raw.ends.len());
        for (i, end) in raw.ends.into_iter().enumerate() {
            let field = |name: &str| format!("ends[{i}].{name}");
            text(&field("name"), &end.name)?;
            if ends.iter().any(|e: &End| e.name == end.name) {
                return Err(err(
                    &field("name"),
                    format!("`{}` is listed twice", end.name),
                ));
            }
            known_events(&field("when"), &end.when, false)?;
            if let Some(reason) = &end.reason {
                text(&field("reason"), reason)?;
            }
            let mut compensations = Vec::with_capacity(end.compensations.len());
            for (j, c) in end.compensations.into_iter().enumerate() {
                let field = |name: &str| format!("ends[{i}].compensations[{j}].{name}");
                event_name(&c.event).map_err(|why| err(&field("event"), why))?;
                for (name, value) in &c.fields {
                    text(&field(&format!("where.{name}")), value)?;
                }
                known_events(&field("after"), &c.after, false)?;
                known_events(&field("unless"), &c.unless, true)?;
                for (name, label) in [("seen_as", &c.seen_as), ("missing", &c.missing)] {
                    if let Some(label) = label {
                        text(&field(name), label)?;
                    }
                }
                compensations.push(Compensation {
                    seen_as: c.seen_as.unwrap_or_else(|| c.event.clone()),
                    missing: c.missing.unwrap_or_else(|| c.event.clone()),
                    event: c.event,
                    fields: c.fields,
                    after: c.after,
                    unless: c.unless,
                });
            }
            ends.push(End {
                name: end.name,
                when: end.when,
                reason: end.reason,
                compensations,
            });
        }

        let deadline = match raw.deadline {
            None => None,
            Some(d) => {
                let default = duration(&d.default).map_err(|why| err("deadline.default", why))?;
                if let Some(config) = &d.config {
                    text("deadline.config", config)?;
                }
                if let Some(end) = &d.ends_as {
                    if !ends.iter().any(|e| &e.name == end) {
                        return Err(err(
                            "deadline.ends_as",
                            format!("`{end}` is not one of the ends"),
                        ));
                    }
                }
                Some(Deadline {
                    default,
                    config: d.config,
                    ends_as: d.ends_as,
                })
            }
        };

        Ok(Saga {
            name: raw.name,
            description: raw.description,
            start: raw.start,
            deadline,
            steps,
            ends,
        })
    }
}

/// An event's short name: a letter or `_`, then letters, digits or `_`.
fn event_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not an event's short name (its record name without the namespace)"
        ))
    }
}

/// `500ms`, `30s`, `5m` or `2h`, more than zero.
fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("`{text}` is not a duration such as `500ms`, `30s`, `5m` or `2h`");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if duration.is_zero() {
        return Err(format!("`{text}` must be more than zero"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saga::TEST_SAGA as GOOD;

    fn parse(text: &str) -> Result<Saga, SagaError> {
        Saga::parse(Path::new("sagas/job.yaml"), text)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_good_file_parses_with_its_defaults_filled_in() {
        let saga = parse(GOOD).unwrap();
        assert_eq!(saga.name, "job");
        assert_eq!(saga.start, "JobRequested");
        let deadline = saga.deadline.as_ref().unwrap();
        assert_eq!(deadline.default, Duration::from_secs(10));
        assert_eq!(deadline.ends_as.as_deref(), Some("failed"));
        assert_eq!(saga.steps[1].waiting, "JobFailed");
        assert_eq!(saga.steps[0].by.as_deref(), Some("worker"));
        let freed = &saga.ends[0].compensations[0];
        assert_eq!(freed.seen_as, "SlotFreed");
        assert!(freed.unless.is_empty() && freed.fields.is_empty());
        assert_eq!(saga.end("done").unwrap().when, ["JobDone", "ReportSent"]);
    }

    #[test]
    fn an_end_on_an_event_no_step_produces_is_refused() {
        let bad = GOOD.replace("when: [JobFailed]", "when: [JobLost]");
        assert_eq!(
            error(&bad),
            "sagas/job.yaml: field `ends[0].when[0]`: `JobLost` is neither the start nor an \
             outcome of a step"
        );
    }

    #[test]
    fn an_unknown_field_is_named_with_its_place() {
        let bad = GOOD.replace("    by: worker", "    by: worker\n    owner: me");
        let message = error(&bad);
        assert!(
            message.starts_with("sagas/job.yaml: field `steps[0]`: unknown field `owner`"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_field_is_named() {
        let bad = GOOD.replace("start: JobRequested\n", "");
        let message = error(&bad);
        assert!(message.contains("missing field `start`"), "{message}");
        assert!(message.starts_with("sagas/job.yaml: "), "{message}");
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        let good = GOOD;
        let cases = [
            ("default: 10s", "default: ten", "deadline.default"),
            ("default: 10s", "default: 0s", "deadline.default"),
            ("ends_as: failed", "ends_as: gone", "deadline.ends_as"),
            (
                "after: [JobStarted]\n    outcomes",
                "after: [Nope]\n    outcomes",
                "steps[2].after[0]",
            ),
            (
                "outcomes: [JobStarted, JobRefused]",
                "outcomes: []",
                "steps[0].outcomes",
            ),
            (
                "outcomes: [JobStarted, JobRefused]",
                "outcomes: [JobStarted, JobStarted]",
                "steps[0].outcomes[1]",
            ),
            ("name: work", "name: run", "steps[2].name"),
            ("name: done", "name: failed", "ends[1].name"),
            (
                "event: SlotFreed",
                "event: jobs.SlotFreed",
                "ends[0].compensations[0].event",
            ),
            ("start: JobRequested", "start: ''", "start"),
            ("reason: why", "reason: ' '", "ends[0].reason"),
        ];
        for (from, to, field) in cases {
            let bad = good.replacen(from, to, 1);
            assert_ne!(bad, good, "{from}");
            let message = error(&bad);
            assert!(
                message.starts_with(&format!("sagas/job.yaml: field `{field}`: ")),
                "{to}: {message}"
            );
        }
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(duration("30").is_err());
        assert!(duration("s").is_err());
    }

    #[test]
    fn a_folder_is_read_file_by_file_and_a_name_declared_twice_is_refused() {
        let dir = std::env::temp_dir().join(format!("choreo-sagas-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), GOOD).unwrap();
        std::fs::write(dir.join("notes.txt"), "not a saga").unwrap();
        let one = load(&dir).map(|s| s.len());
        std::fs::write(dir.join("b.yml"), GOOD).unwrap();
        let twice = load(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(one, Ok(1));
        assert_eq!(twice.field, "name");
        assert!(twice.why.contains("already declared"), "{twice}");
    }
}
