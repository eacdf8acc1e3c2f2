//! `choreo inspect`: print a topic's records as JSON lines, values decoded from Avro with their
//! writer's schema, filtered by key, event type, partition and time, or followed as they come.
//!
//! Reading is [`crate::read`]'s and decoding [`crate::decode`]'s; this module turns flags into a
//! [`Selection`] and filters, and records into lines.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value as Json};

use crate::cluster::ClusterArgs;
use crate::decode;
use crate::failure::Failure;
use crate::read::{self, Record, Selection, Start, Stop};

const HELP: &str = "\
Examples:
  choreo inspect shop.orders.v1                               every record, values decoded
  choreo inspect shop.orders.v1 --key 0190f1c2-... --type OrderCancelled
  choreo inspect shop.payments.v1 --last 5 --follow           the last 5 per partition, then new ones
  choreo inspect shop.orders.v1 --from-time 2025-01-01T10:00:00Z --to-time 2025-01-01T11:00:00Z
  choreo inspect shop.orders.v1 --partition 3 --offset 1200 --limit 10
  choreo inspect shop.orders.v1.inventory.dlq --raw          bytes as they are (base64, and UTF-8)

One JSON object per line: topic, partition, offset, timestamp (RFC 3339), key, headers,
event_type, value. A value that is not Avro in the Confluent wire format is printed with
`value_error` and its raw bytes, and reading goes on. Reads are read_committed and never join or
move a consumer group. Values are decoded with the registry at --registry or SCHEMA_REGISTRY_URL.";

/// Arguments of `choreo inspect`.
#[derive(Debug, clap::Args)]
#[command(after_help = HELP)]
pub struct InspectArgs {
    /// The topic to read.
    pub topic: String,
    /// Only records with this key (UTF-8); repeatable. Without --partition, only the keys'
    /// partitions are read.
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
    /// Only events of this type (the event_type header), full (shop.order.OrderPlaced) or short
    /// (OrderPlaced); repeatable.
    #[arg(long = "type", value_name = "NAME")]
    pub types: Vec<String>,
    /// Only this partition; repeatable.
    #[arg(long = "partition", value_name = "P")]
    pub partitions: Vec<i32>,
    /// Start at this offset (needs exactly one --partition).
    #[arg(long, conflicts_with_all = ["last", "from_time"])]
    pub offset: Option<i64>,
    /// Start with the last N records of each partition.
    #[arg(long, value_name = "N", conflicts_with = "from_time")]
    pub last: Option<i64>,
    /// Start at the first record at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub from_time: Option<String>,
    /// Stop before the first record at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", conflicts_with = "follow")]
    pub to_time: Option<String>,
    /// Keep reading new records until interrupted.
    #[arg(long)]
    pub follow: bool,
    /// Stop after printing N records.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Do not decode values: print them as base64, plus a UTF-8 rendering when valid.
    #[arg(long)]
    pub raw: bool,
    /// The schema registry's Confluent API base URL.
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    pub registry: Option<String>,
}

pub async fn run(cluster: &ClusterArgs, args: InspectArgs) -> Result<(), Failure> {
    let kafka = cluster.kafka()?;
    let timeout = std::time::Duration::from_secs(cluster.timeout);
    let mut selection = selection(&args)?;
    if selection.partitions.is_none() && !args.keys.is_empty() {
        let counts = read::partition_counts(&kafka, &selection.topics, timeout)?;
        let count = i32::try_from(counts[0]).map_err(|e| Failure::Error(e.into()))?;
        let mut partitions: Vec<i32> = args
            .keys
            .iter()
            .map(|k| choreo::kafka::partition_for_key(k.as_bytes(), count))
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        selection.partitions = Some(partitions);
    }
    let codec = if args.raw {
        None
    } else {
        Some(decode::codec(args.registry.as_deref())?)
    };
    let mut records = read::stream(&kafka, selection, timeout).await?;
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    while args.limit.is_none_or(|limit| printed < limit) {
        let Some(record) = records.recv().await else {
            break;
        };
        let record = record?;
        if !args.keys.is_empty()
            && !args
                .keys
                .iter()
                .any(|k| Some(k.as_str()) == record.key_str())
        {
            continue;
        }
        let Some(line) = render(&record, codec.as_ref(), &args.types).await? else {
            continue;
        };
        let mut out = stdout.lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break; // the reader went away (e.g. `| head`)
        }
        printed += 1;
    }
    Ok(())
}

