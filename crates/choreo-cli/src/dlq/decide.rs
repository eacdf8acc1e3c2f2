//! What a redrive does with each selected dead letter: send it back to its original topic with
//! its original key, value and headers (plus `redrive_count` and `redriven_from`), or skip it
//! and say why. Pure: the ledger's entry is looked up by the caller, producing is in
//! [`super::redrive`].

use choreo::consumer::dlq;

use super::ledger::Entry;
use super::select::{address_of, UNKNOWN};
use crate::read::Record;

/// Headers a redrive adds: how many times this event was redriven, and the dead letter it was
/// redriven from (`<dlq topic>/<partition>/<offset>`).
pub const REDRIVE_COUNT: &str = "redrive_count";
pub const REDRIVEN_FROM: &str = "redriven_from";

/// Record headers as read and as produced: name and value (which may be null).
pub type Headers = Vec<(String, Option<Vec<u8>>)>;

/// The prefix of the headers a consumer adds when it dead-letters a message.
const DLQ_HEADER_PREFIX: &str = "dlq.";

/// A dead letter on its way back to its original topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// The dead letter's address (the ledger key).
    pub from: String,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// The original headers (no `dlq.*`), with `redrive_count` and `redriven_from`.
    pub headers: Headers,
    pub redrive_count: u32,
    pub reason: String,
}

/// Why a selected dead letter is not redriven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The ledger has it (and `--again` was not given).
    AlreadyRedriven(Entry),
    /// It has no `dlq.original.topic` header, so there is nowhere to send it.
    NoOriginalTopic,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::AlreadyRedriven(entry) => write!(
                f,
                "already redriven at {} to {} (pass --again to redrive it again)",
                entry.redriven_at, entry.to
            ),
            Skip::NoOriginalTopic => write!(
                f,
                "it has no {} header: nowhere to send it",
                dlq::ORIGINAL_TOPIC
            ),
        }
    }
}

/// What to do with one selected dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Redrive(Redrive),
    Skip { from: String, why: Skip },
}

/// Decides about `record` given its ledger entry, if any: redrive it to its original topic, or
/// skip it (already redriven unless `again`; no original topic).
pub fn decide(record: &Record, ledger: Option<&Entry>, again: bool) -> Decision {
    let from = address_of(record);
    if let Some(entry) = ledger.filter(|_| !again) {
        return Decision::Skip {
            from,
            why: Skip::AlreadyRedriven(entry.clone()),
        };
    }
    let Some(topic) = record.header(dlq::ORIGINAL_TOPIC).filter(|t| !t.is_empty()) else {
        return Decision::Skip {
            from,
            why: Skip::NoOriginalTopic,
        };
    };
    let (headers, redrive_count) = redriven_headers(record, &from);
    Decision::Redrive(Redrive {
        topic: topic.to_owned(),
        key: record.key.clone(),
        value: record.value.clone(),
        headers,
        redrive_count,
        reason: record.header(dlq::REASON).unwrap_or(UNKNOWN).to_owned(),
        from,
    })
}

/// The headers of the redriven record: the original ones in their order, without the `dlq.*`
/// ones and any earlier `redrive_count`/`redriven_from`, then `redrive_count` (the previous one
/// plus 1) and `redriven_from`. Returns them with the new count.
pub fn redriven_headers(record: &Record, from: &str) -> (Headers, u32) {
    let count = record
        .header(REDRIVE_COUNT)
        .and_then(|c| c.trim().parse::<u32>().ok())
        .unwrap_or(0)
        .saturating_add(1);
    let mut headers: Headers = record
        .headers
        .iter()
        .filter(|(name, _)| {
            !name.starts_with(DLQ_HEADER_PREFIX) && name != REDRIVE_COUNT && name != REDRIVEN_FROM
        })
        .cloned()
        .collect();
    headers.push((REDRIVE_COUNT.into(), Some(count.to_string().into_bytes())));
    headers.push((REDRIVEN_FROM.into(), Some(from.as_bytes().to_vec())));
    (headers, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::select::tests::letter;

    fn entry() -> Entry {
        Entry {
            redriven_at: "2024-05-01T11:00:00.000Z".into(),
            to: "test.orders/1/99".into(),
            redrive_count: 1,
        }
    }

    #[test]
    fn a_redrive_keeps_the_original_and_drops_the_dead_letter_headers() {
        let record = letter(0, 7, "k-1", "rejected");
        let Decision::Redrive(redrive) = decide(&record, None, false) else {
            panic!("redriven");
        };
        assert_eq!(redrive.topic, "test.orders");
        assert_eq!(redrive.from, "test.orders.billing.dlq/0/7");
        assert_eq!(redrive.key.as_deref(), Some(&b"k-1"[..]));
        assert_eq!(redrive.value.as_deref(), Some(&b"value"[..]));
        let names: Vec<&str> = redrive.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["event_id", "event_type", REDRIVE_COUNT, REDRIVEN_FROM]
        );
        assert_eq!(redrive.headers[2].1.as_deref(), Some(&b"1"[..]));
        assert_eq!(
            redrive.headers[3].1.as_deref(),
            Some(&b"test.orders.billing.dlq/0/7"[..])
        );
    }

    #[test]
    fn a_second_redrive_counts_on_from_the_first() {
        let mut record = letter(0, 9, "k", "rejected");
        record
            .headers
            .insert(2, (REDRIVE_COUNT.into(), Some(b"2".to_vec())));
        record
            .headers
            .insert(3, (REDRIVEN_FROM.into(), Some(b"old/0/1".to_vec())));
        let (headers, count) = redriven_headers(&record, "new/0/9");
        assert_eq!(count, 3);
        let counts: Vec<_> = headers.iter().filter(|(n, _)| n == REDRIVE_COUNT).collect();
        assert_eq!(counts.len(), 1, "one redrive_count: {headers:?}");
        assert_eq!(counts[0].1.as_deref(), Some(&b"3"[..]));
    }

    #[test]
    fn a_letter_in_the_ledger_is_skipped_unless_again() {
        let record = letter(0, 1, "k", "rejected");
        assert_eq!(
            decide(&record, Some(&entry()), false),
            Decision::Skip {
                from: "test.orders.billing.dlq/0/1".into(),
                why: Skip::AlreadyRedriven(entry()),
            }
        );
        assert!(matches!(
            decide(&record, Some(&entry()), true),
            Decision::Redrive(_)
        ));
        assert!(Skip::AlreadyRedriven(entry())
            .to_string()
            .contains("--again"));
    }

    #[test]
    fn a_letter_with_no_original_topic_is_skipped() {
        let mut record = letter(0, 1, "k", "rejected");
        record.headers.retain(|(n, _)| n != dlq::ORIGINAL_TOPIC);
        assert!(matches!(
            decide(&record, None, false),
            Decision::Skip {
                why: Skip::NoOriginalTopic,
                ..
            }
        ));
    }
}
