//! Avro events in the Confluent Schema Registry wire format.
//!
//! [`wire`] splits and builds the 5-byte header (magic byte 0, big-endian schema id); [`Codec`]
//! encodes and decodes typed events, registering and fetching schemas through
//! schema_registry_converter and caching them so that the steady state costs no registry call and
//! no schema parse. Subjects follow TopicRecordNameStrategy: `<topic>-<namespace.Record>`.
//! [`registry`] tells how a registry call failed, for the codec and the operator tool alike.

pub mod codec;
pub mod registry;
pub mod wire;

pub use codec::{Codec, CodecError};
pub use registry::RegistryFailure;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// An event type with its Avro schema and the topic it travels on. Implemented by generated code
/// (see `crates/events`), never by hand for shop events.
///
/// The type's serde name must be the record's name (generated types are named so; a hand-written
/// type named otherwise needs `#[serde(rename = "Record")]`): decoding reads straight from the
/// bytes into the type and checks that the two agree.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The fully qualified record name, e.g. `shop.order.OrderPlaced`.
    const NAME: &'static str;
    /// The schema as written in its .avsc file.
    const SCHEMA: &'static str;
    /// The topic that carries it, e.g. `shop.orders.v1`.
    const TOPIC: &'static str;
}

/// The subject of `record` on `topic` under TopicRecordNameStrategy.
pub fn subject(topic: &str, record: &str) -> String {
    format!("{topic}-{record}")
}

/// The text under which a schema is registered: the .avsc parsed and written back as compact
/// JSON with sorted keys, so every writer (the codec, `choreo schemas register`) sends the same
/// text for the same schema and a registration never turns into a new version by formatting.
/// Docs and defaults are kept (defaults matter for compatibility, so Avro's Parsing Canonical
/// Form, which drops them, would not do). Compare registered text only after normalising it too:
/// Apicurio answers with its own key order.
pub fn normalize_schema(text: &str) -> Result<String, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    serde_json::to_string(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizing_ignores_whitespace_and_key_order_but_keeps_defaults() {
        let a = r#"{ "type": "record", "name": "A", "fields": [ {"name": "x", "type": "int", "default": 1} ] }"#;
        let b = "{\"fields\":[{\"default\":1,\"type\":\"int\",\"name\":\"x\"}],\n \"name\":\"A\",\"type\":\"record\"}";
        assert_eq!(normalize_schema(a).unwrap(), normalize_schema(b).unwrap());
        assert!(normalize_schema(a).unwrap().contains("\"default\":1"));
    }

    #[test]
    fn subjects_follow_topic_record_name_strategy() {
        assert_eq!(
            subject("shop.orders.v1", "shop.order.OrderPlaced"),
            "shop.orders.v1-shop.order.OrderPlaced"
        );
    }
}
