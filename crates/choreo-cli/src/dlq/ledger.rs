//! The redrive ledger: the compacted topic `choreo.dlq.redrives`, one record per dead letter
//! redriven, keyed by its address `<dlq topic>/<partition>/<offset>`. A redrive reads it first
//! and skips what it holds, so the same dead letter is not redriven twice by accident; an entry
//! is written only after the redriven record was acknowledged. A tombstone (null value) forgets
//! an entry.
//!
//! The ledger's format and its fold are pure; creating and reading the topic are the edges at
//! the bottom. Writing entries is part of the redrive ([`super::redrive`]).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use crate::failure::Failure;
use crate::read::{Selection, Start, Stop};
use crate::topics::cluster::Admin;

/// The ledger's topic.
pub const TOPIC: &str = "choreo.dlq.redrives";

/// One redrive, as the ledger records it (JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// When the redriven record was acknowledged (RFC 3339).
    pub redriven_at: String,
    /// Where it was written: `<topic>/<partition>/<offset>`.
    pub to: String,
    /// The `redrive_count` header it carried.
    pub redrive_count: u32,
}

/// The latest entry per dead-letter address.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: HashMap<String, Entry>,
}

impl Ledger {
    /// Applies one ledger record: a value records (or replaces) an entry, a tombstone forgets it.
    /// A value that is not an entry still counts as redriven, with unknown details.
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) {
        match value {
            None => {
                self.entries.remove(key);
            }
            Some(bytes) => {
                let entry = serde_json::from_slice(bytes).unwrap_or_else(|_| Entry {
                    redriven_at: "an unknown time".into(),
                    to: "an unknown place".into(),
                    redrive_count: 0,
                });
                self.entries.insert(key.to_owned(), entry);
            }
        }
    }

    pub fn get(&self, address: &str) -> Option<&Entry> {
        self.entries.get(address)
    }

    pub fn contains(&self, address: &str) -> bool {
        self.entries.contains_key(address)
    }
}

/// Creates the ledger topic (1 partition, `cleanup.policy=compact`, the broker's replication
/// factor) unless it exists.
pub async fn ensure(admin: &Admin, timeout: Duration) -> Result<(), Failure> {
    let topic =
        NewTopic::new(TOPIC, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = admin
        .create_topics(&[topic], &options)
        .await
        .map_err(|e| Failure::Error(anyhow::anyhow!("cannot create {TOPIC}: {e}")))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(Failure::Error(anyhow::anyhow!(
                    "cannot create the redrive ledger {TOPIC}: {code}"
                )))
            }
        }
    }
    Ok(())
}

/// Reads the ledger's entries for dead letters of `dlq_topics`; empty when the ledger topic is
/// not in `existing` (nothing was ever redriven).
pub async fn read(
    kafka: &choreo::KafkaConfig,
    timeout: Duration,
    existing: &BTreeSet<String>,
    dlq_topics: &[String],
) -> Result<Ledger, Failure> {
    if !existing.contains(TOPIC) {
        return Ok(Ledger::default());
    }
    let prefixes: Vec<String> = dlq_topics.iter().map(|t| format!("{t}/")).collect();
    let selection = Selection {
        topics: vec![TOPIC.to_owned()],
        partitions: None,
        start: Start::Beginning,
        stop: Stop::End,
    };
    super::scan(
        kafka,
        selection,
        timeout,
        Ledger::default(),
        |ledger, record| {
            if let Some(key) = record.key_str() {
                if prefixes.iter().any(|p| key.starts_with(p.as_str())) {
                    ledger.apply(key, record.value.as_deref());
                }
            }
            std::ops::ControlFlow::Continue(())
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_entry_wins_and_a_tombstone_forgets() {
        let mut ledger = Ledger::default();
        let first = br#"{"redriven_at":"t1","to":"a/0/1","redrive_count":1}"#;
        let second = br#"{"redriven_at":"t2","to":"a/0/5","redrive_count":2}"#;
        ledger.apply("d.dlq/0/3", Some(first));
        ledger.apply("d.dlq/0/3", Some(second));
        assert_eq!(ledger.get("d.dlq/0/3").unwrap().to, "a/0/5");
        ledger.apply("d.dlq/0/3", None);
        assert!(!ledger.contains("d.dlq/0/3"));
    }

    #[test]
    fn an_unreadable_entry_still_counts_as_redriven() {
        let mut ledger = Ledger::default();
        ledger.apply("d.dlq/1/2", Some(b"by hand"));
        assert!(ledger.contains("d.dlq/1/2"));
    }
}
