//! The runner: subscribes the group, hands each partition's messages to its worker, and on
//! shutdown stops fetching, lets the workers finish and commit their batches, then leaves.
//!
//! The runner never waits on a worker. A partition whose worker is busy (retrying a batch the
//! database keeps refusing) is paused and its next messages are held back; the others keep
//! flowing, the runner keeps polling (so the member stays in its group), and shutdown stays
//! within its grace period. Each run is made of sessions, one Kafka consumer each: a session
//! ends, and a new one starts from the committed offsets, when a worker died (so nothing after
//! what it held is committed before it is applied) or when the member has been out of its group
//! longer than `rejoin_after` (librdkafka did not join again by itself).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use super::context::{one, stop_and_wait, RunnerContext, Slot, WorkerHandle, Workers};
use super::membership::{Membership, STATS_INTERVAL};
use super::worker::Worker;
use super::{dlq, ConsumerConfig, Handler};
use crate::config::KafkaConfig;
use crate::doorbell::Doorbell;
use crate::metrics::Metrics;

/// What a consumer has done, for metrics, readiness and tests.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub applied: AtomicU64,
    /// Redelivered events skipped because the inbox had them.
    pub duplicates: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub batches: AtomicU64,
    pub retries: AtomicU64,
    /// Handler panics caught; each rolled its batch back.
    pub panics: AtomicU64,
    /// Events of a type the handler does not know, passed over.
    pub unknown: AtomicU64,
    /// Sessions started again (a worker died, the group was lost).
    pub restarts: AtomicU64,
    /// Partitions this member holds since the last rebalance.
    pub assigned_partitions: AtomicU64,
    /// Whether the member is in its group now.
    pub membership: Membership,
}

impl ConsumerStats {
    /// In its group now (what `/readyz` asks).
    pub fn is_member(&self) -> bool {
        self.membership.is_member()
    }
}

/// Why a consumer stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("consumer Kafka error: {0}")]
    Kafka(#[from] KafkaError),
    /// A fault point fired (feature `testing` only).
    #[cfg(feature = "testing")]
    #[error("a fault point killed the consumer (test crash)")]
    Crashed,
}

/// Why a session ended.
enum SessionEnd {
    Shutdown,
    /// The worker of this partition ended on its own.
    WorkerDied(String, i32),
    /// Out of the group for this long.
    GroupLost(Duration),
}

/// A consumer group member that applies events with `H`.
pub struct Consumer<H> {
    kafka: KafkaConfig,
    pool: PgPool,
    handler: Arc<H>,
    config: Arc<ConsumerConfig>,
    stats: Arc<ConsumerStats>,
    #[cfg(feature = "testing")]
    faults: super::Faults,
    metrics: Option<Arc<Metrics>>,
    doorbells: Arc<Vec<Doorbell>>,
}

/// Messages held back for partitions whose worker was full, in order; those partitions are
/// paused until their queue is empty again.
type Held = HashMap<(String, i32), VecDeque<OwnedMessage>>;

/// One session's Kafka handles.
struct Session {
    workers: Arc<Workers>,
    consumer: Arc<StreamConsumer<RunnerContext>>,
    dlq: FutureProducer,
    /// Cancelled by a worker's fault point (feature `testing`).
    #[cfg(feature = "testing")]
    crash: CancellationToken,
    held: Held,
}

impl<H: Handler> Consumer<H> {
    pub fn new(kafka: &KafkaConfig, pool: PgPool, handler: H, config: ConsumerConfig) -> Self {
        Self {
            kafka: kafka.clone(),
            pool,
            handler: Arc::new(handler),
            config: Arc::new(config),
            stats: Arc::default(),
            #[cfg(feature = "testing")]
            faults: super::Faults::default(),
            metrics: None,
            doorbells: Arc::default(),
        }
    }

    /// Rings `doorbell` after every batch whose transaction committed (for a doorbell made
    /// [`Doorbell::for_writes`], only a batch that marked it): the relay's, so the events the
    /// handler added are published at once, or a service's own for work the handler queued.
    pub fn with_doorbell(mut self, doorbell: Doorbell) -> Self {
        Arc::make_mut(&mut self.doorbells).push(doorbell);
        self
    }

