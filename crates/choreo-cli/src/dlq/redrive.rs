//! `choreo dlq redrive`: sends selected dead letters back to their original topic with their
//! original key, value and headers (plus `redrive_count` and `redriven_from`), through an
//! idempotent producer, and records each acknowledged one in the ledger ([`super::ledger`]) so
//! that it is not redriven twice by accident. What to send is decided in [`super::decide`].
//!
//! The consumer's inbox dedupes by `event_id`, which a redriven event keeps: even redriven twice
//! (with `--again`), an event is applied once.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use super::decide::{decide, Decision, Redrive};
use super::ledger::{self, Entry};
use super::RedriveArgs;
use crate::failure::Failure;

pub async fn run(
    kafka: &choreo::KafkaConfig,
    timeout: Duration,
    args: RedriveArgs,
) -> Result<(), Failure> {
    let filter = args.selection.filter()?;
    if filter.is_everything() && !args.all {
        return Err(Failure::BadInput(format!(
            "say which dead letters of {} to redrive: --reason, --key, --partition [--from-offset \
             N] [--to-offset M], or --all for every one",
            args.topic
        )));
    }
    let (admin, existing) = super::connect(kafka, timeout).await?;
    super::check_dlq_topic(&args.topic, &existing)?;
    if !args.dry_run {
        ledger::ensure(&admin, timeout).await?;
    }
    let topics = [args.topic.clone()];
    let ledger = ledger::read(kafka, timeout, &existing, &topics).await?;
    let letters = super::read_letters(kafka, timeout, &args.topic, &filter, None).await?;
    let decisions: Vec<Decision> = letters
        .iter()
        .map(|record| {
            let address = super::select::address_of(record);
            decide(record, ledger.get(&address), args.again)
        })
        .collect();

    let again = if args.again { ", --again" } else { "" };
    let dry_run = if args.dry_run { ", dry run" } else { "" };
    println!(
        "{} dead letter(s) of {} selected ({}){again}{dry_run}:",
        letters.len(),
        args.topic,
        filter.describe(),
    );
    let mut to_send = Vec::new();
    let mut skipped = 0;
    for decision in decisions {
        match decision {
            Decision::Redrive(redrive) => to_send.push(redrive),
            Decision::Skip { from, why } => {
                skipped += 1;
                println!("  skipped  {from}: {why}");
            }
        }
    }
    if args.dry_run {
        for redrive in &to_send {
            println!(
                "  would redrive  {} -> {} ({}, redrive_count {})",
                redrive.from, redrive.topic, redrive.reason, redrive.redrive_count
            );
        }
        println!(
            "Dry run: would redrive {}, skip {skipped}. Nothing was produced.",
            to_send.len()
        );
        return Ok(());
    }
    let outcome = send(kafka, timeout, &to_send).await?;
    println!(
        "Redriven {}, skipped {skipped}, failed {}.",
        outcome.redriven, outcome.failed
    );
    if outcome.failed > 0 || outcome.unrecorded > 0 {
        return Err(Failure::Error(anyhow::anyhow!(
            "{} dead letter(s) could not be redriven and {} redriven one(s) could not be \
             recorded in {} (redriving those again is harmless: the consumer's inbox skips an \
             event_id it has applied)",
            outcome.failed,
            outcome.unrecorded,
            ledger::TOPIC
        )));
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Outcome {
    redriven: usize,
    failed: usize,
    /// Redriven, but the ledger entry was not acknowledged.
    unrecorded: usize,
}

/// Produces every redrive in order, then, as each is acknowledged, its ledger entry; waits for
/// every delivery.
async fn send(
    kafka: &choreo::KafkaConfig,
    timeout: Duration,
    redrives: &[Redrive],
) -> Result<Outcome, Failure> {
    let producer: FutureProducer = choreo::kafka::producer_config(kafka, "choreo-dlq-redrive")
        .set("message.timeout.ms", timeout.as_millis().to_string())
        .create()
        .map_err(|e| Failure::Error(anyhow::anyhow!("cannot create a Kafka producer: {e}")))?;
    let mut pending = Vec::with_capacity(redrives.len());
    for redrive in redrives {
        let headers = redrive.headers.iter().fold(
            OwnedHeaders::new_with_capacity(redrive.headers.len()),
            |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: value.as_deref(),
                })
            },
        );
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&redrive.topic).headers(headers);
        if let Some(key) = &redrive.key {
            record = record.key(key);
        }
        if let Some(value) = &redrive.value {
            record = record.payload(value);
        }
        pending.push(enqueue(&producer, record).await);
    }

    let mut outcome = Outcome::default();
    let mut entries = Vec::new();
    for (redrive, delivery) in redrives.iter().zip(pending) {
        match delivered(delivery).await {
            Ok((partition, offset)) => {
                outcome.redriven += 1;
                let to = super::select::address(&redrive.topic, partition, offset);
                println!(
                    "  redriven {} -> {to} ({}, redrive_count {})",
                    redrive.from, redrive.reason, redrive.redrive_count
                );
                let entry = Entry {
                    redriven_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
                    to,
                    redrive_count: redrive.redrive_count,
                };
                let value = serde_json::to_vec(&entry).map_err(|e| Failure::Error(e.into()))?;
                let record = FutureRecord::to(ledger::TOPIC)
                    .key(redrive.from.as_bytes())
                    .payload(value.as_slice());
                entries.push((redrive, enqueue(&producer, record).await));
            }
            Err(error) => {
                outcome.failed += 1;
                println!("  failed   {} -> {}: {error}", redrive.from, redrive.topic);
            }
        }
    }
    for (redrive, delivery) in entries {
        if let Err(error) = delivered(delivery).await {
            outcome.unrecorded += 1;
            println!(
                "  unrecorded {}: redriven, but the ledger entry failed: {error}",
                redrive.from
            );
        }
    }
    Ok(outcome)
}

/// Enqueues `record`, waiting while the producer's queue is full.
async fn enqueue(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, [u8], [u8]>,
) -> Result<DeliveryFuture, KafkaError> {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// Where an enqueued record was written, once Kafka acknowledged it.
async fn delivered(delivery: Result<DeliveryFuture, KafkaError>) -> Result<(i32, i64), KafkaError> {
    match delivery?.await {
        Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
        Ok(Err((error, _))) => Err(error),
        Err(_) => Err(KafkaError::Canceled),
    }
}
