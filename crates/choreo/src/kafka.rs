//! Kafka client settings that every service shares, so that no service has to remember them.
//!
//! Producers are idempotent with `acks=all` (no duplicates or reordering from retries) and
//! partition keys as the Java client does; consumers
//! use the cooperative-sticky assignor and never commit or store offsets on their own: the caller
//! stores an offset only after its database transaction commits.

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
/// what the caller stored explicitly.
pub fn consumer_config(kafka: &KafkaConfig, group: &str, client_id: &str) -> ClientConfig {
    let mut config = base(kafka, client_id);
    config
        .set("group.id", group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    config
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
