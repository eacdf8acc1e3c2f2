//! Which rows of a failed batch can never be published, and so are parked (see
//! [`crate::outbox::park`]): a pure decision, tested without Kafka.
//!
//! Permanent at first sight: a value the producer or broker rejects for its size or form, an
//! invalid topic name. Permanent once it persists: an unknown topic or partition (a topic may be
//! created moments after its first event, or still propagating), after `grace`. Anything else
//! (timeouts, lost brokers, authorisation, fencing) is retried with backoff, never parked.
//!
//! A row is parked only from the front of its key in the batch (so that no earlier row of its key
//! waits behind it), and only when the fault is its own: a broker rejects a whole produce batch
//! for one record that is too large, so when several rows were rejected the next batch stops
//! before the first of them, and then sends it alone. Later rows of a parked row's key wait
//! behind it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode as Code;

use super::Row;

/// What a row's publish error says about the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// It can never be published as it is.
    Permanent,
    /// Its topic does not exist (yet?).
    UnknownTopic,
    /// Anything else: retry.
    Transient,
}

pub(super) fn fault(error: &KafkaError) -> Fault {
    match error.rdkafka_error_code() {
        Some(
            Code::MessageSizeTooLarge
            | Code::InvalidMessageSize
            | Code::InvalidMessage
            | Code::InvalidRecord
            | Code::MessageBatchTooLarge
            | Code::InvalidTopic
            | Code::PolicyViolation,
        ) => Fault::Permanent,
        Some(Code::UnknownTopic | Code::UnknownTopicOrPartition | Code::UnknownPartition) => {
            Fault::UnknownTopic
        }
        _ => Fault::Transient,
    }
}

/// What to do after a failed batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Decision {
    /// Rows to park now, by index in the batch, with the reason.
    pub park: Vec<(usize, String)>,
    /// Send at most this many rows next, to publish what precedes a row that must be parked.
    pub limit: Option<usize>,
}

/// The parking rules and when each unknown topic was first seen.
#[derive(Debug)]
pub(super) struct Parking {
    grace: Duration,
    unknown_since: HashMap<String, Instant>,
}