/// The reading range the flags ask for.
fn selection(args: &InspectArgs) -> Result<Selection, Failure> {
    let partitions = if args.partitions.is_empty() {
        None
    } else {
        Some(args.partitions.clone())
    };
    let start = if let Some(offset) = args.offset {
        if args.partitions.len() != 1 {
            return Err(Failure::BadInput(
                "--offset needs exactly one --partition (offsets are per partition)".into(),
            ));
        }
        Start::Offset(offset)
    } else if let Some(n) = args.last {
        Start::Last(n)
    } else if let Some(time) = &args.from_time {
        Start::Time(parse_time("--from-time", time)?)
    } else {
        Start::Beginning
    };
    let stop = match (&args.to_time, args.follow) {
        (Some(time), _) => Stop::Time(parse_time("--to-time", time)?),
        (None, true) => Stop::Follow,
        (None, false) => Stop::End,
    };
    Ok(Selection {
        topics: vec![args.topic.clone()],
        partitions,
        start,
        stop,
    })
}

/// Milliseconds since the epoch of an RFC 3339 time given as `flag`.
pub fn parse_time(flag: &str, text: &str) -> Result<i64, Failure> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            Failure::BadInput(format!(
                "{flag} `{text}` is not an RFC 3339 time (e.g. 2025-01-31T12:00:00Z): {e}"
            ))
        })
}

/// True when `event_type` is one of `wanted`, full or short (the part after the last dot).
pub fn type_matches(event_type: Option<&str>, wanted: &[String]) -> bool {
    if wanted.is_empty() {
        return true;
    }
    let Some(event_type) = event_type else {
        return false;
    };
    let short = event_type.rsplit('.').next().unwrap_or(event_type);
    wanted.iter().any(|w| w == event_type || w == short)
}

/// Ms since the epoch as RFC 3339 (UTC, milliseconds).
pub fn format_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// One record as a JSON line, or `None` when its event type is filtered out. A value that does
/// not decode is shown raw with `value_error`; only an unreachable registry fails the command.
async fn render(
    record: &Record,
    codec: Option<&choreo::avro::Codec>,
    types: &[String],
) -> Result<Option<Json>, Failure> {
    let mut event_type = record
        .header(choreo::envelope::EVENT_TYPE)
        .map(str::to_owned);
    if codec.is_none() && !type_matches(event_type.as_deref(), types) {
        return Ok(None);
    }
    let mut value_error = None;
    let value = match (&record.value, codec) {
        (None, _) => Json::Null,
        (Some(bytes), None) => decode::bytes_json(bytes),
        (Some(bytes), Some(codec)) => match decode::value_json(codec, bytes).await {
            Ok((name, value)) => {
                event_type.get_or_insert(name);
                value
            }
            Err(e) if e.is_retryable() => return Err(Failure::Error(e.into())),
            Err(e) => {
                value_error = Some(e.to_string());
                decode::bytes_json(bytes)
            }
        },
    };
    if !type_matches(event_type.as_deref(), types) {
        return Ok(None);
    }
    let key = match (&record.key, record.key_str()) {
        (None, _) => Json::Null,
        (Some(_), Some(text)) => Json::String(text.to_owned()),
        (Some(bytes), None) => decode::bytes_json(bytes),
    };
    let mut line = json!({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp_ms.map(format_ms),
        "key": key,
        "headers": decode::headers_json(&record.headers),
        "event_type": event_type,
        "value": value,
    });
    if let Some(error) = value_error {
        line["value_error"] = Json::String(error);
    }
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_matches_by_full_or_short_name() {
        let wanted = vec!["OrderPlaced".to_owned()];
        assert!(type_matches(Some("shop.order.OrderPlaced"), &wanted));
        assert!(!type_matches(Some("shop.order.OrderConfirmed"), &wanted));
        assert!(!type_matches(None, &wanted));
        assert!(type_matches(None, &[]));
        let full = vec!["shop.order.OrderPlaced".to_owned()];
        assert!(type_matches(Some("shop.order.OrderPlaced"), &full));
        assert!(!type_matches(Some("other.OrderPlaced"), &full));
    }

    #[test]
    fn times_are_rfc_3339() {
        assert_eq!(
            parse_time("--from-time", "2025-01-31T12:00:00Z").unwrap(),
            1_738_324_800_000
        );
        assert!(matches!(
            parse_time("--from-time", "yesterday"),
            Err(Failure::BadInput(m)) if m.contains("--from-time")
        ));
        assert_eq!(format_ms(1_738_324_800_000), "2025-01-31T12:00:00.000Z");
    }
}
