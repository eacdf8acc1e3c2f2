//! Encode and decode cost of the Avro codec on its cached path (schema registered, ids and
//! prepared readers/writers in memory), beside plain apache-avro with a pre-parsed schema
//! (`to_avro_datum` / `from_avro_datum` through `Value`) measured in the same run.
//!
//! Needs the registry of the local stack for the warm-up (`scripts/stack up`). Run with
//! `cargo bench -p shop-events --bench codec` (or `scripts/bench`). Prints, per case, the median
//! of 31 batches of 20,000 operations in ns/op with the 10th and 90th percentile beside it.

use std::hint::black_box;
use std::time::Instant;

use apache_avro::Schema;
use choreo::avro::{Codec, Event};
use shop_events::{OrderLine, OrderPlaced, PaymentCaptured};

const BATCHES: usize = 31;
const PER_BATCH: u32 = 20_000;

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

/// Median, p10 and p90 of ns per operation over `BATCHES` timed batches (after one untimed).
fn measure(mut batch: impl FnMut(u32)) -> (f64, f64, f64) {
    batch(PER_BATCH);
    let mut samples: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            batch(PER_BATCH);
            start.elapsed().as_nanos() as f64 / f64::from(PER_BATCH)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (
        samples[BATCHES / 2],
        samples[BATCHES / 10],
        samples[BATCHES * 9 / 10],
    )
}

fn report(case: &str, (median, p10, p90): (f64, f64, f64), baseline: Option<f64>) {
    let ratio = baseline
        .map(|b| format!("  ({:.2}x baseline)", median / b))
        .unwrap_or_default();
    println!("{case:<46} median {median:>8.0} ns/op   p10 {p10:>6.0}   p90 {p90:>6.0}{ratio}");
}

#[allow(deprecated)] // the plain functions are the baseline on purpose
fn bench_event<E: Event>(runtime: &tokio::runtime::Runtime, codec: &Codec, event: &E) {
    let schema = Schema::parse_str(E::SCHEMA).expect("schema");
    let bytes = runtime
        .block_on(codec.encode(event))
        .expect("warm-up encode registers the schema");
    runtime
        .block_on(codec.decode::<E>(&bytes))
        .expect("warm-up decode fetches the schema");
    let datum = apache_avro::to_avro_datum(&schema, apache_avro::to_value(event).unwrap()).unwrap();
    let short = E::NAME.rsplit('.').next().unwrap();
    println!(
        "{short}: {} bytes framed ({} of Avro datum)",
        bytes.len(),
        datum.len()
    );

    let base_encode = measure(|n| {
        for _ in 0..n {
            let value = apache_avro::to_value(black_box(event)).unwrap();
            black_box(apache_avro::to_avro_datum(&schema, value).unwrap());
        }
    });
    let base_decode = measure(|n| {
        for _ in 0..n {
            let value =
                apache_avro::from_avro_datum(&schema, &mut black_box(&datum[..]), None).unwrap();
            black_box(apache_avro::from_value::<E>(&value).unwrap());
        }
    });
    let encode = measure(|n| {
        runtime.block_on(async {
            for _ in 0..n {
                black_box(codec.encode(black_box(event)).await.unwrap());
            }
        })
    });
    let decode = measure(|n| {
        runtime.block_on(async {
            for _ in 0..n {
                black_box(codec.decode::<E>(black_box(&bytes)).await.unwrap());
            }
        })
    });
    report(
        &format!("  baseline apache-avro encode {short}"),
        base_encode,
        None,
    );
    report(
        &format!("  choreo codec encode {short}"),
        encode,
        Some(base_encode.0),
    );
    report(
        &format!("  baseline apache-avro decode {short}"),
        base_decode,
        None,
    );
    report(
        &format!("  choreo codec decode {short}"),
        decode,
        Some(base_decode.0),
    );
}

fn main() {
    choreo::config::load_env_file();
    let registry =
        choreo::RegistryConfig::from_env().expect("the registry address (run scripts/stack up)");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let codec = Codec::new(&registry).expect("codec");
    println!("codec bench: {BATCHES} batches x {PER_BATCH} ops, ns per op (lower is better)");
    bench_event(&runtime, &codec, &order_placed());
    bench_event(&runtime, &codec, &payment_captured());
    let calls = codec.registry_calls();
    println!("registry calls during the whole run: {calls} (warm-up only: one registration and one fetch per event type)");
}
