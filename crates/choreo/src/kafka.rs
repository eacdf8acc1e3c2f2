//! Kafka client settings that every service shares, so that no service has to remember them.
//!
//! Producers are idempotent with `acks=all` (no duplicates or reordering from retries) and
//! partition keys as the Java client does; consumers
//! use the cooperative-sticky assignor and never commit or store offsets on their own: the caller
//! stores an offset only after its database transaction commits.

use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

fn base(kafka: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", client_id);
    config
}

/// An idempotent producer: `acks=all`, bounded in-flight requests, retries without reordering.
pub fn producer_config(kafka: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut config = base(kafka, client_id);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        // The Java client's partitioner: a key lands on the same partition whichever client
        // produced it (librdkafka's default, consistent_random, uses CRC32 instead).
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("compression.type", "lz4");
    config
}

/// A consumer in `group` that starts from the earliest offset of a new group and commits only
/// what the caller stored explicitly. A member that dies without leaving (SIGKILL, a lost node)
/// keeps its partitions until its session times out: 10 s rather than librdkafka's 45 s, so
/// they move on quickly (heartbeats every 3 s keep a live member in).
pub fn consumer_config(kafka: &KafkaConfig, group: &str, client_id: &str) -> ClientConfig {
    let mut config = base(kafka, client_id);
    config
        .set("group.id", group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "3000");
    config
}

/// The value of header `name` of `message` as text (the last one, if repeated); `None` when
/// absent or not UTF-8. Our headers are UTF-8 text (see [`crate::envelope`]).
pub fn header<'m>(message: &'m impl Message, name: &str) -> Option<&'m str> {
    let headers = message.headers()?;
    headers
        .iter()
        .filter(|h| h.key == name)
        .last()
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

/// An admin client (topics, configs, groups).
pub fn admin_config(kafka: &KafkaConfig, client_id: &str) -> ClientConfig {
    base(kafka, client_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka() -> KafkaConfig {
        KafkaConfig::parse("127.0.0.1:9092").unwrap()
    }

    #[test]
    fn producers_are_idempotent_with_acks_all() {
        let config = producer_config(&kafka(), "t");
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
    }

    #[test]
    fn a_header_is_read_as_text_and_the_last_of_a_name_wins() {
        use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
        use rdkafka::Timestamp;
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "event_id",
                value: Some("first"),
            })
            .insert(Header {
                key: "binary",
                value: Some(&[0xff_u8, 0xfe][..]),
            })
            .insert(Header {
                key: "event_id",
                value: Some("second"),
            });
        let message = OwnedMessage::new(
            None,
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(headers),
        );
        assert_eq!(header(&message, "event_id"), Some("second"));
        assert_eq!(header(&message, "binary"), None, "not UTF-8");
        assert_eq!(header(&message, "missing"), None);
    }

    #[test]
    fn consumers_never_commit_on_their_own() {
        let config = consumer_config(&kafka(), "g", "t");
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(
            config.get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
    }
}
