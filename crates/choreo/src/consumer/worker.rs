//! One partition's worker: takes messages in order, applies them in batches (one database
//! transaction each), retries transient failures in place, dead-letters permanent ones, and
//! commits the partition's offset after each batch's transaction commits.
//!
//! A handler that panics does not take the worker down: the panic is caught, the batch's
//! transaction rolls back, and the batch is retried; a batch that panicked is then applied one
//! message at a time, so a message that panics every time is the only one dead-lettered (as
//! `handler_panicked`, after the retries). A batch retried longer than `stuck_after` is
//! reported: a warning, the `consumer_stuck_seconds` gauge, and the partition's committed
//! offset (the batch's first, which is already the committed position) carrying
//! `stuck since …` as metadata for `choreo lag`.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder as _, ExponentialBuilder};
use futures::FutureExt as _;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::context::RunnerContext;
use super::dlq::DeadLetter;
use super::runner::ConsumerStats;
use super::{BatchFailure, ConsumerConfig, Handler, HandlerError, Incoming};
use crate::doorbell::Doorbell;
use crate::envelope::Metadata;
use crate::metrics::Metrics;

pub(crate) struct Worker<H> {
    pub consumer: Arc<StreamConsumer<RunnerContext>>,
    pub pool: PgPool,
    pub handler: Arc<H>,
    pub dlq: FutureProducer,
    pub config: Arc<ConsumerConfig>,
    pub stats: Arc<ConsumerStats>,
    pub metrics: Option<Arc<Metrics>>,
    /// Rung after each committed batch.
    pub doorbells: Arc<Vec<Doorbell>>,
    /// Crash points and the token that kills the whole consumer (feature `testing`).
    #[cfg(feature = "testing")]
    pub faults: super::faults::Armed,
}

/// Why a batch did not go through.
enum BatchError {
    /// The database, the registry or Kafka failed: retried without limit (with backoff).
    Infrastructure(String),
    /// The handler asked for a retry of the message at this offset: counted.
    Handler { offset: i64, error: String },
    /// The message at this offset can never be applied: dead-letter it, apply the rest.
    Poison {
        offset: i64,
        reason: &'static str,
        error: String,
    },
    /// The handler panicked somewhere in a batch of several messages.
    Panicked(String),
    /// A fault point fired (feature `testing`).
    #[cfg(feature = "testing")]
    Crashed,
}

