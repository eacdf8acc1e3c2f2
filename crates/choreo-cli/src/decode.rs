//! Turning what [`crate::read`] reads into JSON for people and tools: Avro values decoded with
//! their writer's schema (no Rust event types needed), headers as text, and the codec set up from
//! `--registry` or the environment. Reading Kafka is not done here.

use apache_avro::types::Value as Avro;
use base64::Engine as _;
use choreo::avro::{Codec, CodecError};
use serde_json::{json, Map, Value as Json};

use crate::failure::Failure;

/// Decodes a Confluent-framed Avro value with its writer's schema: the record's full name (e.g.
/// `shop.order.OrderPlaced`) and the value as JSON (see [`avro_to_json`]).
pub async fn value_json(codec: &Codec, bytes: &[u8]) -> Result<(String, Json), CodecError> {
    let (name, value) = codec.decode_any(bytes).await?;
    Ok((name, avro_to_json(&value)))
}

/// A faithful JSON rendering of an Avro value: records as objects, enums as their symbol, unions
/// as the value inside, bytes and fixed as base64 text, logical types (dates, times, timestamps)
/// as their underlying number, decimals as their unscaled two's-complement bytes in hex (or as
/// text when already scaled), durations as `{months, days, millis}`, UUIDs as text.
pub fn avro_to_json(value: &Avro) -> Json {
    match value {
        Avro::Null => Json::Null,
        Avro::Boolean(b) => Json::Bool(*b),
        Avro::Int(n) | Avro::Date(n) | Avro::TimeMillis(n) => json!(n),
        Avro::Long(n)
        | Avro::TimeMicros(n)
        | Avro::TimestampMillis(n)
        | Avro::TimestampMicros(n)
        | Avro::TimestampNanos(n)
        | Avro::LocalTimestampMillis(n)
        | Avro::LocalTimestampMicros(n)
        | Avro::LocalTimestampNanos(n) => json!(n),
        Avro::Float(f) => float(f64::from(*f)),
        Avro::Double(f) => float(*f),
        Avro::Bytes(bytes) | Avro::Fixed(_, bytes) => Json::String(base64(bytes)),
        Avro::String(s) | Avro::Enum(_, s) => Json::String(s.clone()),
        Avro::Union(_, inner) => avro_to_json(inner),
        Avro::Array(items) => Json::Array(items.iter().map(avro_to_json).collect()),
        Avro::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), avro_to_json(v)))
                .collect(),
        ),
        Avro::Record(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), avro_to_json(v)))
                .collect(),
        ),
        Avro::Decimal(decimal) => match Vec::<u8>::try_from(decimal) {
            Ok(bytes) => Json::String(hex(&bytes)),
            Err(e) => Json::String(format!("(decimal: {e})")),
        },
        Avro::BigDecimal(decimal) => Json::String(decimal.to_string()),
        Avro::Duration(duration) => json!({
            "months": u32::from(duration.months()),
            "days": u32::from(duration.days()),
            "millis": u32::from(duration.millis()),
        }),
        Avro::Uuid(uuid) => Json::String(uuid.to_string()),
    }
}

/// Headers as a JSON object: UTF-8 values as strings, others as `{"hex": "..."}`, null values as
/// null. When a name repeats, the last value wins (as [`choreo::kafka::header`] reads them).
pub fn headers_json(headers: &[(String, Option<Vec<u8>>)]) -> Json {
    let mut object = Map::new();
    for (name, value) in headers {
        let rendered = match value {
            None => Json::Null,
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => Json::String(text.to_owned()),
                Err(_) => json!({ "hex": hex(bytes) }),
            },
        };
        object.insert(name.clone(), rendered);
    }
    Json::Object(object)
}

/// Raw bytes as JSON: `{"base64": ..}` plus `"utf8"` when they are valid UTF-8.
pub fn bytes_json(bytes: &[u8]) -> Json {
    let mut object = Map::new();
    object.insert("base64".into(), Json::String(base64(bytes)));
    if let Ok(text) = std::str::from_utf8(bytes) {
        object.insert("utf8".into(), Json::String(text.to_owned()));
    }
    Json::Object(object)
}

/// A codec for the registry at `registry`, else at `SCHEMA_REGISTRY_URL`; bad input naming the
/// variable when neither is given (see [`crate::cluster::registry_config`]).
pub fn codec(registry: Option<&str>) -> Result<Codec, Failure> {
    let config = crate::cluster::registry_config(registry)?;
    Codec::new(&config).map_err(|e| Failure::Error(e.into()))
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn float(f: f64) -> Json {
    serde_json::Number::from_f64(f)
        .map(Json::Number)
        .unwrap_or_else(|| Json::String(f.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_enums_and_unions_map_to_plain_json() {
        let value = Avro::Record(vec![
            ("order_id".into(), Avro::String("o-1".into())),
            ("reason".into(), Avro::Enum(1, "PAYMENT_FAILED".into())),
            ("detail".into(), Avro::Union(0, Box::new(Avro::Null))),
            (
                "note".into(),
                Avro::Union(1, Box::new(Avro::String("hi".into()))),
            ),
            (
                "cancelled_at".into(),
                Avro::TimestampMillis(1_700_000_000_000),
            ),
            ("blob".into(), Avro::Bytes(vec![0, 1, 2])),
            (
                "lines".into(),
                Avro::Array(vec![Avro::Record(vec![("qty".into(), Avro::Int(2))])]),
            ),
        ]);
        assert_eq!(
            avro_to_json(&value),
            json!({
                "order_id": "o-1",
                "reason": "PAYMENT_FAILED",
                "detail": null,
                "note": "hi",
                "cancelled_at": 1_700_000_000_000_i64,
                "blob": "AAEC",
                "lines": [{"qty": 2}],
            })
        );
    }

    #[test]
    fn headers_that_are_not_text_are_shown_as_hex() {
        let headers = vec![
            (
                "event_type".to_owned(),
                Some(b"shop.order.OrderPlaced".to_vec()),
            ),
            ("binary".to_owned(), Some(vec![0xff, 0x00])),
            ("none".to_owned(), None),
        ];
        assert_eq!(
            headers_json(&headers),
            json!({"event_type": "shop.order.OrderPlaced", "binary": {"hex": "ff00"}, "none": null})
        );
    }

    #[test]
    fn raw_bytes_carry_a_text_rendering_only_when_they_are_utf8() {
        assert_eq!(bytes_json(b"hi"), json!({"base64": "aGk=", "utf8": "hi"}));
        assert_eq!(bytes_json(&[0xff]), json!({"base64": "/w=="}));
    }
}
