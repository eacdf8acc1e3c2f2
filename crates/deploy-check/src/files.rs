//! Reading the repository's files: its root, text, every YAML document of a file, JSON. Each
//! failure panics with the file's path, since these helpers only serve the tests.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/deploy-check sits two levels below the root")
        .to_path_buf()
}

/// `relative` (to the repository root) as an absolute path.
pub fn path(relative: &str) -> PathBuf {
    repo_root().join(relative)
}

/// The text of `relative`.
pub fn text(relative: &str) -> String {
    let full = path(relative);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Every document of the YAML file `relative` (a `---`-separated stream), empty ones skipped.
pub fn yaml_docs(relative: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    let source = text(relative);
    serde_yaml_ng::Deserializer::from_str(&source)
        .map(|doc| {
            Value::deserialize(doc).unwrap_or_else(|e| panic!("{relative} is not YAML: {e}"))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The one document of the YAML file `relative`.
pub fn yaml(relative: &str) -> Value {
    let mut docs = yaml_docs(relative);
    assert_eq!(docs.len(), 1, "{relative} should hold one YAML document");
    docs.remove(0)
}

/// The JSON file `relative`.
pub fn json(relative: &str) -> serde_json::Value {
    serde_json::from_str(&text(relative)).unwrap_or_else(|e| panic!("{relative} is not JSON: {e}"))
}

/// A scalar as text (YAML numbers and booleans included), or `None` for anything else.
pub fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The string items of a YAML sequence (empty when `value` is not one).
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| items.iter().filter_map(scalar).collect())
        .unwrap_or_default()
}

/// The keys of a YAML mapping (empty when `value` is not one).
pub fn keys(value: &Value) -> Vec<String> {
    value
        .as_mapping()
        .map(|map| map.keys().filter_map(scalar).collect())
        .unwrap_or_default()
}
