//! The catalog: every subject the shop registers, derived from the topic specs and the .avsc files.
//!
//! Each event a topic spec lists becomes the subject `<topic>-<namespace.Record>`
//! (TopicRecordNameStrategy, [`choreo::avro::subject`]) with the schema file whose full name is
//! that event. [`build`] is pure and reports every problem at once, each naming its file: an event
//! with no .avsc, an .avsc on no topic, two .avsc with one full name, an .avsc that does not parse.
//! [`load`] reads the two folders and calls it. Nothing here talks to a registry or to git.

use std::fmt;
use std::path::{Path, PathBuf};

use apache_avro::Schema;

use crate::topics::{self, TopicSpec};

/// One .avsc file: one event record.
#[derive(Debug, Clone)]
pub struct SchemaFile {
    pub path: PathBuf,
    /// `namespace.Name` of the record.
    pub full_name: String,
    pub schema: Schema,
    /// The text that is registered ([`choreo::avro::normalize_schema`] of the file).
    pub normalized: String,
}

/// A registry subject: an event on a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// `<topic>-<namespace.Record>`.
    pub name: String,
    pub topic: String,
    /// Index of its schema in [`Catalog::files`].
    pub file: usize,
}

/// Every schema file (sorted by path) and every subject (in topic and event order).
#[derive(Debug, Clone)]
pub struct Catalog {
    pub files: Vec<SchemaFile>,
    pub subjects: Vec<Subject>,
}

impl Catalog {
    /// The schema file of `subject`.
    pub fn schema_of(&self, subject: &Subject) -> &SchemaFile {
        &self.files[subject.file]
    }
}

/// A file that keeps the catalog from being built, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError {
    pub file: PathBuf,
    pub why: String,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.why)
    }
}

/// Every problem found, one a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogErrors(pub Vec<CatalogError>);

impl fmt::Display for CatalogErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

impl std::error::Error for CatalogErrors {}

/// Builds the catalog from topic specs (each with its file) and .avsc files (path and text).
pub fn build(
    topics: &[(PathBuf, TopicSpec)],
    sources: &[(PathBuf, String)],
) -> Result<Catalog, CatalogErrors> {
    let mut errors = Vec::new();
    let mut files: Vec<SchemaFile> = Vec::new();
    let mut sources: Vec<&(PathBuf, String)> = sources.iter().collect();
    sources.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, text) in sources {
        match parse(text) {
            Err(why) => errors.push(error(path, why)),
            Ok(file) => match files.iter().find(|f| f.full_name == file.full_name) {
                Some(first) => errors.push(error(
                    path,
                    format!(
                        "defines `{}`, which {} defines too: one full name, one file",
                        file.full_name,
                        first.path.display()
                    ),
                )),
                None => files.push(SchemaFile {
                    path: path.clone(),
                    ..file
                }),
            },
        }
    }

    let mut subjects = Vec::new();
    let mut used = vec![false; files.len()];
    for (spec_file, spec) in topics {
        for (i, event) in spec.events.iter().enumerate() {
            match files.iter().position(|f| &f.full_name == event) {
                Some(file) => {
                    used[file] = true;
                    subjects.push(Subject {
                        name: choreo::avro::subject(&spec.name, event),
                        topic: spec.name.clone(),
                        file,
                    });
                }
                None => errors.push(error(
                    spec_file,
                    format!("events[{i}] `{event}` has no schema: no .avsc file defines it"),
                )),
            }
        }
    }
    for (file, _) in files.iter().zip(&used).filter(|(_, used)| !**used) {
        errors.push(error(
            &file.path,
            format!(
                "`{}` is on no topic: list it under `events:` in a topic spec, or remove the file",
                file.full_name
            ),
        ));
    }

    if errors.is_empty() {
        Ok(Catalog { files, subjects })
    } else {
        Err(CatalogErrors(errors))
    }
}

/// Parses one .avsc; the path is filled in by the caller.
fn parse(text: &str) -> Result<SchemaFile, String> {
    let schema =
        Schema::parse_str(text).map_err(|e| format!("does not parse as an Avro schema: {e}"))?;
    let Schema::Record(record) = &schema else {
        return Err(format!(
            "the top level is {}, not a record: each .avsc holds one event record",
            super::explain::describe(&schema)
        ));
    };
    let full_name = record.name.fullname(None);
    let normalized = choreo::avro::normalize_schema(text)
        .map_err(|e| format!("cannot be normalized for the registry: {e}"))?;
    Ok(SchemaFile {
        path: PathBuf::new(),
        full_name,
        schema,
        normalized,
    })
}