    /// Reports to `metrics` (applied, duplicates, dead letters, handler time, lag).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Installs crash points (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn with_faults(mut self, faults: super::Faults) -> Self {
        self.faults = faults;
        self
    }

    pub fn stats(&self) -> Arc<ConsumerStats> {
        self.stats.clone()
    }

    /// Consumes until `shutdown`, then finishes and commits the batches in hand (within the
    /// grace period) and leaves the group.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        self.ensure_dead_letter_topics().await?;
        loop {
            let reason = match self.session(&shutdown).await? {
                SessionEnd::Shutdown => return Ok(()),
                SessionEnd::WorkerDied(topic, partition) => {
                    tracing::error!(%topic, partition, "a partition worker died; starting a new session from the committed offsets");
                    "worker_died"
                }
                SessionEnd::GroupLost(out) => {
                    tracing::error!(
                        out_secs = out.as_secs(),
                        "out of the consumer group too long; starting a new session"
                    );
                    "group_lost"
                }
            };
            self.stats.restarts.fetch_add(1, Ordering::Relaxed);
            if let Some(metrics) = &self.metrics {
                metrics.consumer_restarts.with_label_values(&[reason]).inc();
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// One Kafka consumer in the group, until shutdown or until it must be replaced.
    async fn session(&self, shutdown: &CancellationToken) -> Result<SessionEnd, ConsumerError> {
        self.stats.membership.session_started(Instant::now());
        let workers = Arc::new(Workers::default());
        let context = RunnerContext {
            workers: workers.clone(),
            grace: self.config.grace,
            stats: self.stats.clone(),
            metrics: self.metrics.clone(),
        };
        let client_id = format!("{}-consumer", self.config.group);
        let mut kafka_config =
            crate::kafka::consumer_config(&self.kafka, &self.config.group, &client_id);
        kafka_config.set(
            "statistics.interval.ms",
            STATS_INTERVAL.as_millis().to_string(),
        );
        let consumer: Arc<StreamConsumer<RunnerContext>> =
            Arc::new(kafka_config.create_with_context(context)?);
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let mut session = Session {
            workers,
            consumer,
            dlq: crate::kafka::producer_config(&self.kafka, &format!("{client_id}-dlq"))
                .create()?,
            #[cfg(feature = "testing")]
            crash: CancellationToken::new(),
            held: Held::new(),
        };
        #[cfg(feature = "testing")]
        let end = {
            let crash = session.crash.clone();
            let Some(end) =
                super::faults::unless_crashed(&crash, self.pump(&mut session, shutdown)).await
            else {
                session.workers.abort_all();
                return Err(ConsumerError::Crashed);
            };
            end
        };
        #[cfg(not(feature = "testing"))]
        let end = self.pump(&mut session, shutdown).await;
        let unfinished = stop_and_wait(session.workers.take(|_, _| true), self.config.grace);
        if unfinished > 0 {
            tracing::warn!(
                unfinished,
                "grace ran out; uncommitted batches will be redelivered"
            );
        }
        session.consumer.unsubscribe();
        Ok(end)
    }

    /// Receives and dispatches until shutdown or until the session must end.
    async fn pump(&self, session: &mut Session, shutdown: &CancellationToken) -> SessionEnd {
        let mut errors = ErrorLog::default();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let message = tokio::select! {
                biased;
                () = shutdown.cancelled() => break SessionEnd::Shutdown,
                _ = tick.tick() => {
                    match self.on_tick(session) {
                        Some(end) => break end,
                        None => continue,
                    }
                }
                message = session.consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message.detach(),
                Err(error) => {
                    errors.report(&error);
                    continue;
                }
            };
            forget_revoked(session);
            if let Some(end) = self.dispatch(session, message) {
                break end;
            }
        }
    }

    /// Hands `message` to its partition's worker, or holds it back (pausing the partition)
    /// when that worker is full or already has messages held back.
    fn dispatch(&self, session: &mut Session, message: OwnedMessage) -> Option<SessionEnd> {
        let key = (message.topic().to_owned(), message.partition());
        if let Some(queue) = session.held.get_mut(&key) {
            queue.push_back(message);
            return None;
        }
        let sender = match session.workers.slot(&key.0, key.1) {
            Slot::Live(sender) => sender,
            Slot::Dead => return Some(SessionEnd::WorkerDied(key.0, key.1)),
            Slot::Absent if !is_assigned(&session.consumer, &key) => {
                // A message of a partition revoked a moment ago: its next owner reads it.
                return None;
            }
            Slot::Absent => self.spawn_worker(session, &key.0, key.1),
        };
        match sender.try_send(message) {
            Ok(()) => None,
            Err(TrySendError::Full(message)) => {
                if let Err(error) = session.consumer.pause(&one(&key.0, key.1)) {
                    tracing::warn!(%error, topic = %key.0, partition = key.1, "cannot pause a busy partition");
                }
                session.held.entry(key).or_default().push_back(message);
                None
            }
            Err(TrySendError::Closed(_)) => Some(SessionEnd::WorkerDied(key.0, key.1)),
        }
    }

    /// Every 100 ms: drop what is held for revoked partitions, notice dead workers, offer held
    /// messages again (resuming partitions whose queue emptied), and watch the membership.
    fn on_tick(&self, session: &mut Session) -> Option<SessionEnd> {
        forget_revoked(session);
        if let Some((topic, partition)) = session.workers.dead() {
            return Some(SessionEnd::WorkerDied(topic, partition));
        }
        let mut emptied = Vec::new();
        for (key, queue) in session.held.iter_mut() {
            let sender = match session.workers.slot(&key.0, key.1) {
                Slot::Live(sender) => sender,
                Slot::Dead => return Some(SessionEnd::WorkerDied(key.0.clone(), key.1)),
                Slot::Absent => {
                    queue.clear();
                    emptied.push(key.clone());
                    continue;
                }
            };
            while let Some(message) = queue.pop_front() {
                match sender.try_send(message) {
                    Ok(()) => {}
                    Err(TrySendError::Full(message)) => {
                        queue.push_front(message);
                        break;
                    }
                    Err(TrySendError::Closed(_)) => {
                        return Some(SessionEnd::WorkerDied(key.0.clone(), key.1))
                    }
                }
            }
            if queue.is_empty() {
                emptied.push(key.clone());
            }
        }
        for key in emptied {
            session.held.remove(&key);
            if is_assigned(&session.consumer, &key) {
                if let Err(error) = session.consumer.resume(&one(&key.0, key.1)) {
                    tracing::warn!(%error, topic = %key.0, partition = key.1, "cannot resume a partition");
                }
            }
        }
        let out = self.stats.membership.lost_for(Instant::now());
        if let Some(metrics) = &self.metrics {
            metrics
                .consumer_member
                .with_label_values(&[self.config.group.as_str()])
                .set(i64::from(out.is_zero()));
        }
        (out > self.config.rejoin_after).then_some(SessionEnd::GroupLost(out))
    }

    fn spawn_worker(
        &self,
        session: &Session,
        topic: &str,
        partition: i32,
    ) -> mpsc::Sender<OwnedMessage> {
        let (sender, receiver) = mpsc::channel(self.config.batch_size * 2);
        let (done_sender, done) = std_mpsc::channel();
        let stop = CancellationToken::new();
        let worker = Worker {
            consumer: session.consumer.clone(),
            pool: self.pool.clone(),
            handler: self.handler.clone(),
            dlq: session.dlq.clone(),
            config: self.config.clone(),
            stats: self.stats.clone(),
            metrics: self.metrics.clone(),
            doorbells: self.doorbells.clone(),
            #[cfg(feature = "testing")]
            faults: super::faults::Armed {
                faults: self.faults.clone(),
                crash: session.crash.clone(),
            },
        };
        let task = tokio::spawn(worker.run(receiver, stop.clone(), done_sender));
        session.workers.insert(
            topic,
            partition,
            WorkerHandle {
                sender: sender.clone(),
                stop,
                done,
                task,
            },
        );
        sender
    }

    /// Creates `<topic>.<group>.dlq` for every topic, with the topic's partition count.
    async fn ensure_dead_letter_topics(&self) -> Result<(), ConsumerError> {
        let admin: AdminClient<DefaultClientContext> =
            crate::kafka::admin_config(&self.kafka, "choreo-dlq").create()?;
        let timeout = Duration::from_secs(30);
        let metadata = tokio::task::block_in_place(|| admin.inner().fetch_metadata(None, timeout))?;
        let names: Vec<(String, i32)> = self
            .config
            .topics
            .iter()
            .map(|topic| {
                let partitions = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map_or(1, |t| t.partitions().len().max(1));
                (dlq::topic(topic, &self.config.group), partitions as i32)
            })
            .collect();
        let new: Vec<NewTopic> = names
            .iter()
            .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(-1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(timeout));
        for result in admin.create_topics(&new, &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(KafkaError::AdminOp(code).into()).inspect_err(
                        |_| tracing::error!(%topic, "cannot create the dead-letter topic"),
                    )
                }
            }
        }
        Ok(())
    }
}

/// Consumer errors (a broker away reports one every few hundred milliseconds) logged at most
/// once every ten seconds, with how many were left out.
#[derive(Default)]
struct ErrorLog {
    last: Option<Instant>,
    left_out: u64,
}

impl ErrorLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn report(&mut self, error: &KafkaError) {
        if self.last.is_some_and(|at| at.elapsed() < Self::EVERY) {
            self.left_out += 1;
            return;
        }
        tracing::warn!(%error, left_out = self.left_out, "consumer error");
        self.last = Some(Instant::now());
        self.left_out = 0;
    }
}

/// Drops what is held back for partitions revoked since the last look: their next owner reads
/// them from the committed offset.
fn forget_revoked(session: &mut Session) {
    for key in session.workers.drain_revoked() {
        session.held.remove(&key);
    }
}

fn is_assigned(
    consumer: &StreamConsumer<RunnerContext>,
    (topic, partition): &(String, i32),
) -> bool {
    consumer
        .assignment()
        .is_ok_and(|list| list.find_partition(topic, *partition).is_some())
}
