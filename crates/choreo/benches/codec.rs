//! Encode and decode cost of the Avro codec (`choreo::avro::Codec`) on its cached path (schema
//! registered, ids and prepared readers and writers in memory), measured by criterion beside two
//! baselines in the same run: plain apache-avro with a pre-parsed schema (`to_avro_datum` /
//! `from_avro_datum` through `Value`, no framing, no registry) and schema_registry_converter's
//! own `AvroEncoder` / `AvroDecoder` against the same registry (warm caches, decoded to the
//! typed event through `Value`, as a consumer would). Two records: an order with an array of
//! nested lines, and a flat payment.
//!
//! Needs the registry of the local stack (`scripts/stack up`, SCHEMA_REGISTRY_URL). Run with
//! `cargo bench -p choreo --bench codec` (or `scripts/bench codec`); criterion's report per case
//! is followed by the comparison: the median ns per operation of each case's samples and how
//! many times the codec's time each baseline takes.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use choreo::avro::{Codec, Event};
use criterion::Criterion;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;
use serde::{Deserialize, Serialize};

const TOPIC: &str = "bench.codec.v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderLine {
    sku: String,
    quantity: i32,
    unit_price_minor: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: String,
    customer_id: String,
    lines: Vec<OrderLine>,
    currency: String,
    total_minor: i64,
    placed_at: i64,
    deadline_at: i64,
}

impl Event for OrderPlaced {
    const NAME: &'static str = "bench.codec.OrderPlaced";
    const TOPIC: &'static str = TOPIC;
    const SCHEMA: &'static str = r#"{"type": "record", "name": "OrderPlaced", "namespace": "bench.codec",
      "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "customer_id", "type": "string"},
        {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "OrderLine",
          "fields": [
            {"name": "sku", "type": "string"},
            {"name": "quantity", "type": "int"},
            {"name": "unit_price_minor", "type": "long"}]}}},
        {"name": "currency", "type": "string"},
        {"name": "total_minor", "type": "long"},
        {"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "deadline_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}"#;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PaymentCaptured {
    order_id: String,
    payment_id: String,
    currency: String,
    amount_minor: i64,
    provider_reference: String,
    captured_at: i64,
}

impl Event for PaymentCaptured {
    const NAME: &'static str = "bench.codec.PaymentCaptured";
    const TOPIC: &'static str = TOPIC;
    const SCHEMA: &'static str = r#"{"type": "record", "name": "PaymentCaptured", "namespace": "bench.codec",
      "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "payment_id", "type": "string"},
        {"name": "currency", "type": "string"},
        {"name": "amount_minor", "type": "long"},
        {"name": "provider_reference", "type": "string"},
        {"name": "captured_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}"#;
}

fn order_placed() -> OrderPlaced {
    let line = |sku: &str, quantity, unit_price_minor| OrderLine {
        sku: sku.into(),
        quantity,
        unit_price_minor,
    };
    OrderPlaced {
        order_id: "0193f7a2-5b1c-7cc4-9a3e-2f1d7c9b8e01".into(),
        customer_id: "customer-42".into(),
        lines: vec![
            line("SKU-1001", 2, 1999),
            line("SKU-2002", 1, 4500),
            line("SKU-3003", 5, 250),
        ],
        currency: "EUR".into(),
        total_minor: 2 * 1999 + 4500 + 5 * 250,
        placed_at: 1_764_000_000_000,
        deadline_at: 1_764_000_030_000,
    }
}

fn payment_captured() -> PaymentCaptured {
    PaymentCaptured {
        order_id: "0193f7a2-5b1c-7cc4-9a3e-2f1d7c9b8e01".into(),
        payment_id: "0193f7a2-6001-7000-8000-000000000001".into(),
        currency: "EUR".into(),
        amount_minor: 9748,
        provider_reference: "psp-7f3a9c".into(),
        captured_at: 1_764_000_001_000,
    }
}

/// The codec, schema_registry_converter's encoder and decoder, and the runtime they run on.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    codec: Codec,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
}

const CHOREO: &str = "choreo codec";
const APACHE: &str = "apache-avro";
const CONVERTER: &str = "schema_registry_converter";

/// ns per operation of every timed call of each case, by (operation, record) then by encoder.
type Timings = BTreeMap<(&'static str, &'static str), BTreeMap<&'static str, Vec<f64>>>;
static TIMINGS: Mutex<Timings> = Mutex::new(BTreeMap::new());

