//! Topic spec files: parsing and validation.
//!
//! A spec is parsed into [`TopicSpec`] only through [`parse`], which rejects what Kafka would
//! reject later and what would make the plan meaningless. Every error names the file, the field
//! and why, so that a bad spec is fixed without reading code.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// How the record key is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyFormat {
    /// A UTF-8 string (for the shop, the order id), readable with `kcat -f %k`.
    String,
    /// Opaque bytes.
    Bytes,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    format: KeyFormat,
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    description: String,
    partitions: i64,
    replication_factor: i64,
    #[serde(default)]
    configs: BTreeMap<String, serde_yaml_ng::Value>,
    key: RawKey,
    events: Vec<String>,
    producer: String,
    #[serde(default)]
    consumers: Vec<String>,
}

/// A validated topic spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub description: String,
    pub partitions: u32,
    pub replication_factor: u16,
    /// Topic-level configs, values as Kafka shows them (strings).
    pub configs: BTreeMap<String, String>,
    pub key_format: KeyFormat,
    pub key_description: String,
    /// Fully qualified Avro record names of the events on this topic.
    pub events: Vec<String>,
    /// The service that produces every event on this topic.
    pub producer: String,
    /// The consumer groups that read it.
    pub consumers: Vec<String>,
}

/// A spec file that cannot be used: the file, the field and why (the backbone's one error of
/// a declared file).
pub type SpecError = choreo::declared::FileError;

/// Reads and validates every `*.yaml`/`*.yml` file in `dir`, in file name order.
/// Fails on the first bad file, and on two files that name the same topic.
pub fn load_dir(dir: &Path) -> Result<Vec<TopicSpec>, SpecError> {
    let files = choreo::declared::yaml_files(dir, "topics", "topic specs")?;
    let mut specs: Vec<TopicSpec> = Vec::with_capacity(files.len());
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| SpecError::whole(file, format!("cannot read: {e}")))?;
        let spec = parse(file, &text)?;
        if let Some(earlier) = specs.iter().position(|s| s.name == spec.name) {
            return Err(SpecError {
                file: file.clone(),
                field: "name".into(),
                why: format!(
                    "topic `{}` is already specified in {}",
                    spec.name,
                    files[earlier].display()
                ),
            });
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// Parses and validates one spec; `file` is used in errors and must be named after the topic.
pub fn parse(file: &Path, text: &str) -> Result<TopicSpec, SpecError> {
    let err = |field: &str, why: String| SpecError {
        file: file.to_owned(),
        field: field.into(),
        why,
    };
    let raw: RawSpec = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(file, &e))?;

    validate_topic_name(&raw.name).map_err(|why| err("name", why))?;
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if stem != raw.name {
        return Err(err(
            "name",
            format!(
                "is `{}` but the file is named `{stem}`; name the file after the topic",
                raw.name
            ),
        ));
    }
    if raw.description.trim().is_empty() {
        return Err(err("description", "must say what the topic carries".into()));
    }
    let partitions = u32::try_from(raw.partitions)
        .ok()
        .filter(|p| (1..=10_000).contains(p))
        .ok_or_else(|| {
            err(
                "partitions",
                format!("must be between 1 and 10000, got {}", raw.partitions),
            )
        })?;
    let replication_factor = u16::try_from(raw.replication_factor)
        .ok()
        .filter(|rf| (1..=32).contains(rf))
        .ok_or_else(|| {
            err(
                "replication_factor",
                format!("must be between 1 and 32, got {}", raw.replication_factor),
            )
        })?;

    let mut configs = BTreeMap::new();
    for (key, value) in raw.configs {
        let field = format!("configs.{key}");
        let value =
            config_value(&key, &value, replication_factor).map_err(|why| err(&field, why))?;
        configs.insert(key, value);
    }

    if raw.key.description.trim().is_empty() {
        return Err(err("key.description", "must say what the key is".into()));
    }
    if raw.events.is_empty() {
        return Err(err("events", "must list at least one event type".into()));
    }
    for (i, event) in raw.events.iter().enumerate() {
        validate_record_name(event).map_err(|why| err(&format!("events[{i}]"), why))?;
        if raw.events[..i].contains(event) {
            return Err(err(
                &format!("events[{i}]"),
                format!("`{event}` is listed twice"),
            ));
        }
    }
    validate_service_name(&raw.producer).map_err(|why| err("producer", why))?;
    for (i, group) in raw.consumers.iter().enumerate() {
        validate_service_name(group).map_err(|why| err(&format!("consumers[{i}]"), why))?;
    }

    Ok(TopicSpec {
        name: raw.name,
        description: raw.description.trim().to_owned(),
        partitions,
        replication_factor,
        configs,
        key_format: raw.key.format,
        key_description: raw.key.description.trim().to_owned(),
        events: raw.events,
        producer: raw.producer,
        consumers: raw.consumers,
    })
}

