//! The real parts of the local stack work from Rust: the broker (produce, consume in a group,
//! manual commits, headers, key partitioning), the schema registry (register, encode, fetch by id,
//! decode) and PostgreSQL (one database and role per service).
//!
use std::collections::BTreeMap;
use std::time::Duration;

use choreo::kafka::{consumer_config, partition_for_key, producer_config};
use futures::StreamExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;

use choreo::testing::TestTopic;

use crate::{kafka, registry, unique};

const WAIT: Duration = Duration::from_secs(30);

fn producer() -> FutureProducer {
    producer_config(&kafka(), "stack-test")
        .create()
        .expect("producer")
}

fn consumer(group: &str) -> StreamConsumer {
    consumer_config(&kafka(), group, "stack-test")
        .create()
        .expect("consumer")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_group_reads_what_was_produced_with_its_headers_and_commits_by_hand() {
    let topic = TestTopic::create("test.group", 3).await;
    let producer = producer();
    let mut sent = Vec::new();
    for seq in 0..12 {
        let key = format!("order-{}", seq % 4);
        let event_id = uuid::Uuid::now_v7().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "event_id",
                value: Some(event_id.as_str()),
            })
            .insert(Header {
                key: "event_type",
                value: Some("test.Probe"),
            });
        let payload = format!("payload-{seq}");
        let record = FutureRecord::to(&topic.name)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        let delivery = producer.send(record, WAIT).await.expect("delivered");
        sent.push((key, event_id, payload, delivery.partition, delivery.offset));
    }

    let group = unique("test-group");
    let consumer = consumer(&group);
    consumer.subscribe(&[&topic.name]).unwrap();
    let mut received = Vec::new();
    let mut stream = consumer.stream();
    while received.len() < sent.len() {
        let message = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("a message in time")
            .unwrap()
            .unwrap();
        let header = |name: &str| choreo::kafka::header(&message, name).map(str::to_owned);
        assert_eq!(header("event_type").as_deref(), Some("test.Probe"));
        received.push((
            String::from_utf8(message.key().unwrap().to_vec()).unwrap(),
            header("event_id").unwrap(),
            String::from_utf8(message.payload().unwrap().to_vec()).unwrap(),
            message.partition(),
            message.offset(),
        ));
        consumer.store_offset_from_message(&message).unwrap();
    }
    drop(stream);
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");

    // Everything arrived once, with its headers; every key kept its order.
    let mut by_event = received.clone();
    by_event.sort_by(|a, b| a.1.cmp(&b.1));
    let mut expected = sent.clone();
    expected.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(by_event, expected);
    for key in (0..4).map(|k| format!("order-{k}")) {
        let order_sent: Vec<_> = sent.iter().filter(|m| m.0 == key).map(|m| &m.1).collect();
        let order_received: Vec<_> = received
            .iter()
            .filter(|m| m.0 == key)
            .map(|m| &m.1)
            .collect();
        assert_eq!(order_sent, order_received, "order of {key}");
    }

    // The committed offsets are exactly past the last message of each partition.
    // Asked for named partitions: `Consumer::committed` (rdkafka 0.39, librdkafka 2.12.1) keeps a
    // reference that makes dropping the consumer hang forever.
    let mut partitions = rdkafka::TopicPartitionList::new();
    (0..3).for_each(|p| {
        partitions.add_partition(&topic.name, p);
    });
    let committed = consumer
        .committed_offsets(partitions, WAIT)
        .expect("committed offsets");
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for m in &sent {
        let entry = last.entry(m.3).or_insert(m.4);
        *entry = (*entry).max(m.4);
    }
    for (partition, offset) in last {
        let element = committed
            .find_partition(&topic.name, partition)
            .expect("partition committed");
        assert_eq!(
            element.offset(),
            Offset::Offset(offset + 1),
            "partition {partition}"
        );
    }
    drop(consumer);

    // A new member of the group starts where the commit left off: it sees only what is new.
    let late = FutureRecord::to(&topic.name).key("order-0").payload("late");
    producer.send(late, WAIT).await.expect("delivered");
    let again = self::consumer(&group);
    again.subscribe(&[&topic.name]).unwrap();
    let message = tokio::time::timeout(WAIT, again.recv())
        .await
        .expect("a message in time")
        .unwrap();
    assert_eq!(message.payload(), Some(&b"late"[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_always_lands_on_the_partition_a_java_producer_would_choose() {
    let topic = TestTopic::create("test.keys", 6).await;
    let producer = producer();
    let mut partitions_used = std::collections::BTreeSet::new();
    for round in 0..2 {
        for k in 0..30 {
            let key = format!("order-{k}");
            let record = FutureRecord::to(&topic.name).key(&key).payload("x");
            let partition = producer
                .send(record, WAIT)
                .await
                .expect("delivered")
                .partition;
            assert_eq!(
                partition,
                partition_for_key(key.as_bytes(), 6),
                "{key} in round {round}"
            );
            partitions_used.insert(partition);
        }
    }
    assert!(partitions_used.len() > 1, "keys spread over partitions");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_avro_schema_registered_in_the_registry_decodes_what_it_encoded() {
    use apache_avro::types::Value;
    use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
    use schema_registry_converter::async_impl::schema_registry::get_schema_by_id;
    use schema_registry_converter::schema_registry_common::{
        SchemaType, SubjectNameStrategy, SuppliedSchema,
    };

    #[derive(serde::Serialize)]
    struct Probe {
        id: String,
        amount_minor: i64,
    }
    let schema = r#"{"type":"record","name":"Probe","namespace":"test.stack","fields":[{"name":"id","type":"string"},{"name":"amount_minor","type":"long"}]}"#;
    let topic = unique("test.avro");
    let settings =
        choreo::avro::registry::settings(&registry(), std::time::Duration::from_secs(10))
            .expect("registry settings");
    let encoder = AvroEncoder::new(settings.clone());
    let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
        topic.clone(),
        SuppliedSchema::new(
            Some("test.stack.Probe".into()),
            SchemaType::Avro,
            schema.into(),
        ),
    );
    let bytes = encoder
        .encode_struct(
            Probe {
                id: "order-1".into(),
                amount_minor: 1999,
            },
            &strategy,
        )
        .await
        .expect("encoded and registered");

    assert_eq!(bytes[0], 0, "Confluent magic byte");
    let id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
    let registered = get_schema_by_id(id, &settings)
        .await
        .expect("the id in the wire format resolves");
    assert_eq!(
        apache_avro::Schema::parse_str(&registered.schema)
            .unwrap()
            .canonical_form(),
        apache_avro::Schema::parse_str(schema)
            .unwrap()
            .canonical_form()
    );

    let decoded = AvroDecoder::new(settings)
        .decode(Some(&bytes))
        .await
        .expect("decoded");
    assert_eq!(
        decoded.name.map(|n| n.fullname(None)),
        Some("test.stack.Probe".to_string())
    );
    assert_eq!(
        decoded.value,
        Value::Record(vec![
            ("id".into(), Value::String("order-1".into())),
            ("amount_minor".into(), Value::Long(1999))
        ])
    );
}