fn error(file: &Path, why: String) -> CatalogError {
    CatalogError {
        file: file.to_owned(),
        why,
    }
}

/// Reads every topic spec in `topics_dir` and every `*.avsc` below `schemas_dir`, then [`build`]s.
pub fn load(schemas_dir: &Path, topics_dir: &Path) -> Result<Catalog, CatalogErrors> {
    let specs = topics::load_dir(topics_dir).map_err(|e| {
        let why = if e.field.is_empty() {
            e.why
        } else {
            format!("field `{}`: {}", e.field, e.why)
        };
        CatalogErrors(vec![error(&e.file, why)])
    })?;
    let topics: Vec<(PathBuf, TopicSpec)> = specs
        .into_iter()
        .map(|spec| (spec_file(topics_dir, &spec.name), spec))
        .collect();
    let mut sources = Vec::new();
    for path in avsc_files(schemas_dir).map_err(|e| CatalogErrors(vec![e]))? {
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push((path, text)),
            Err(e) => {
                return Err(CatalogErrors(vec![error(
                    &path,
                    format!("cannot read: {e}"),
                )]))
            }
        }
    }
    build(&topics, &sources)
}

/// The file a loaded spec came from: specs are named after their topic (`.yaml` or `.yml`).
fn spec_file(topics_dir: &Path, topic: &str) -> PathBuf {
    let yaml = topics_dir.join(format!("{topic}.yaml"));
    if yaml.is_file() {
        yaml
    } else {
        topics_dir.join(format!("{topic}.yml"))
    }
}