/// Times `iters` runs of `op` for criterion and keeps the time per operation for the comparison.
fn timed(
    key: (&'static str, &'static str, &'static str),
    iters: u64,
    op: impl FnOnce(u64),
) -> Duration {
    let start = Instant::now();
    op(iters);
    let elapsed = start.elapsed();
    let (operation, record, who) = key;
    TIMINGS
        .lock()
        .unwrap()
        .entry((operation, record))
        .or_default()
        .entry(who)
        .or_default()
        .push(elapsed.as_nanos() as f64 / iters.max(1) as f64);
    elapsed
}

#[allow(deprecated)] // the plain functions are the baseline on purpose
fn bench_event<E: Event + Clone>(c: &mut Criterion, fx: &Fixture, event: &E) {
    let short = E::NAME.rsplit('.').next().unwrap();
    let schema = Schema::parse_str(E::SCHEMA).expect("schema");
    let strategy = SubjectNameStrategy::TopicRecordNameStrategy(TOPIC.into(), E::NAME.into());
    let bytes = fx
        .runtime
        .block_on(fx.codec.encode(event))
        .expect("warm-up encode registers the schema");
    fx.runtime
        .block_on(fx.codec.decode::<E>(&bytes))
        .expect("warm-up decode fetches the schema");
    let theirs = fx
        .runtime
        .block_on(fx.encoder.encode_struct(event, &strategy))
        .expect("warm-up: schema_registry_converter finds the registered schema");
    assert_eq!(theirs, bytes, "both write the same framed bytes");
    fx.runtime
        .block_on(fx.decoder.decode(Some(&bytes)))
        .expect("warm-up: schema_registry_converter fetches the schema");
    let datum = apache_avro::to_avro_datum(&schema, apache_avro::to_value(event).unwrap()).unwrap();
    println!(
        "{short}: {} bytes framed ({} of Avro datum)",
        bytes.len(),
        datum.len()
    );

    let mut group = c.benchmark_group(format!("encode {short}"));
    group.bench_function(CHOREO, |b| {
        b.iter_custom(|iters| {
            timed(("encode", short_name::<E>(), CHOREO), iters, |n| {
                fx.runtime.block_on(async {
                    for _ in 0..n {
                        black_box(fx.codec.encode(black_box(event)).await.unwrap());
                    }
                })
            })
        })
    });
    group.bench_function(APACHE, |b| {
        b.iter_custom(|iters| {
            timed(("encode", short_name::<E>(), APACHE), iters, |n| {
                for _ in 0..n {
                    let value = apache_avro::to_value(black_box(event)).unwrap();
                    black_box(apache_avro::to_avro_datum(&schema, value).unwrap());
                }
            })
        })
    });
    group.bench_function(CONVERTER, |b| {
        b.iter_custom(|iters| {
            timed(("encode", short_name::<E>(), CONVERTER), iters, |n| {
                fx.runtime.block_on(async {
                    for _ in 0..n {
                        let framed = fx.encoder.encode_struct(black_box(event), &strategy);
                        black_box(framed.await.unwrap());
                    }
                })
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group(format!("decode {short}"));
    group.bench_function(CHOREO, |b| {
        b.iter_custom(|iters| {
            timed(("decode", short_name::<E>(), CHOREO), iters, |n| {
                fx.runtime.block_on(async {
                    for _ in 0..n {
                        black_box(fx.codec.decode::<E>(black_box(&bytes)).await.unwrap());
                    }
                })
            })
        })
    });
    group.bench_function(APACHE, |b| {
        b.iter_custom(|iters| {
            timed(("decode", short_name::<E>(), APACHE), iters, |n| {
                for _ in 0..n {
                    let value =
                        apache_avro::from_avro_datum(&schema, &mut black_box(&datum[..]), None)
                            .unwrap();
                    black_box(apache_avro::from_value::<E>(&value).unwrap());
                }
            })
        })
    });
    group.bench_function(CONVERTER, |b| {
        b.iter_custom(|iters| {
            timed(("decode", short_name::<E>(), CONVERTER), iters, |n| {
                fx.runtime.block_on(async {
                    for _ in 0..n {
                        let decoded = fx.decoder.decode(Some(black_box(&bytes))).await.unwrap();
                        black_box(apache_avro::from_value::<E>(&decoded.value).unwrap());
                    }
                })
            })
        })
    });
    group.finish();
}

fn short_name<E: Event>() -> &'static str {
    E::NAME.rsplit('.').next().unwrap()
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The comparison: per operation and record, the codec's median ns/op and each baseline's, with
/// how many times the codec's time it takes.
fn print_comparison() {
    let timings = std::mem::take(&mut *TIMINGS.lock().unwrap());
    if timings.is_empty() {
        return;
    }
    println!("\ncodec comparison: median ns per operation of the timed samples (lower is better)");
    for ((operation, record), cases) in timings {
        let mut medians: BTreeMap<&str, f64> = cases
            .into_iter()
            .map(|(who, samples)| (who, median(samples)))
            .collect();
        let ours = medians.remove(CHOREO).unwrap_or(f64::NAN);
        let baselines: Vec<String> = [APACHE, CONVERTER]
            .iter()
            .filter_map(|who| medians.get(who).map(|ns| (who, ns)))
            .map(|(who, ns)| format!("{who} {ns:>6.0} ({:.2}x)", ns / ours))
            .collect();
        println!(
            "  {operation} {record:<16} {CHOREO} {ours:>6.0}   {}",
            baselines.join("   ")
        );
    }
    println!("  (Nx: the baseline takes N times the codec's time; apache-avro has no framing and no registry)");
}

fn main() {
    choreo::config::load_env_file();
    let registry =
        choreo::RegistryConfig::from_env().expect("the registry address (run scripts/stack up)");
    let settings = choreo::avro::registry::settings(&registry, Duration::from_secs(10))
        .expect("schema_registry_converter settings");
    let fixture = Fixture {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        codec: Codec::new(&registry).expect("codec"),
        encoder: AvroEncoder::new(settings.clone()),
        decoder: AvroDecoder::new(settings),
    };
    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_event(&mut criterion, &fixture, &order_placed());
    bench_event(&mut criterion, &fixture, &payment_captured());
    criterion.final_summary();
    print_comparison();
    let calls = fixture.codec.registry_calls();
    println!("registry calls of the codec during the whole run: {calls} (warm-up only: one registration and one fetch per record)");
}
