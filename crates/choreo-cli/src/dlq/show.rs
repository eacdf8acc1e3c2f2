//! `choreo dlq show`: the selected dead letters of one topic as JSON lines, each with where it
//! is, every header, the error, its value decoded with the writer's schema (or raw, with the
//! reason it cannot be decoded) and the ledger's entry if it was redriven.

use std::time::Duration;

use choreo::consumer::dlq;
use serde_json::{json, Map, Value as Json};

use super::ledger::{self, Entry};
use super::select::address_of;
use super::ShowArgs;
use crate::decode;
use crate::failure::Failure;
use crate::read::Record;

pub async fn run(
    kafka: &choreo::KafkaConfig,
    timeout: Duration,
    args: ShowArgs,
) -> Result<(), Failure> {
    let filter = args.selection.filter()?;
    if args.limit == Some(0) {
        return Err(Failure::BadInput("--limit must be at least 1".into()));
    }
    let codec = decode::codec(args.registry.as_deref())?;
    let (_admin, existing) = super::connect(kafka, timeout).await?;
    super::check_dlq_topic(&args.topic, &existing)?;
    let topics = [args.topic.clone()];
    let ledger = ledger::read(kafka, timeout, &existing, &topics).await?;
    let letters = super::read_letters(kafka, timeout, &args.topic, &filter, args.limit).await?;
    for record in &letters {
        let decoded = match record.value.as_deref() {
            None => None,
            Some(bytes) => Some(
                decode::value_json(&codec, bytes)
                    .await
                    .map_err(|e| e.to_string()),
            ),
        };
        let redriven = ledger.get(&address_of(record));
        let line = serde_json::to_string(&letter_json(record, decoded, redriven))
            .map_err(|e| Failure::Error(e.into()))?;
        println!("{line}");
    }
    eprintln!(
        "{} dead letter(s) of {} ({}).",
        letters.len(),
        args.topic,
        filter.describe()
    );
    Ok(())
}

/// One dead letter as JSON. `decoded` is `None` for a null value, else the event type and value,
/// or why it cannot be decoded.
fn letter_json(
    record: &Record,
    decoded: Option<Result<(String, Json), String>>,
    redriven: Option<&Entry>,
) -> Json {
    let header = |name: &str| record.header(name).map_or(Json::Null, |v| json!(v));
    let number = |name: &str| {
        record
            .header(name)
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(Json::Null, |n| json!(n))
    };
    let mut object = Map::new();
    object.insert(
        "dlq".into(),
        json!({
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp_ms": record.timestamp_ms,
        }),
    );
    match (&record.key, record.key_str()) {
        (_, Some(key)) => object.insert("key".into(), json!(key)),
        (Some(bytes), None) => object.insert("key".into(), decode::bytes_json(bytes)),
        (None, None) => object.insert("key".into(), Json::Null),
    };
    object.insert("reason".into(), header(dlq::REASON));
    object.insert("error".into(), header(dlq::ERROR));
    object.insert("attempts".into(), number(dlq::ATTEMPTS));
    object.insert("failed_at".into(), header(dlq::FAILED_AT));
    object.insert("group".into(), header(dlq::GROUP));
    object.insert(
        "original".into(),
        json!({
            "topic": header(dlq::ORIGINAL_TOPIC),
            "partition": number(dlq::ORIGINAL_PARTITION),
            "offset": number(dlq::ORIGINAL_OFFSET),
        }),
    );
    object.insert("headers".into(), decode::headers_json(&record.headers));
    match decoded {
        None => {
            object.insert("value".into(), Json::Null);
        }
        Some(Ok((event_type, value))) => {
            object.insert("event_type".into(), json!(event_type));
            object.insert("value".into(), value);
        }
        Some(Err(error)) => {
            let raw = record.value.as_deref().unwrap_or_default();
            object.insert("value".into(), Json::Null);
            object.insert("value_base64".into(), json!(decode::base64(raw)));
            object.insert("decode_error".into(), json!(error));
        }
    }
    object.insert(
        "redriven".into(),
        redriven.map_or(Json::Null, |entry| json!(entry)),
    );
    Json::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            topic: "t.g.dlq".into(),
            partition: 1,
            offset: 7,
            timestamp_ms: Some(1),
            key: Some(b"order-1".to_vec()),
            headers: vec![
                ("event_id".into(), Some(b"e-1".to_vec())),
                (dlq::REASON.into(), Some(b"not_wire_format".to_vec())),
                (dlq::ERROR.into(), Some(b"bad magic".to_vec())),
                (dlq::ATTEMPTS.into(), Some(b"1".to_vec())),
                (dlq::ORIGINAL_TOPIC.into(), Some(b"t".to_vec())),
                (dlq::ORIGINAL_OFFSET.into(), Some(b"42".to_vec())),
            ],
            value: Some(b"garbage".to_vec()),
        }
    }

    #[test]
    fn an_undecodable_value_is_shown_raw_with_the_decode_error() {
        let json = letter_json(&record(), Some(Err("not our wire format".into())), None);
        assert_eq!(
            json["dlq"],
            json!({"topic": "t.g.dlq", "partition": 1, "offset": 7, "timestamp_ms": 1})
        );
        assert_eq!(json["key"], "order-1");
        assert_eq!(json["reason"], "not_wire_format");
        assert_eq!(json["attempts"], 1);
        assert_eq!(
            json["original"],
            json!({"topic": "t", "partition": null, "offset": 42})
        );
        assert_eq!(json["headers"]["event_id"], "e-1");
        assert_eq!(json["headers"]["dlq.error"], "bad magic");
        assert_eq!(json["value"], Json::Null);
        assert_eq!(json["value_base64"], "Z2FyYmFnZQ==");
        assert_eq!(json["decode_error"], "not our wire format");
        assert_eq!(json["redriven"], Json::Null);
    }

    #[test]
    fn a_decoded_value_comes_with_its_event_type_and_the_ledger_entry() {
        let entry = Entry {
            redriven_at: "t1".into(),
            to: "t/0/9".into(),
            redrive_count: 1,
        };
        let decoded = Some(Ok(("test.Step".to_owned(), json!({"note": "poison"}))));
        let json = letter_json(&record(), decoded, Some(&entry));
        assert_eq!(json["event_type"], "test.Step");
        assert_eq!(json["value"]["note"], "poison");
        assert!(json.get("value_base64").is_none());
        assert_eq!(json["redriven"]["to"], "t/0/9");
    }
}
