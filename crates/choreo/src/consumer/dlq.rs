//! Dead letters: a message that can never be applied goes to `<topic>.<group>.dlq` with its
//! original key, value and headers, plus headers saying why and where it came from.

use chrono::{SecondsFormat, Utc};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The dead-letter topic of `group` for `topic`.
pub fn topic(topic: &str, group: &str) -> String {
    format!("{topic}.{group}.dlq")
}

pub const REASON: &str = "dlq.reason";
pub const ERROR: &str = "dlq.error";
pub const ATTEMPTS: &str = "dlq.attempts";
pub const ORIGINAL_TOPIC: &str = "dlq.original.topic";
pub const ORIGINAL_PARTITION: &str = "dlq.original.partition";
pub const ORIGINAL_OFFSET: &str = "dlq.original.offset";
pub const FAILED_AT: &str = "dlq.failed_at";
pub const GROUP: &str = "dlq.group";

/// A message on its way to the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub reason: &'static str,
    pub error: String,
    pub attempts: u32,
}

impl DeadLetter {
    /// The headers it is written with: the original ones, then ours.
    pub fn headers(&self, group: &str) -> Vec<(String, Vec<u8>)> {
        let mut headers = self.headers.clone();
        let ours = [
            (REASON, self.reason.to_owned()),
            (ERROR, self.error.clone()),
            (ATTEMPTS, self.attempts.to_string()),
            (ORIGINAL_TOPIC, self.topic.clone()),
            (ORIGINAL_PARTITION, self.partition.to_string()),
            (ORIGINAL_OFFSET, self.offset.to_string()),
            (
                FAILED_AT,
                Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            ),
            (GROUP, group.to_owned()),
        ];
        headers.extend(
            ours.into_iter()
                .map(|(k, v)| (k.to_owned(), v.into_bytes())),
        );
        headers
    }

    /// Writes it and waits for Kafka's acknowledgement.
    pub async fn send(
        &self,
        producer: &FutureProducer,
        group: &str,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let headers = self.headers(group);
        let owned = headers.iter().fold(
            OwnedHeaders::new_with_capacity(headers.len()),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v),
                })
            },
        );
        let target = topic(&self.topic, group);
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&target).headers(owned);
        if let Some(key) = &self.key {
            record = record.key(key);
        }
        if let Some(value) = &self.value {
            record = record.payload(value);
        }
        producer
            .send(record, std::time::Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_keeps_the_original_headers_and_says_why() {
        let letter = DeadLetter {
            topic: "shop.orders.v1".into(),
            partition: 3,
            offset: 42,
            key: Some(b"order-1".to_vec()),
            value: Some(b"garbage".to_vec()),
            headers: vec![("event_id".into(), b"e-1".to_vec())],
            reason: "not_wire_format",
            error: "bad magic".into(),
            attempts: 1,
        };
        let headers = letter.headers("inventory");
        assert_eq!(headers[0], ("event_id".to_string(), b"e-1".to_vec()));
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(get(REASON).as_deref(), Some("not_wire_format"));
        assert_eq!(get(ORIGINAL_OFFSET).as_deref(), Some("42"));
        assert_eq!(get(GROUP).as_deref(), Some("inventory"));
        assert_eq!(
            topic("shop.orders.v1", "inventory"),
            "shop.orders.v1.inventory.dlq"
        );
    }
}