/// Every `*.avsc` file below `dir`, at any depth, sorted.
fn avsc_files(dir: &Path) -> Result<Vec<PathBuf>, CatalogError> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| error(&dir, format!("cannot read the schemas folder: {e}")))?;
        for entry in entries {
            let path = entry
                .map_err(|e| error(&dir, format!("cannot read the schemas folder: {e}")))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "avsc") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avsc(namespace: &str, name: &str) -> String {
        format!(
            r#"{{"type":"record","name":"{name}","namespace":"{namespace}","fields":[{{"name":"id","type":"string"}}]}}"#
        )
    }

    fn topic(name: &str, events: &[&str]) -> (PathBuf, TopicSpec) {
        let text = format!(
            "name: {name}\ndescription: d\npartitions: 1\nreplication_factor: 1\n\
             key: {{format: string, description: k}}\nevents: [{}]\nproducer: p\n",
            events.join(", ")
        );
        let file = PathBuf::from(format!("topics/{name}.yaml"));
        let spec = topics::spec::parse(&file, &text).unwrap();
        (file, spec)
    }

    fn source(path: &str, text: String) -> (PathBuf, String) {
        (PathBuf::from(path), text)
    }

    fn problems(topics: &[(PathBuf, TopicSpec)], sources: &[(PathBuf, String)]) -> Vec<String> {
        build(topics, sources)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn each_event_on_a_topic_becomes_a_subject_with_its_schema_file() {
        let topics = [
            topic(
                "shop.orders.v1",
                &["shop.order.OrderPlaced", "shop.order.OrderCancelled"],
            ),
            topic("shop.audit.v1", &["shop.order.OrderPlaced"]),
        ];
        let sources = [
            source(
                "schemas/order/OrderPlaced.avsc",
                avsc("shop.order", "OrderPlaced"),
            ),
            source(
                "schemas/order/OrderCancelled.avsc",
                avsc("shop.order", "OrderCancelled"),
            ),
        ];
        let catalog = build(&topics, &sources).unwrap();
        let subjects: Vec<(&str, &Path)> = catalog
            .subjects
            .iter()
            .map(|s| (s.name.as_str(), catalog.schema_of(s).path.as_path()))
            .collect();
        assert_eq!(
            subjects,
            [
                (
                    "shop.orders.v1-shop.order.OrderPlaced",
                    Path::new("schemas/order/OrderPlaced.avsc")
                ),
                (
                    "shop.orders.v1-shop.order.OrderCancelled",
                    Path::new("schemas/order/OrderCancelled.avsc")
                ),
                (
                    "shop.audit.v1-shop.order.OrderPlaced",
                    Path::new("schemas/order/OrderPlaced.avsc")
                ),
            ]
        );
    }

    #[test]
    fn the_registered_text_is_the_normalized_file() {
        let text = avsc("shop.order", "OrderPlaced").replace(',', ",\n  ");
        let catalog = build(
            &[topic("shop.orders.v1", &["shop.order.OrderPlaced"])],
            &[source("schemas/order/OrderPlaced.avsc", text.clone())],
        )
        .unwrap();
        assert_eq!(
            catalog.files[0].normalized,
            choreo::avro::normalize_schema(&text).unwrap()
        );
    }

    #[test]
    fn an_event_with_no_schema_file_names_the_topic_spec() {
        let found = problems(
            &[topic(
                "shop.orders.v1",
                &["shop.order.OrderPlaced", "shop.order.OrderLost"],
            )],
            &[source(
                "schemas/order/OrderPlaced.avsc",
                avsc("shop.order", "OrderPlaced"),
            )],
        );
        assert_eq!(
            found,
            [
                "topics/shop.orders.v1.yaml: events[1] `shop.order.OrderLost` has no schema: no \
              .avsc file defines it"
            ]
        );
    }

    #[test]
    fn a_schema_file_on_no_topic_is_named() {
        let found = problems(
            &[topic("shop.orders.v1", &["shop.order.OrderPlaced"])],
            &[
                source(
                    "schemas/order/OrderPlaced.avsc",
                    avsc("shop.order", "OrderPlaced"),
                ),
                source("schemas/order/Stray.avsc", avsc("shop.order", "Stray")),
            ],
        );
        assert_eq!(
            found,
            [
                "schemas/order/Stray.avsc: `shop.order.Stray` is on no topic: list it under \
              `events:` in a topic spec, or remove the file"
            ]
        );
    }

    #[test]
    fn two_schema_files_with_one_full_name_are_named_together() {
        let found = problems(
            &[topic("shop.orders.v1", &["shop.order.OrderPlaced"])],
            &[
                source(
                    "schemas/order/OrderPlaced.avsc",
                    avsc("shop.order", "OrderPlaced"),
                ),
                source("schemas/order/Copy.avsc", avsc("shop.order", "OrderPlaced")),
            ],
        );
        assert_eq!(
            found,
            [
                "schemas/order/OrderPlaced.avsc: defines `shop.order.OrderPlaced`, which \
              schemas/order/Copy.avsc defines too: one full name, one file"
            ]
        );
    }

    #[test]
    fn a_schema_file_that_does_not_parse_is_named_with_the_reason() {
        let found = problems(
            &[topic("shop.orders.v1", &["shop.order.OrderPlaced"])],
            &[
                source(
                    "schemas/order/OrderPlaced.avsc",
                    avsc("shop.order", "OrderPlaced"),
                ),
                source(
                    "schemas/order/Broken.avsc",
                    r#"{"type":"record","name":"Broken","fields":[{"name":"x","type":"lnog"}]}"#
                        .into(),
                ),
            ],
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("schemas/order/Broken.avsc: does not parse as an Avro schema:"),
            "{found:?}"
        );
    }

    #[test]
    fn a_schema_file_that_is_not_a_record_is_rejected() {
        let found = problems(
            &[topic("shop.orders.v1", &["shop.order.OrderPlaced"])],
            &[
                source(
                    "schemas/order/OrderPlaced.avsc",
                    avsc("shop.order", "OrderPlaced"),
                ),
                source("schemas/order/Name.avsc", r#""string""#.into()),
            ],
        );
        assert_eq!(
            found,
            [
                "schemas/order/Name.avsc: the top level is string, not a record: each .avsc holds \
              one event record"
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let found = problems(
            &[topic("shop.orders.v1", &["shop.order.Missing"])],
            &[source(
                "schemas/order/Stray.avsc",
                avsc("shop.order", "Stray"),
            )],
        );
        assert_eq!(found.len(), 2, "{found:?}");
    }
}
