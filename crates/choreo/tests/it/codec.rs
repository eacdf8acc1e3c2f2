//! The Avro codec against the real registry: the Confluent wire format, schema evolution both
//! ways, typed errors for what can never be decoded, and no registry traffic once warm.

use choreo::avro::{Codec, CodecError, Event};
use serde::{Deserialize, Serialize};

use crate::{registry, unique};

const V1: &str = r#"{"type":"record","name":"Probe","namespace":"test.codec","fields":[
  {"name":"id","type":"string"},
  {"name":"amount_minor","type":"long"}]}"#;

/// V1 plus a field with a default: old and new must read each other.
const V2: &str = r#"{"type":"record","name":"Probe","namespace":"test.codec","fields":[
  {"name":"id","type":"string"},
  {"name":"amount_minor","type":"long"},
  {"name":"note","type":"string","default":"none"}]}"#;

/// V1 plus a field without a default: cannot read what V1 wrote.
const NEEDS_MORE: &str = r#"{"type":"record","name":"Probe","namespace":"test.codec","fields":[
  {"name":"id","type":"string"},
  {"name":"amount_minor","type":"long"},
  {"name":"required_now","type":"int"}]}"#;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Probe")]
struct ProbeV1 {
    id: String,
    amount_minor: i64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Probe")]
struct ProbeV2 {
    id: String,
    amount_minor: i64,
    note: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Probe")]
struct ProbeNeedsMore {
    id: String,
    amount_minor: i64,
    required_now: i32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Other {
    id: String,
}

macro_rules! event {
    ($ty:ty, $name:expr, $schema:expr) => {
        impl Event for $ty {
            const NAME: &'static str = $name;
            const SCHEMA: &'static str = $schema;
            const TOPIC: &'static str = "test.codec.unused";
        }
    };
}
event!(ProbeV1, "test.codec.Probe", V1);
event!(ProbeV2, "test.codec.Probe", V2);
event!(ProbeNeedsMore, "test.codec.Probe", NEEDS_MORE);
event!(
    Other,
    "test.codec.Other",
    r#"{"type":"record","name":"Other","namespace":"test.codec","fields":[{"name":"id","type":"string"}]}"#
);

fn codec() -> Codec {
    Codec::new(&registry()).expect("codec")
}

fn v1() -> ProbeV1 {
    ProbeV1 {
        id: "order-1".into(),
        amount_minor: 1999,
    }
}

#[tokio::test]
async fn an_event_round_trips_in_the_confluent_wire_format() {
    let codec = codec();
    let topic = unique("test.codec");
    let bytes = codec.encode_for(&topic, &v1()).await.unwrap();
    assert_eq!(bytes[0], 0, "magic byte");
    let (id, datum) = choreo::avro::wire::split(&bytes).unwrap();
    assert!(id > 0);
    assert_eq!(
        datum,
        [14, b'o', b'r', b'd', b'e', b'r', b'-', b'1', 0x9e, 0x1f],
        "Avro binary: zigzag length, text, zigzag long"
    );
    assert_eq!(codec.decode::<ProbeV1>(&bytes).await.unwrap(), v1());
    // A codec that has never seen the schema finds it by the id in the header.
    assert_eq!(self::codec().decode::<ProbeV1>(&bytes).await.unwrap(), v1());
}

#[tokio::test]
async fn a_newer_consumer_reads_an_older_producers_events_with_the_default() {
    let codec = codec();
    let topic = unique("test.codec");
    let old = codec.encode_for(&topic, &v1()).await.unwrap();
    let read = codec.decode::<ProbeV2>(&old).await.unwrap();
    assert_eq!(
        read,
        ProbeV2 {
            id: "order-1".into(),
            amount_minor: 1999,
            note: "none".into()
        }
    );
}

#[tokio::test]
async fn an_older_consumer_reads_a_newer_producers_events() {
    let codec = codec();
    let topic = unique("test.codec");
    codec.encode_for(&topic, &v1()).await.unwrap();
    let new = ProbeV2 {
        id: "order-2".into(),
        amount_minor: 5,
        note: "gift".into(),
    };
    let bytes = codec.encode_for(&topic, &new).await.unwrap();
    let (old_id, _) =
        choreo::avro::wire::split(&codec.encode_for(&topic, &v1()).await.unwrap()).unwrap();
    let (new_id, _) = choreo::avro::wire::split(&bytes).unwrap();
    assert_ne!(old_id, new_id, "the new version has its own id");
    assert_eq!(
        codec.decode::<ProbeV1>(&bytes).await.unwrap(),
        ProbeV1 {
            id: "order-2".into(),
            amount_minor: 5
        }
    );
}

#[tokio::test]
async fn a_reader_that_needs_a_field_old_events_lack_gets_a_schema_mismatch() {
    let codec = codec();
    let old = codec
        .encode_for(&unique("test.codec"), &v1())
        .await
        .unwrap();
    let err = codec.decode::<ProbeNeedsMore>(&old).await.unwrap_err();
    assert!(
        matches!(&err, CodecError::SchemaMismatch { expected, .. } if expected == "test.codec.Probe"),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn another_record_type_is_a_schema_mismatch() {
    let codec = codec();
    let bytes = codec
        .encode_for(&unique("test.codec"), &Other { id: "x".into() })
        .await
        .unwrap();
    let err = codec.decode::<ProbeV1>(&bytes).await.unwrap_err();
    assert!(
        matches!(&err, CodecError::SchemaMismatch { found, .. } if found == "test.codec.Other"),
        "{err}"
    );
}

#[tokio::test]
async fn garbage_bytes_are_not_our_wire_format() {
    let codec = codec();
    for garbage in [&b""[..], b"{\"order_id\":\"1\"}", b"\x00\x01"] {
        let err = codec.decode::<ProbeV1>(garbage).await.unwrap_err();
        assert!(matches!(err, CodecError::NotWireFormat(_)), "{err}");
        assert!(!err.is_retryable());
        let err = codec.decode_any(garbage).await.unwrap_err();
        assert!(matches!(err, CodecError::NotWireFormat(_)), "{err}");
    }
}

#[tokio::test]
async fn an_unknown_schema_id_is_a_typed_error() {
    let err = codec()
        .decode::<ProbeV1>(&[0, 0x7f, 0xff, 0xff, 0xf0, 2, b'x'])
        .await
        .unwrap_err();
    assert_eq!(err, CodecError::UnknownSchemaId { id: 0x7fff_fff0 });
    assert!(!err.is_retryable());
}

/// A registry behind a wrong path (or a proxy, or one still starting) answers 404 without the
/// registry's own "schema not found" body: that says nothing about the id, so it is retried,
/// never dead-lettered. So are answers like 401, 403 and 429 from a server that is not (yet) the
/// registry we expect.
#[tokio::test]
async fn a_registry_at_a_wrong_path_is_unavailable_not_an_unknown_schema() {
    let mut wrong = registry();
    wrong.url = format!("{}/not-the-registry", wrong.url);
    let codec = Codec::new(&wrong).expect("codec");
    let err = codec
        .decode::<ProbeV1>(&[0, 0, 0, 0, 1, 2, b'x'])
        .await
        .unwrap_err();
    assert!(
        matches!(err, CodecError::RegistryUnavailable { .. }),
        "{err}"
    );
    assert!(err.is_retryable());
    for status in ["401 Unauthorized", "403 Forbidden", "429 Too Many Requests"] {
        let url = answering(status).await;
        let codec = Codec::new(&choreo::RegistryConfig::parse(&url).unwrap()).expect("codec");
        let err = codec
            .decode::<ProbeV1>(&[0, 0, 0, 0, 1, 2, b'x'])
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{status}: {err}");
        let err = codec.encode_for("t", &v1()).await.unwrap_err();
        assert!(err.is_retryable(), "{status} on registration: {err}");
    }
}

/// A one-line HTTP server that answers every request with `status` and a JSON error body, as an
/// auth proxy or a rate limiter in front of the registry would.
async fn answering(status: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer).await;
                let code = &status[..3];
                let body = format!(r#"{{"error_code":{code},"message":"{status}"}}"#);
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn a_truncated_or_padded_datum_is_malformed() {
    let codec = codec();
    let bytes = codec
        .encode_for(&unique("test.codec"), &v1())
        .await
        .unwrap();
    let err = codec
        .decode::<ProbeV1>(&bytes[..bytes.len() - 1])
        .await
        .unwrap_err();
    assert!(matches!(err, CodecError::Malformed { .. }), "{err}");
    let mut padded = bytes.clone();
    padded.push(0);
    let err = codec.decode::<ProbeV1>(&padded).await.unwrap_err();
    assert!(matches!(err, CodecError::Malformed { .. }), "{err}");
}

#[tokio::test]
async fn an_unreachable_registry_is_a_retryable_error() {
    let bytes = codec()
        .encode_for(&unique("test.codec"), &v1())
        .await
        .unwrap();
    let down =
        Codec::new(&choreo::RegistryConfig::parse("http://127.0.0.1:1/apis/ccompat/v7").unwrap())
            .unwrap();
    let err = down.decode::<ProbeV1>(&bytes).await.unwrap_err();
    assert!(
        matches!(err, CodecError::RegistryUnavailable { .. }),
        "{err}"
    );
    assert!(err.is_retryable());
    let err = down.encode_for("test.codec.down", &v1()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn ten_thousand_messages_after_warm_up_cost_no_registry_call() {
    let codec = codec();
    let topic = unique("test.codec");
    let warm = codec.encode_for(&topic, &v1()).await.unwrap();
    codec.decode::<ProbeV1>(&warm).await.unwrap();
    codec.decode_any(&warm).await.unwrap();
    let after_warm_up = codec.registry_calls();
    assert_eq!(
        after_warm_up, 3,
        "one lookup (not there yet), one registration, one schema fetch"
    );
    for i in 0..10_000 {
        let event = ProbeV1 {
            id: format!("order-{i}"),
            amount_minor: i,
        };
        let bytes = codec.encode_for(&topic, &event).await.unwrap();
        assert_eq!(codec.decode::<ProbeV1>(&bytes).await.unwrap(), event);
    }
    assert_eq!(codec.registry_calls(), after_warm_up);
}

#[tokio::test]
async fn a_generic_decode_names_the_record_and_gives_its_fields() {
    let codec = codec();
    let bytes = codec
        .encode_for(&unique("test.codec"), &v1())
        .await
        .unwrap();
    let (name, value) = codec.decode_any(&bytes).await.unwrap();
    assert_eq!(name, "test.codec.Probe");
    assert_eq!(
        value,
        apache_avro::types::Value::Record(vec![
            (
                "id".into(),
                apache_avro::types::Value::String("order-1".into())
            ),
            ("amount_minor".into(), apache_avro::types::Value::Long(1999)),
        ])
    );
}

/// The codec as a service runs it: as the service's read-only registry user.
fn read_only_codec() -> Codec {
    let stack_dir = std::env::var("STACK_DIR").expect("STACK_DIR in the stack's env file");
    let password = choreo::secret::from_path(
        "SCHEMA_REGISTRY_PASSWORD",
        &std::path::Path::new(&stack_dir).join("secrets/registry-order"),
    )
    .expect("the order service's registry password (scripts/stack up makes it)");
    let config = registry().with_credentials(Some(choreo::config::RegistryCredentials {
        username: "order".into(),
        password,
    }));
    Codec::new(&config).expect("codec")
}

#[tokio::test]
async fn a_read_only_user_encodes_with_a_registered_schema_but_cannot_register_one() {
    let topic = unique("test.codec");
    let service = read_only_codec();
    let err = service.encode_for(&topic, &v1()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("choreo schemas register"), "{err}");

    let registered = codec().encode_for(&topic, &v1()).await.unwrap();
    let encoded = service.encode_for(&topic, &v1()).await.unwrap();
    assert_eq!(encoded[..5], registered[..5], "the same schema id");
    assert_eq!(service.decode::<ProbeV1>(&encoded).await.unwrap(), v1());
}

#[tokio::test]
async fn an_anonymous_codec_is_refused_by_the_secured_registry() {
    let anonymous = Codec::new(&registry().with_credentials(None)).expect("codec");
    let err = anonymous
        .encode_for(&unique("test.codec"), &v1())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
}