impl<H: Handler> Worker<H> {
    pub async fn run(
        self,
        mut messages: mpsc::Receiver<OwnedMessage>,
        stop: CancellationToken,
        done: std_mpsc::Sender<()>,
    ) {
        loop {
            let first = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                message = messages.recv() => match message { Some(m) => m, None => break },
            };
            let mut batch = vec![first];
            while batch.len() < self.config.batch_size {
                match messages.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(_) => break,
                }
            }
            let outcome = match self.apply_with_retries(&batch, &stop).await {
                Err(BatchError::Panicked(error)) => {
                    tracing::warn!(%error, size = batch.len(), "a batch panicked; applying it one message at a time");
                    self.apply_one_by_one(&batch, &stop).await
                }
                other => other,
            };
            match outcome {
                Ok(()) => self.commit_offset(&batch, stop.is_cancelled()),
                #[cfg(feature = "testing")]
                Err(BatchError::Crashed) => {
                    self.faults.crash.cancel();
                    return;
                }
                Err(_) => break, // stopped while retrying: nothing committed, redelivered later
            }
        }
        let _ = done.send(());
    }

    /// Applies `batch` message by message, committing each: the one that panics is found and
    /// retried alone, and everything before it is kept.
    async fn apply_one_by_one(
        &self,
        batch: &[OwnedMessage],
        stop: &CancellationToken,
    ) -> Result<(), BatchError> {
        for message in batch {
            let one = std::slice::from_ref(message);
            self.apply_with_retries(one, stop).await?;
            self.commit_offset(one, stop.is_cancelled());
        }
        Ok(())
    }

    /// Commits the partition's offset past the end of `batch` (asynchronously; synchronously
    /// on stop). Not librdkafka's auto-commit: its commit at close waits for a group coordinator
    /// that a flapping broker may never give back, and a session restart or SIGTERM then hangs.
    fn commit_offset(&self, batch: &[OwnedMessage], sync: bool) {
        let last = batch.last().expect("a batch is never empty");
        let mut offsets = TopicPartitionList::new();
        let _ = offsets.add_partition_offset(
            last.topic(),
            last.partition(),
            Offset::Offset(last.offset() + 1),
        );
        let mode = if sync {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        if let Err(error) = self.consumer.commit(&offsets, mode) {
            // The effects are committed; a redelivery is absorbed by the inbox.
            tracing::warn!(%error, topic = last.topic(), partition = last.partition(), "offset commit failed");
        }
    }

    async fn apply_with_retries(
        &self,
        batch: &[OwnedMessage],
        stop: &CancellationToken,
    ) -> Result<(), BatchError> {
        // Messages taken out of the batch, by offset: (dead-letter reason, error).
        let mut excluded: HashMap<i64, (&'static str, String)> = HashMap::new();
        let mut attempts: u32 = 0;
        let mut waits = delays(self.config.backoff);
        let mut stuck = Stuck::new(batch);
        loop {
            let attempt = AssertUnwindSafe(self.apply(batch, &excluded, attempts + 1))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| Err(self.panicked(batch, &*panic)));
            let error = match attempt {
                Ok(()) => {
                    stuck.cleared(self);
                    return Ok(());
                }
                #[cfg(feature = "testing")]
                Err(BatchError::Crashed) => return Err(BatchError::Crashed),
                Err(error @ BatchError::Panicked(_)) => return Err(error),
                Err(BatchError::Poison {
                    offset,
                    reason,
                    error,
                }) => {
                    // Rolled back whole: apply the rest again without it, at once.
                    excluded.insert(offset, (reason, error));
                    continue;
                }
                Err(error) => error,
            };
            attempts += 1;
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            match &error {
                BatchError::Handler { offset, error } if attempts > self.config.max_retries => {
                    let reason = if error.starts_with(PANICKED) {
                        "handler_panicked"
                    } else {
                        "retries_exhausted"
                    };
                    excluded.insert(*offset, (reason, error.clone()));
                    attempts = 0;
                    waits = delays(self.config.backoff);
                    continue;
                }
                BatchError::Handler { error, .. } | BatchError::Infrastructure(error) => {
                    tracing::warn!(%error, attempts, "batch failed; retrying");
                    stuck.still(self, error);
                }
                BatchError::Poison { .. } | BatchError::Panicked(_) => unreachable!(),
                #[cfg(feature = "testing")]
                BatchError::Crashed => unreachable!(),
            }
            let wait = waits.next().unwrap_or(self.config.backoff.1);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => {
                    stuck.cleared(self);
                    return Err(error);
                }
            }
        }
    }

    /// What a caught panic means for the batch: a single message is retried like a transient
    /// failure (and dead-lettered as `handler_panicked` once its retries run out); a larger
    /// batch is applied again one message at a time, to find the one.
    fn panicked(&self, batch: &[OwnedMessage], panic: &(dyn std::any::Any + Send)) -> BatchError {
        let text = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let error = format!("{PANICKED}{text}");
        tracing::error!(%error, size = batch.len(), "the handler panicked; the batch was rolled back");
        self.stats.panics.fetch_add(1, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.handler_panics.inc();
        }
        match batch {
            [only] => BatchError::Handler {
                offset: only.offset(),
                error,
            },
            _ => BatchError::Panicked(error),
        }
    }

    /// One attempt at the batch in one transaction: one statement records the whole batch in
    /// the inbox (and tells the duplicates), then each new event goes to the handler. A message
    /// that can never be applied rolls the attempt back and is excluded from the next one, so
    /// no savepoint per message is needed.
    async fn apply(
        &self,
        batch: &[OwnedMessage],
        excluded: &HashMap<i64, (&'static str, String)>,
        attempt: u32,
    ) -> Result<(), BatchError> {
        let infra = |e: &dyn std::fmt::Display| BatchError::Infrastructure(e.to_string());
        let group = &self.config.group;
        let mut letters = Vec::new();
        let mut candidates = Vec::with_capacity(batch.len());
        for message in batch {
            if let Some((reason, error)) = excluded.get(&message.offset()) {
                letters.push(dead_letter(message, reason, error.clone(), attempt));
                continue;
            }
            match incoming(message) {
                Ok(incoming) => candidates.push((message, incoming)),
                Err(error) => letters.push(dead_letter(message, "bad_headers", error, attempt)),
            }
        }
        let marks: Vec<u64> = self.doorbells.iter().map(Doorbell::marks).collect();
        let mut tx = self.pool.begin().await.map_err(|e| infra(&e))?;
        let ids: Vec<uuid::Uuid> = candidates
            .iter()
            .map(|(_, i)| i.metadata.event_id)
            .collect();
        let mut fresh: HashSet<uuid::Uuid> = crate::inbox::record_all(&mut tx, group, &ids)
            .await
            .map_err(|e| infra(&e))?;
        let mut duplicates = 0u64;
        let mut fresh_messages = Vec::with_capacity(candidates.len());
        let mut events = Vec::with_capacity(candidates.len());
        for (message, incoming) in candidates {
            if fresh.remove(&incoming.metadata.event_id) {
                fresh_messages.push(message);
                events.push(incoming);
            } else {
                duplicates += 1;
            }
        }
        let unknown = self.pass_over_unknown(&mut fresh_messages, &mut events);
        #[cfg(debug_assertions)]
        fault::panic_once(&events);
        let started = Instant::now();
        let handled = if events.is_empty() {
            Ok(())
        } else {
            self.handler.handle_batch(&mut tx, &events).await
        };
        if let Some(metrics) = self.metrics.as_ref().filter(|_| !events.is_empty()) {
            // Per event, averaged over the batch (a batch handler may apply them together).
            let each = started.elapsed().as_secs_f64() / events.len() as f64;
            for event in &events {
                metrics
                    .handler_seconds
                    .with_label_values(&[event.metadata.event_type.as_str()])
                    .observe(each);
            }
        }
        if let Err(BatchFailure { index, error }) = handled {
            // An index past the end (a handler's mistake) is pinned on the batch's last event.
            let offset = fresh_messages[index.min(fresh_messages.len() - 1)].offset();
            return Err(match (error.permanent_reason(), error) {
                (Some(reason), error) => BatchError::Poison {
                    offset,
                    reason,
                    error: error.to_string(),
                },
                (None, HandlerError::Transient(text)) => BatchError::Handler {
                    offset,
                    error: text,
                },
                (None, other) => infra(&other),
            });
        }
        let applied = events.len() as u64;
        let applied_types: Vec<String> =
            events.into_iter().map(|e| e.metadata.event_type).collect();
        for letter in &letters {
            letter.send(&self.dlq, group).await.map_err(|e| infra(&e))?;
        }
        tx.commit().await.map_err(|e| infra(&e))?;
        for (bell, before) in self.doorbells.iter().zip(marks) {
            bell.ring_after_batch(before);
        }
        #[cfg(feature = "testing")]
        if self.faults.after_db_commit() {
            return Err(BatchError::Crashed);
        }
        self.stats.applied.fetch_add(applied, Ordering::Relaxed);
        self.stats
            .duplicates
            .fetch_add(duplicates, Ordering::Relaxed);
        self.stats
            .dead_lettered
            .fetch_add(letters.len() as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .unknown
            .fetch_add(unknown.len() as u64, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            for event_type in &applied_types {
                metrics
                    .consumer_applied
                    .with_label_values(&[event_type.as_str()])
                    .inc();
            }
            metrics.consumer_duplicates.inc_by(duplicates);
            for event_type in &unknown {
                metrics
                    .consumer_unknown_events
                    .with_label_values(&[event_type.as_str()])
                    .inc();
            }
            for letter in &letters {
                metrics
                    .dead_letters
                    .with_label_values(&[letter.reason])
                    .inc();
            }
        }
        Ok(())
    }
}

impl<H: Handler> Worker<H> {
    /// Takes the events whose type the handler does not know out of `events` (they stay in the
    /// inbox: applied as nothing) and returns their types; the first of each type in this
    /// process is logged as a warning, so a producer ahead of its consumers shows.
    fn pass_over_unknown(
        &self,
        messages: &mut Vec<&OwnedMessage>,
        events: &mut Vec<Incoming>,
    ) -> Vec<String> {
        if events
            .iter()
            .all(|e| self.handler.knows(&e.metadata.event_type))
        {
            return Vec::new();
        }
        let mut unknown = Vec::new();
        let mut index = 0;
        while index < events.len() {
            if self.handler.knows(&events[index].metadata.event_type) {
                index += 1;
                continue;
            }
            let event = events.remove(index);
            messages.remove(index);
            if first_of_its_kind(&event.metadata.event_type) {
                tracing::warn!(
                    event_type = %event.metadata.event_type,
                    event_id = %event.metadata.event_id,
                    group = %self.config.group,
                    "an event type this consumer does not know: passed over (is its producer ahead?)"
                );
            }
            unknown.push(event.metadata.event_type);
        }
        unknown
    }
}

/// True the first time `event_type` is seen here as unknown, in this process.
fn first_of_its_kind(event_type: &str) -> bool {
    static SEEN: std::sync::Mutex<Option<HashSet<String>>> = std::sync::Mutex::new(None);
    let mut seen = SEEN.lock().expect("unknown types lock");
    seen.get_or_insert_with(HashSet::new)
        .insert(event_type.to_owned())
}

/// The prefix of a caught panic's error text.
const PANICKED: &str = "handler panicked: ";

/// A batch that keeps failing: reported once it has failed for `stuck_after`.
struct Stuck<'b> {
    first: &'b OwnedMessage,
    since: Option<Instant>,
    reported: bool,
}

