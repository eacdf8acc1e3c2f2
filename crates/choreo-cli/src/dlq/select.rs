//! Which dead letters a command works on and what `list` says about them: pure functions of the
//! records read, with no I/O. What a redrive does with them is in [`super::decide`].
//!
//! A dead letter is a [`Record`] of a `<topic>.<group>.dlq` topic: the original key, value and
//! headers plus the `dlq.*` headers of [`choreo::consumer::dlq`]. Reading and producing are in
//! the sibling modules.

use std::collections::BTreeMap;

use choreo::consumer::dlq;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::read::Record;

/// Where a record sits, `<topic>/<partition>/<offset>`: the ledger's key for a dead letter.
pub fn address(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}/{partition}/{offset}")
}

/// The address of a record.
pub fn address_of(record: &Record) -> String {
    address(&record.topic, record.partition, record.offset)
}

/// Offsets `from..=to` of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRange {
    partition: i32,
    from: i64,
    to: Option<i64>,
}

impl OffsetRange {
    /// From `from` (default 0) to `to` inclusive (default: the end); rejects a negative
    /// partition or offset and an empty range.
    pub fn new(partition: i32, from: Option<i64>, to: Option<i64>) -> Result<Self, String> {
        let from = from.unwrap_or(0);
        if partition < 0 {
            return Err(format!("--partition {partition} is negative"));
        }
        if from < 0 || to.is_some_and(|to| to < 0) {
            return Err("offsets cannot be negative".into());
        }
        if let Some(to) = to.filter(|to| *to < from) {
            return Err(format!(
                "--to-offset {to} is before --from-offset {from}: the range is empty"
            ));
        }
        Ok(Self {
            partition,
            from,
            to,
        })
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn from(&self) -> i64 {
        self.from
    }

    /// The first offset after the range, when it has an end.
    pub fn end_exclusive(&self) -> Option<i64> {
        self.to.map(|to| to + 1)
    }

    pub fn contains(&self, partition: i32, offset: i64) -> bool {
        partition == self.partition && offset >= self.from && self.to.is_none_or(|to| offset <= to)
    }
}

/// Which dead letters of a topic: those matching every criterion given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The `dlq.reason` header, e.g. `rejected`.
    pub reason: Option<String>,
    /// The record key, as text.
    pub key: Option<String>,
    pub range: Option<OffsetRange>,
}

impl Filter {
    /// True when no criterion is given: every dead letter matches.
    pub fn is_everything(&self) -> bool {
        self.reason.is_none() && self.key.is_none() && self.range.is_none()
    }

    pub fn matches(&self, record: &Record) -> bool {
        self.reason
            .as_deref()
            .is_none_or(|reason| record.header(dlq::REASON) == Some(reason))
            && self
                .key
                .as_deref()
                .is_none_or(|key| record.key.as_deref() == Some(key.as_bytes()))
            && self
                .range
                .is_none_or(|range| range.contains(record.partition, record.offset))
    }

    /// A description for messages, e.g. `reason rejected, key k-1`, or `every dead letter`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(reason) = &self.reason {
            parts.push(format!("reason {reason}"));
        }
        if let Some(key) = &self.key {
            parts.push(format!("key {key}"));
        }
        if let Some(range) = &self.range {
            let to = range
                .to
                .map_or_else(|| "end".to_owned(), |to| to.to_string());
            parts.push(format!(
                "partition {} offsets {}..={to}",
                range.partition, range.from
            ));
        }
        if parts.is_empty() {
            "every dead letter".into()
        } else {
            parts.join(", ")
        }
    }
}

/// When the message was dead-lettered: its `dlq.failed_at` header, else the record's timestamp.
pub fn failed_at(record: &Record) -> Option<DateTime<Utc>> {
    record
        .header(dlq::FAILED_AT)
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            record
                .timestamp_ms
                .and_then(DateTime::from_timestamp_millis)
        })
}

/// Dead letters of one (dead-letter topic, source topic, group, reason), for `list`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Group {
    pub dlq_topic: String,
    pub source_topic: String,
    pub group: String,
    pub reason: String,
    pub count: u64,
    /// How many of them the ledger says were redriven already.
    pub redriven: u64,
    pub first_failed_at: Option<String>,
    pub last_failed_at: Option<String>,
}

/// What is shown for a header a dead letter lacks.
pub const UNKNOWN: &str = "?";