/// serde_yaml_ng says `field: why at line L column C`; keep the field apart when it names one.
fn yaml_error(file: &Path, error: &serde_yaml_ng::Error) -> SpecError {
    let message = error.to_string();
    let (field, why) = match message.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => (path.to_owned(), rest.to_owned()),
        _ => (String::new(), message),
    };
    SpecError {
        file: file.to_owned(),
        field,
        why,
    }
}

fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err("must be 1 to 249 characters".into());
    }
    if name == "." || name == ".." {
        return Err("cannot be `.` or `..`".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "`{name}` has `{bad}`; Kafka allows only ASCII letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

fn validate_record_name(name: &str) -> Result<(), String> {
    let parts: Vec<&str> = name.split('.').collect();
    let identifier = |s: &str| {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if parts.len() < 2 || !parts.iter().all(|p| identifier(p)) {
        return Err(format!(
            "`{name}` is not a fully qualified Avro record name (namespace.Name)"
        ));
    }
    Ok(())
}

fn validate_service_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be a lowercase service or group name (a-z, 0-9, -)"
        ))
    }
}

/// Renders a config value as Kafka shows it and checks the values we know the rules of.
fn config_value(
    key: &str,
    value: &serde_yaml_ng::Value,
    replication_factor: u16,
) -> Result<String, String> {
    use serde_yaml_ng::Value;
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => {
            return Err(format!(
                "must be a string, number or boolean, got {other:?}"
            ))
        }
    };
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.')
    {
        return Err("is not a Kafka topic config name (lowercase, dotted)".into());
    }
    let integer = |min: i64| -> Result<i64, String> {
        text.parse::<i64>()
            .ok()
            .filter(|n| *n >= min)
            .ok_or_else(|| format!("must be an integer of at least {min}, got `{text}`"))
    };
    match key {
        "cleanup.policy" => {
            let mut parts: Vec<&str> = text.split(',').map(str::trim).collect();
            parts.sort_unstable();
            parts.dedup();
            if parts.is_empty() || !parts.iter().all(|p| matches!(*p, "delete" | "compact")) {
                return Err(format!(
                    "must be `delete`, `compact` or `compact,delete`, got `{text}`"
                ));
            }
            return Ok(parts.join(","));
        }
        "retention.ms" | "retention.bytes" => {
            integer(-1)?;
        }
        "min.insync.replicas" => {
            let n = integer(1)?;
            if n > i64::from(replication_factor) {
                return Err(format!("is {n} but replication_factor is only {replication_factor}: no write could ever succeed"));
            }
        }
        _ => {}
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
name: shop.orders.v1
description: Every event of the order aggregate.
partitions: 12
replication_factor: 1
configs:
  cleanup.policy: delete
  retention.ms: 604800000
  min.insync.replicas: 1
key:
  format: string
  description: The order id.
events: [shop.order.OrderPlaced, shop.order.OrderConfirmed]
producer: order
consumers: [inventory, payment]
";

    fn parse_as(file: &str, text: &str) -> Result<TopicSpec, SpecError> {
        parse(Path::new(file), text)
    }

    #[test]
    fn a_good_spec_parses_with_configs_as_kafka_strings() {
        let spec = parse_as("topics/shop.orders.v1.yaml", GOOD).unwrap();
        assert_eq!(spec.partitions, 12);
        assert_eq!(spec.replication_factor, 1);
        assert_eq!(spec.configs["retention.ms"], "604800000");
        assert_eq!(spec.configs["cleanup.policy"], "delete");
        assert_eq!(spec.key_format, KeyFormat::String);
        assert_eq!(spec.consumers, ["inventory", "payment"]);
    }

    #[test]
    fn a_missing_field_names_the_file_and_the_field() {
        let text = GOOD.replace("partitions: 12\n", "");
        let err = parse_as("topics/shop.orders.v1.yaml", &text).unwrap_err();
        assert_eq!(err.file, Path::new("topics/shop.orders.v1.yaml"));
        assert!(err.why.contains("missing field `partitions`"), "{err}");
    }

    #[test]
    fn a_wrongly_typed_field_is_named() {
        let text = GOOD.replace("partitions: 12", "partitions: twelve");
        let err = parse_as("topics/shop.orders.v1.yaml", &text).unwrap_err();
        assert_eq!(err.field, "partitions", "{err}");
        assert!(
            err.to_string()
                .contains("shop.orders.v1.yaml: field `partitions`"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_field_is_rejected() {
        let text = format!("{GOOD}partitons: 3\n");
        let err = parse_as("topics/shop.orders.v1.yaml", &text).unwrap_err();
        assert!(err.why.contains("unknown field `partitons`"), "{err}");
    }

    #[test]
    fn zero_partitions_are_rejected_with_the_reason() {
        let text = GOOD.replace("partitions: 12", "partitions: 0");
        let err = parse_as("topics/shop.orders.v1.yaml", &text).unwrap_err();
        assert_eq!(err.field, "partitions");
        assert!(err.why.contains("got 0"), "{err}");
    }

    #[test]
    fn min_insync_replicas_above_the_replication_factor_is_rejected() {
        let text = GOOD.replace("min.insync.replicas: 1", "min.insync.replicas: 2");
        let err = parse_as("topics/shop.orders.v1.yaml", &text).unwrap_err();
        assert_eq!(err.field, "configs.min.insync.replicas");
    }

    #[test]
    fn a_bad_cleanup_policy_is_rejected() {
        let text = GOOD.replace("cleanup.policy: delete", "cleanup.policy: forever");
        let err = parse_as("topics/shop.orders.v1.yaml", &text).unwrap_err();
        assert_eq!(err.field, "configs.cleanup.policy");
    }

    #[test]
    fn the_file_must_be_named_after_the_topic() {
        let err = parse_as("topics/orders.yaml", GOOD).unwrap_err();
        assert_eq!(err.field, "name");
        assert!(err.why.contains("file is named `orders`"), "{err}");
    }

    #[test]
    fn an_event_must_be_a_qualified_record_name() {
        let text = GOOD.replace("shop.order.OrderPlaced", "OrderPlaced");
        let err = parse_as("topics/shop.orders.v1.yaml", &text).unwrap_err();
        assert_eq!(err.field, "events[0]");
    }

    #[test]
    fn a_topic_name_with_a_space_is_rejected() {
        let text = GOOD.replace("name: shop.orders.v1", "name: shop orders");
        let err = parse_as("topics/shop orders.yaml", &text).unwrap_err();
        assert_eq!(err.field, "name");
    }

    #[test]
    fn two_files_for_one_topic_are_rejected() {
        let dir = std::env::temp_dir().join(format!("choreo-spec-dup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("shop.orders.v1.yaml"), GOOD).unwrap();
        std::fs::write(dir.join("shop.orders.v1.yml"), GOOD).unwrap();
        let err = load_dir(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.why.contains("already specified"), "{err}");
    }
}
