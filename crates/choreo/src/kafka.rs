//! Kafka client settings that every service shares, so that no service has to remember them.
//!
//! Producers are idempotent with `acks=all` (no duplicates or reordering from retries) and
//! partition keys as the Java client does ([`partition_for_key`] says where a key lands); consumers
//! use the cooperative-sticky assignor and never commit or store offsets on their own: the caller
//! commits an offset only after its database transaction commits.

use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

fn base(kafka: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", client_id)
        // Requests are small and latency is what counts: no Nagle delay on the sockets
        // (librdkafka leaves it on by default).
        .set("socket.nagle.disable", "true");
    for (key, value) in kafka.security.client_properties() {
        config.set(key, value);
    }
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
        .set("heartbeat.interval.ms", "3000")
        // An event-driven consumer waits for events, not for full fetches: the broker answers a
        // fetch as soon as anything can be returned, and a read-committed fetch parked while a
        // transaction was open is answered after at most this long once it commits (librdkafka's
        // 500 ms default showed up as half a second per hop). An idle consumer asks 40 times a
        // second: a few small requests per partition leader, within Kafka's fetch sessions.
        .set("fetch.wait.max.ms", "25");
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

/// The partition Kafka's default partitioner (murmur2, as the Java client and our producers
/// use) gives `key` among `partitions`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    let positive = murmur2(key) & 0x7fff_ffff;
    i32::try_from(positive % partitions.max(1).unsigned_abs()).expect("below the partition count")
}

/// Kafka's murmur2 hash (seed 0x9747b28c), as in the Java client's `Utils.murmur2`.
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut h = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
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

    #[test]
    fn keys_are_partitioned_as_the_java_client_does() {
        // Values from the Java client's DefaultPartitioner (Utils.toPositive(murmur2(key)) % n).
        assert_eq!(murmur2(b"21") as i32, -973_932_308);
        assert_eq!(murmur2(b"foobar") as i32, -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985_981_536);
        assert_eq!(murmur2(b"abc") as i32, 479_470_107);
        assert_eq!(
            partition_for_key(b"foobar", 12),
            (-790_332_482_i32 & 0x7fff_ffff) % 12
        );
    }
}