/// Counts dead letters into [`Group`]s, one record at a time (values are not kept).
#[derive(Debug, Default)]
pub struct Summary {
    groups: BTreeMap<(String, String, String, String), Tally>,
}

#[derive(Debug, Default)]
struct Tally {
    count: u64,
    redriven: u64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

impl Summary {
    /// Counts `record`; `redriven` says whether the ledger has it.
    pub fn add(&mut self, record: &Record, redriven: bool) {
        let text = |name: &str| record.header(name).unwrap_or(UNKNOWN).to_owned();
        let key = (
            record.topic.clone(),
            text(dlq::ORIGINAL_TOPIC),
            text(dlq::GROUP),
            text(dlq::REASON),
        );
        let tally = self.groups.entry(key).or_default();
        tally.count += 1;
        tally.redriven += u64::from(redriven);
        if let Some(at) = failed_at(record) {
            tally.first = Some(tally.first.map_or(at, |first| first.min(at)));
            tally.last = Some(tally.last.map_or(at, |last| last.max(at)));
        }
    }

    /// The groups, ordered by dead-letter topic, source topic, group and reason.
    pub fn groups(self) -> Vec<Group> {
        let time =
            |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
        self.groups
            .into_iter()
            .map(|((dlq_topic, source_topic, group, reason), tally)| Group {
                dlq_topic,
                source_topic,
                group,
                reason,
                count: tally.count,
                redriven: tally.redriven,
                first_failed_at: time(tally.first),
                last_failed_at: time(tally.last),
            })
            .collect()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A dead letter of `test.orders` for group billing, at `partition`/`offset`.
    pub(in crate::dlq) fn letter(partition: i32, offset: i64, key: &str, reason: &str) -> Record {
        Record {
            topic: "test.orders.billing.dlq".into(),
            partition,
            offset,
            timestamp_ms: Some(1_700_000_000_000 + offset),
            key: Some(key.as_bytes().to_vec()),
            headers: vec![
                ("event_id".into(), Some(b"0190-e1".to_vec())),
                ("event_type".into(), Some(b"test.Step".to_vec())),
                (dlq::REASON.into(), Some(reason.as_bytes().to_vec())),
                (dlq::ERROR.into(), Some(b"no such sku".to_vec())),
                (dlq::ORIGINAL_TOPIC.into(), Some(b"test.orders".to_vec())),
                (dlq::ORIGINAL_PARTITION.into(), Some(b"1".to_vec())),
                (dlq::ORIGINAL_OFFSET.into(), Some(b"42".to_vec())),
                (
                    dlq::FAILED_AT.into(),
                    Some(format!("2024-05-01T10:00:{:02}.000Z", offset % 60).into_bytes()),
                ),
                (dlq::GROUP.into(), Some(b"billing".to_vec())),
            ],
            value: Some(b"value".to_vec()),
        }
    }

    #[test]
    fn an_empty_filter_selects_everything_and_says_so() {
        let filter = Filter::default();
        assert!(filter.is_everything());
        assert!(filter.matches(&letter(0, 1, "k", "rejected")));
        assert_eq!(filter.describe(), "every dead letter");
    }

    #[test]
    fn reason_key_and_range_must_all_match() {
        let filter = Filter {
            reason: Some("rejected".into()),
            key: Some("k-1".into()),
            range: Some(OffsetRange::new(0, Some(5), Some(7)).unwrap()),
        };
        assert!(filter.matches(&letter(0, 5, "k-1", "rejected")));
        assert!(filter.matches(&letter(0, 7, "k-1", "rejected")));
        assert!(
            !filter.matches(&letter(0, 8, "k-1", "rejected")),
            "past the end"
        );
        assert!(
            !filter.matches(&letter(1, 6, "k-1", "rejected")),
            "other partition"
        );
        assert!(
            !filter.matches(&letter(0, 6, "k-2", "rejected")),
            "other key"
        );
        assert!(
            !filter.matches(&letter(0, 6, "k-1", "malformed")),
            "other reason"
        );
        assert_eq!(
            filter.describe(),
            "reason rejected, key k-1, partition 0 offsets 5..=7"
        );
    }

    #[test]
    fn an_empty_or_negative_range_is_refused() {
        assert!(OffsetRange::new(0, Some(8), Some(7)).is_err());
        assert!(OffsetRange::new(-1, None, None).is_err());
        assert!(OffsetRange::new(0, Some(-3), None).is_err());
        let open = OffsetRange::new(2, None, None).unwrap();
        assert!(open.contains(2, 0) && open.contains(2, i64::MAX));
        assert_eq!(open.end_exclusive(), None);
    }

    #[test]
    fn letters_are_grouped_by_source_group_and_reason_with_their_time_span() {
        let mut summary = Summary::default();
        summary.add(&letter(0, 3, "a", "rejected"), false);
        summary.add(&letter(0, 1, "b", "rejected"), true);
        summary.add(&letter(1, 2, "c", "not_wire_format"), false);
        let groups = summary.groups();
        assert_eq!(groups.len(), 2);
        let rejected = groups.iter().find(|g| g.reason == "rejected").unwrap();
        assert_eq!((rejected.count, rejected.redriven), (2, 1));
        assert_eq!(rejected.source_topic, "test.orders");
        assert_eq!(rejected.group, "billing");
        assert_eq!(
            rejected.first_failed_at.as_deref(),
            Some("2024-05-01T10:00:01.000Z")
        );
        assert_eq!(
            rejected.last_failed_at.as_deref(),
            Some("2024-05-01T10:00:03.000Z")
        );
    }

    #[test]
    fn a_letter_without_dlq_headers_is_grouped_as_unknown() {
        let mut record = letter(0, 0, "k", "rejected");
        record.headers.clear();
        let mut summary = Summary::default();
        summary.add(&record, false);
        let group = &summary.groups()[0];
        assert_eq!(
            (group.source_topic.as_str(), group.reason.as_str()),
            ("?", "?")
        );
        assert!(
            group.first_failed_at.is_some(),
            "from the record's timestamp"
        );
    }

    const REASONS: [&str; 3] = ["rejected", "malformed", "not_wire_format"];
    const KEYS: [&str; 3] = ["k-0", "k-1", "k-2"];

    fn records() -> impl Strategy<Value = Vec<Record>> {
        proptest::collection::vec((0..3i32, 0..50i64, 0..3usize, 0..3usize), 0..60).prop_map(
            |items| {
                items
                    .into_iter()
                    .map(|(p, o, k, r)| letter(p, o, KEYS[k], REASONS[r]))
                    .collect()
            },
        )
    }

    fn filters() -> impl Strategy<Value = Filter> {
        (
            proptest::option::of(0..4usize),
            proptest::option::of(0..4usize),
            proptest::option::of((0..3i32, proptest::option::of(0..50i64), 0..30i64)),
        )
            .prop_map(|(reason, key, range)| Filter {
                // Index 3 names a reason or key no record has.
                reason: reason.map(|r| REASONS.get(r).copied().unwrap_or("none").to_owned()),
                key: key.map(|k| KEYS.get(k).copied().unwrap_or("none").to_owned()),
                range: range.map(|(partition, from, length)| {
                    let to = from.map(|from| from + length);
                    OffsetRange::new(partition, from, to).unwrap()
                }),
            })
    }

    proptest! {
        #[test]
        fn a_selection_holds_exactly_the_records_that_meet_every_criterion(
            records in records(),
            filter in filters(),
        ) {
            let selected: Vec<&Record> = records.iter().filter(|r| filter.matches(r)).collect();
            for record in &selected {
                if let Some(range) = &filter.range {
                    prop_assert_eq!(record.partition, range.partition());
                    prop_assert!(record.offset >= range.from());
                    prop_assert!(range.end_exclusive().is_none_or(|end| record.offset < end));
                }
                if let Some(reason) = &filter.reason {
                    prop_assert_eq!(record.header(dlq::REASON), Some(reason.as_str()));
                }
                if let Some(key) = &filter.key {
                    prop_assert_eq!(record.key_str(), Some(key.as_str()));
                }
            }
            let left_out = records.len() - selected.len();
            let expected_left_out = records.iter().filter(|r| {
                filter.reason.as_deref().is_some_and(|x| r.header(dlq::REASON) != Some(x))
                    || filter.key.as_deref().is_some_and(|x| r.key_str() != Some(x))
                    || filter.range.is_some_and(|range| !range.contains(r.partition, r.offset))
            }).count();
            prop_assert_eq!(left_out, expected_left_out, "nothing that meets them is left out");
        }
    }
}