impl<'b> Stuck<'b> {
    fn new(batch: &'b [OwnedMessage]) -> Self {
        Self {
            first: batch.first().expect("a batch is never empty"),
            since: None,
            reported: false,
        }
    }

    fn gauge<H: Handler>(&self, worker: &Worker<H>, seconds: f64) {
        if let Some(metrics) = &worker.metrics {
            metrics
                .consumer_stuck_seconds
                .with_label_values(&[self.first.topic(), &self.first.partition().to_string()])
                .set(seconds);
        }
    }

    /// The batch failed again with `error`.
    fn still<H: Handler>(&mut self, worker: &Worker<H>, error: &str) {
        let since = *self.since.get_or_insert_with(Instant::now);
        let stuck_for = since.elapsed();
        if stuck_for < worker.config.stuck_after {
            return;
        }
        self.gauge(worker, stuck_for.as_secs_f64());
        if self.reported {
            return;
        }
        self.reported = true;
        let (topic, partition, offset) = (
            self.first.topic(),
            self.first.partition(),
            self.first.offset(),
        );
        tracing::warn!(topic, partition, offset, stuck_secs = stuck_for.as_secs(), %error, "partition stuck: one batch keeps failing; the partition is paused, the others flow");
        let started = chrono::Utc::now()
            - chrono::Duration::from_std(stuck_for).unwrap_or_else(|_| chrono::Duration::zero());
        let text: String = format!("stuck since {}: {error}", started.to_rfc3339())
            .chars()
            .take(STUCK_NOTE_MAX)
            .collect();
        let mut note = TopicPartitionList::new();
        let mut element = note.add_partition(topic, partition);
        let noted = element.set_offset(Offset::Offset(offset));
        element.set_metadata(text);
        if let Err(error) = noted.and_then(|()| worker.consumer.commit(&note, CommitMode::Async)) {
            tracing::warn!(%error, topic, partition, "cannot note the stuck partition");
        }
    }

