//! The relay's Kafka side: one transactional producer ([`Txn`]) and the batch it carries.
//!
//! Every call into Kafka is bounded by the relay's `kafka_timeout`, and librdkafka's blocking
//! transactional calls (init, commit, abort) run in short slices on the blocking pool, so a relay
//! told to stop never waits on a broker that does not answer for more than a slice. A producer
//! whose transaction failed in any way is dropped, never reused: the relay creates a new one,
//! whose `init_transactions` fences and aborts whatever the old one left open (Jepsen's Bufstream
//! analysis found lost and torn transactions when a client kept going after an indefinite error,
//! and recommends exactly this). This module knows nothing of the database.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use super::Row;
use crate::config::KafkaConfig;

/// The longest one blocking librdkafka call runs before the relay looks again.
const SLICE: Duration = Duration::from_millis(250);

/// How a relay's producer is set up.
pub(super) struct Settings<'a> {
    pub kafka: &'a KafkaConfig,
    pub transactional_id: &'a str,
    /// Bound of every Kafka step (init, a batch's deliveries, commit).
    pub timeout: Duration,
    /// How long a topic without metadata is taken to be still propagating.
    pub propagation: Duration,
}

/// A transactional producer, initialised; dropped off the async workers.
pub(super) struct Txn {
    producer: Option<FutureProducer>,
    timeout: Duration,
}

/// A batch sent in an open transaction: its delivery reports to come, and the row the producer
/// refused at once, if any (no row after it was sent).
pub(super) struct InFlight {
    deliveries: Vec<(usize, DeliveryFuture)>,
    refused: Option<(usize, KafkaError)>,
}

impl Txn {
    /// A new producer with its transactions initialised (which aborts what an earlier producer
    /// of the same `transactional.id` left open).
    pub async fn create(settings: &Settings<'_>) -> KafkaResult<Txn> {
        let millis = |d: Duration| d.as_millis().to_string();
        let mut config = crate::kafka::producer_config(settings.kafka, settings.transactional_id);
        config
            .set("transactional.id", settings.transactional_id)
            // A delivery that has not happened within the bound fails (MessageTimedOut) and the
            // producer is replaced; the transaction's own timeout must not be shorter.
            .set("message.timeout.ms", millis(settings.timeout))
            .set(
                "transaction.timeout.ms",
                millis((settings.timeout * 3).max(Duration::from_secs(30))),
            )
            .set(
                "topic.metadata.propagation.max.ms",
                millis(settings.propagation),
            )
            // Back within a second of a broker that restarted, not librdkafka's 10 s.
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "1000")
            // A batch that begins while the broker still writes the previous commit's markers
            // gets CONCURRENT_TRANSACTIONS on AddPartitionsToTxn; the default 100 ms backoff
            // before the retry was the largest part of the relay's tail latency.
            .set("retry.backoff.ms", "5")
            .set("linger.ms", "0")
            .set("batch.size", "1000000");
        let txn = Txn {
            producer: Some(config.create()?),
            timeout: settings.timeout,
        };
        txn.sliced(|producer, slice| producer.init_transactions(slice))
            .await?;
        Ok(txn)
    }

    fn producer(&self) -> &FutureProducer {
        self.producer.as_ref().expect("present until dropped")
    }

    /// Begins a transaction and sends `rows` in order; stops at the first row the producer
    /// refuses at once (a value over `message.max.bytes`, a full queue).
    pub fn send(&self, rows: &[Row]) -> KafkaResult<InFlight> {
        let producer = self.producer();
        producer.begin_transaction()?;
        let mut deliveries = Vec::with_capacity(rows.len());
        for (index, row) in rows.iter().enumerate() {
            let headers = if crate::telemetry::enabled() {
                // The publish span: a child of the span that wrote the row, the parent of the
                // consumers' spans (its context replaces the row's `traceparent`).
                let span = publish_span(row);
                span.in_scope(|| crate::telemetry::kafka_headers(&row.headers))
            } else {
                crate::telemetry::kafka_headers(&row.headers)
            };
            let record = FutureRecord::to(&row.topic)
                .key(&row.key)
                .payload(&row.value)
                .headers(headers);
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push((index, delivery)),
                Err((error, _)) => {
                    return Ok(InFlight {
                        deliveries,
                        refused: Some((index, error)),
                    })
                }
            }
        }
        Ok(InFlight {
            deliveries,
            refused: None,
        })
    }

    /// Waits for every delivery report of `flight` (bounded); the rows that failed, by index.
    pub async fn settle(&self, flight: InFlight) -> Vec<(usize, KafkaError)> {
        let deadline = tokio::time::Instant::now() + self.timeout + Duration::from_secs(1);
        let mut failed = Vec::new();
        for (index, delivery) in flight.deliveries {
            match tokio::time::timeout_at(deadline, delivery).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err((error, _)))) => failed.push((index, error)),
                Ok(Err(_)) => failed.push((index, KafkaError::Canceled)),
                Err(_) => {
                    let timed_out = RDKafkaErrorCode::MessageTimedOut;
                    failed.push((index, KafkaError::MessageProduction(timed_out)));
                    break;
                }
            }
        }
        failed.extend(flight.refused);
        failed.sort_by_key(|(index, _)| *index);
        failed
    }

    /// Commits the open transaction, every row of which was acknowledged.
    pub async fn commit(&self) -> KafkaResult<()> {
        self.sliced(|producer, slice| {
            settle_out_queue(producer);
            producer.commit_transaction(slice)
        })
        .await
    }

    /// Runs a blocking transactional call in slices until it succeeds, fails for good, or the
    /// bound passes (librdkafka lets a call that timed out be called again to go on waiting).
    async fn sliced(
        &self,
        call: fn(&FutureProducer, Duration) -> KafkaResult<()>,
    ) -> KafkaResult<()> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let started = Instant::now();
            let slice = deadline.saturating_duration_since(started).min(SLICE);
            let producer = self.producer().clone();
            let result = blocking(move || call(&producer, slice)).await;
            match result {
                Err(error) if retriable(&error) && Instant::now() < deadline => {
                    if started.elapsed() < Duration::from_millis(10) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                other => return other,
            }
        }
    }
}