impl Parking {
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            unknown_since: HashMap::new(),
        }
    }

    /// A batch was published: whatever was unknown is counted afresh.
    pub fn published(&mut self) {
        self.unknown_since.clear();
    }

    /// What the failures of `rows` (by index) call for at `now`.
    pub fn decide(
        &mut self,
        rows: &[Row],
        failed: &[(usize, KafkaError)],
        now: Instant,
    ) -> Decision {
        let first_of_key = |index: usize| {
            let row = &rows[index];
            !rows[..index]
                .iter()
                .any(|r| r.topic == row.topic && r.key == row.key)
        };
        let mut decision = Decision::default();
        let mut rejected = Vec::new();
        for (index, error) in failed {
            match fault(error) {
                Fault::Permanent => rejected.push((*index, error)),
                Fault::UnknownTopic => {
                    let topic = &rows[*index].topic;
                    let since = *self.unknown_since.entry(topic.clone()).or_insert(now);
                    // Every row of a missing topic fails, so each key's first row is among them.
                    if now.duration_since(since) >= self.grace && first_of_key(*index) {
                        decision.park.push((*index, error.to_string()));
                    }
                }
                Fault::Transient => {}
            }
        }
        match rejected.as_slice() {
            [] => {}
            [(index, error)] if first_of_key(*index) => {
                decision.park.push((*index, error.to_string()));
                decision.park.sort_by_key(|(index, _)| *index);
            }
            // A broker rejects a whole produce batch for one bad record, so several rejected
            // rows are innocent but one: publish what precedes the first, then try it alone.
            [(index, _), ..] if decision.park.is_empty() => {
                decision.limit = Some((*index).max(1));
            }
            _ => {}
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, topic: &str, key: &str) -> Row {
        Row {
            id,
            created_at: chrono::Utc::now(),
            topic: topic.into(),
            key: key.into(),
            value: Vec::new(),
            headers: Vec::new(),
        }
    }

    fn error(code: Code) -> KafkaError {
        KafkaError::MessageProduction(code)
    }

    #[test]
    fn only_a_definite_rejection_of_the_row_is_permanent() {
        assert_eq!(fault(&error(Code::MessageSizeTooLarge)), Fault::Permanent);
        assert_eq!(fault(&error(Code::InvalidRecord)), Fault::Permanent);
        assert_eq!(fault(&error(Code::UnknownTopic)), Fault::UnknownTopic);
        for transient in [
            Code::MessageTimedOut,
            Code::RequestTimedOut,
            Code::AllBrokersDown,
            Code::TopicAuthorizationFailed,
            Code::ProducerFenced,
            Code::PurgeQueue,
        ] {
            assert_eq!(fault(&error(transient)), Fault::Transient, "{transient:?}");
        }
        assert_eq!(fault(&KafkaError::Canceled), Fault::Transient);
    }

    #[test]
    fn a_too_large_row_at_the_front_of_its_key_is_parked_at_once() {
        let rows = [row(1, "t", "a"), row(2, "t", "b"), row(3, "t", "b")];
        let failed = [(1, error(Code::MessageSizeTooLarge))];
        let decision = Parking::new(Duration::from_secs(60)).decide(&rows, &failed, Instant::now());
        assert_eq!(decision.park.len(), 1);
        assert_eq!(decision.park[0].0, 1);
        assert_eq!(decision.limit, None);
    }

    #[test]
    fn a_row_behind_an_earlier_row_of_its_key_waits_for_the_prefix_to_be_published() {
        let rows = [row(1, "t", "a"), row(2, "t", "b"), row(3, "t", "a")];
        let failed = [(2, error(Code::MessageSizeTooLarge))];
        let decision = Parking::new(Duration::ZERO).decide(&rows, &failed, Instant::now());
        assert!(decision.park.is_empty());
        assert_eq!(decision.limit, Some(2));
    }

    #[test]
    fn an_unknown_topic_is_parked_only_once_it_persisted_past_the_grace() {
        let rows = [
            row(1, "gone", "a"),
            row(2, "gone", "a"),
            row(3, "gone", "b"),
        ];
        let failed: Vec<_> = (0..3).map(|i| (i, error(Code::UnknownTopic))).collect();
        let mut parking = Parking::new(Duration::from_secs(5));
        let start = Instant::now();
        assert_eq!(parking.decide(&rows, &failed, start), Decision::default());
        let later = parking.decide(&rows, &failed, start + Duration::from_secs(5));
        let indexes: Vec<usize> = later.park.iter().map(|p| p.0).collect();
        assert_eq!(indexes, [0, 2], "the first row of each key");
        assert_eq!(later.limit, None);
    }

    #[test]
    fn a_published_batch_restarts_the_grace() {
        let rows = [row(1, "gone", "a")];
        let failed = [(0, error(Code::UnknownTopicOrPartition))];
        let mut parking = Parking::new(Duration::from_secs(5));
        let start = Instant::now();
        parking.decide(&rows, &failed, start);
        parking.published();
        let after = parking.decide(&rows, &failed, start + Duration::from_secs(6));
        assert!(after.park.is_empty());
    }

    #[test]
    fn rows_rejected_together_are_tried_alone_before_one_is_parked() {
        let rows = [row(1, "t", "a"), row(2, "t", "b"), row(3, "t", "c")];
        let both = [
            (1, error(Code::MessageSizeTooLarge)),
            (2, error(Code::MessageSizeTooLarge)),
        ];
        let mut parking = Parking::new(Duration::ZERO);
        let decision = parking.decide(&rows, &both, Instant::now());
        assert_eq!((decision.park.len(), decision.limit), (0, Some(1)));
        let decision = parking.decide(
            &rows[1..],
            &[(0, both[0].1.clone()), (1, both[1].1.clone())],
            Instant::now(),
        );
        assert_eq!(
            (decision.park.len(), decision.limit),
            (0, Some(1)),
            "alone next"
        );
        let alone = parking.decide(
            &rows[1..2],
            &[(0, error(Code::MessageSizeTooLarge))],
            Instant::now(),
        );
        assert_eq!(alone.park.len(), 1);
    }

    #[test]
    fn transient_failures_park_nothing() {
        let rows = [row(1, "t", "a")];
        let failed = [(0, error(Code::MessageTimedOut))];
        let decision = Parking::new(Duration::ZERO).decide(&rows, &failed, Instant::now());
        assert_eq!(decision, Decision::default());
    }
}