    /// The batch went through (or the worker stops): no longer stuck.
    fn cleared<H: Handler>(&self, worker: &Worker<H>) {
        if self.since.is_some() {
            self.gauge(worker, 0.0);
            if self.reported {
                tracing::info!(
                    topic = self.first.topic(),
                    partition = self.first.partition(),
                    "partition flows again"
                );
            }
        }
    }
}

/// Kafka keeps offset metadata short (`offset.metadata.max.bytes`, 4096 bytes by default).
const STUCK_NOTE_MAX: usize = 1000;

/// Test-only fault: `CHOREO_FAULT_PANIC_ONCE=<event_type>` makes the first handling of an
/// event of that type in this process panic. Compiled into debug builds only.
#[cfg(debug_assertions)]
mod fault {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::Incoming;

    pub(super) fn panic_once(events: &[Incoming]) {
        static FIRED: AtomicBool = AtomicBool::new(false);
        let Ok(wanted) = std::env::var("CHOREO_FAULT_PANIC_ONCE") else {
            return;
        };
        if events.iter().any(|e| e.metadata.event_type == wanted)
            && !FIRED.swap(true, Ordering::SeqCst)
        {
            panic!("CHOREO_FAULT_PANIC_ONCE: a test fault for {wanted}");
        }
    }
}

fn incoming(message: &OwnedMessage) -> Result<Incoming, String> {
    let headers = message
        .headers()
        .map(|h| h.iter().map(|h| (h.key, h.value)).collect::<Vec<_>>())
        .unwrap_or_default();
    let metadata = Metadata::from_headers(headers).map_err(|e| e.to_string())?;
    let key = message
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default();
    Ok(Incoming {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key,
        metadata,
        value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    })
}

fn dead_letter(
    message: &OwnedMessage,
    reason: &'static str,
    error: String,
    attempts: u32,
) -> DeadLetter {
    let headers = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    DeadLetter {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
        reason,
        error,
        attempts,
    }
}

/// The waits between retries of one batch, `(first, longest)`: `first`, then doubling, never
/// over `longest`, without jitter (as before backon; the first wait used to be twice `first`).
fn delays((first, longest): (Duration, Duration)) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(longest)
        .with_factor(2.0)
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batchs_retries_wait_the_first_delay_then_double_up_to_the_longest() {
        let (first, longest) = (Duration::from_millis(50), Duration::from_secs(5));
        let waits: Vec<Duration> = delays((first, longest)).take(30).collect();
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        let close = |d: &Duration, want: f64| (ms(d) - want).abs() < 0.01;
        assert!(close(&waits[0], 50.0), "{waits:?}");
        assert!(close(&waits[1], 100.0), "{waits:?}");
        assert!(close(&waits[3], 400.0), "{waits:?}");
        assert_eq!(waits[29], longest);
    }
}