impl Drop for Txn {
    /// Dropping a producer purges it and waits for its threads (up to half a second): not on an
    /// async worker. Whatever transaction it left open is aborted by the next `init_transactions`
    /// of its `transactional.id`, or by the broker after `transaction.timeout.ms`.
    fn drop(&mut self) {
        if let Some(producer) = self.producer.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || drop(producer))),
                Err(_) => drop(producer),
            }
        }
    }
}

/// Whether librdkafka says the call may simply be made again.
fn retriable(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(error) => error.is_retriable(),
        KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut) => true,
        _ => false,
    }
}

/// Waits (briefly) until librdkafka counts no message of the batch as outstanding.
///
/// A delivery future resolves inside librdkafka's delivery callback, a moment before the message
/// leaves the producer's out-queue count. rust-rdkafka's `commit_transaction` flushes first, and
/// a flush that finds a message still counted polls for up to 100 ms: that race cost most
/// batches tens of milliseconds. The count drops within microseconds, so this waits for it
/// (bounded, so that a queue kept busy by other events only falls back to the flush).
fn settle_out_queue(producer: &FutureProducer) {
    let deadline = Instant::now() + Duration::from_millis(50);
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// librdkafka's transactional calls block; keep them off the async workers.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> KafkaResult<T> + Send + 'static,
) -> KafkaResult<T> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or(Err(KafkaError::Canceled))
}

/// The span of one event's publish, in the trace its row was written in.
fn publish_span(row: &Row) -> tracing::Span {
    let span = tracing::info_span!(
        "publish",
        otel.name = %format!("send {}", row.topic),
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.destination.name = %row.topic,
        messaging.kafka.message.key = %row.key,
        messaging.message.id = row.header(crate::envelope::EVENT_ID).unwrap_or_default(),
        choreo.event_type = row.header(crate::envelope::EVENT_TYPE).unwrap_or_default(),
    );
    crate::telemetry::set_parent(&span, row.header(crate::telemetry::TRACEPARENT));
    span
}
