//! The runner: subscribes the group, hands each partition's messages to its worker, and on
//! shutdown stops fetching, lets the workers finish and commit their batches, then leaves.

use std::sync::atomic::AtomicU64;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::context::{stop_and_wait, RunnerContext, WorkerHandle, Workers};
use super::worker::Worker;
use super::{dlq, ConsumerConfig, Handler};
use crate::config::KafkaConfig;
use crate::metrics::Metrics;

/// What a consumer has done, for metrics and tests.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub applied: AtomicU64,
    /// Redelivered events skipped because the inbox had them.
    pub duplicates: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub batches: AtomicU64,
    pub retries: AtomicU64,
    /// Partitions this member holds since the last rebalance.
    pub assigned_partitions: AtomicU64,
    /// True once a rebalance completed: the member is in its group, with partitions or idle.
    pub joined: std::sync::atomic::AtomicBool,
}

/// Test-only crash points.
#[derive(Clone, Default)]
pub struct Faults {
    /// Called after a batch's transaction committed and before its offset is committed; `true`
    /// kills the consumer there.
    pub after_db_commit: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

/// Why a consumer stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("consumer Kafka error: {0}")]
    Kafka(#[from] KafkaError),
    #[error("a fault point killed the consumer (test crash)")]
    Crashed,
}

/// A consumer group member that applies events with `H`.
pub struct Consumer<H> {
    kafka: KafkaConfig,
    pool: PgPool,
    handler: Arc<H>,
    config: Arc<ConsumerConfig>,
    stats: Arc<ConsumerStats>,
    faults: Faults,
    metrics: Option<Arc<Metrics>>,
}

impl<H: Handler> Consumer<H> {
    pub fn new(kafka: &KafkaConfig, pool: PgPool, handler: H, config: ConsumerConfig) -> Self {
        Self {
            kafka: kafka.clone(),
            pool,
            handler: Arc::new(handler),
            config: Arc::new(config),
            stats: Arc::default(),
            faults: Faults::default(),
            metrics: None,
        }
    }

    /// Reports to `metrics` (applied, duplicates, dead letters, handler time, lag).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Installs crash points (tests only).
    pub fn with_faults(mut self, faults: Faults) -> Self {
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
        if self.metrics.is_some() {
            kafka_config.set("statistics.interval.ms", "5000");
        }
        let consumer: Arc<StreamConsumer<RunnerContext>> =
            Arc::new(kafka_config.create_with_context(context)?);
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let dlq: FutureProducer =
            crate::kafka::producer_config(&self.kafka, &format!("{client_id}-dlq")).create()?;
        let crash = CancellationToken::new();
        loop {
            let message = tokio::select! {
                biased;
                () = crash.cancelled() => {
                    workers.abort_all();
                    return Err(ConsumerError::Crashed);
                }
                () = shutdown.cancelled() => break,
                message = consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message.detach(),
                Err(error) => {
                    tracing::warn!(%error, "consumer error");
                    continue;
                }
            };
            let (topic, partition) = (message.topic().to_owned(), message.partition());
            let sender = match workers.sender(&topic, partition) {
                Some(sender) => sender,
                None => self.spawn_worker(&workers, &consumer, &dlq, &crash, &topic, partition),
            };
            tokio::select! {
                sent = sender.send(message) => { let _ = sent; }
                () = crash.cancelled() => {}
            }
        }
        let unfinished = stop_and_wait(workers.take(|_, _| true), self.config.grace);
        if unfinished > 0 {
            tracing::warn!(
                unfinished,
                "shutdown grace ran out; uncommitted batches will be redelivered"
            );
        }
        consumer.unsubscribe();
        Ok(())
    }

    fn spawn_worker(
        &self,
        workers: &Workers,
        consumer: &Arc<StreamConsumer<RunnerContext>>,
        dlq: &FutureProducer,
        crash: &CancellationToken,
        topic: &str,
        partition: i32,
    ) -> mpsc::Sender<rdkafka::message::OwnedMessage> {
        let (sender, receiver) = mpsc::channel(self.config.batch_size * 2);
        let (done_sender, done) = std_mpsc::channel();
        let stop = CancellationToken::new();
        let worker = Worker {
            consumer: consumer.clone(),
            pool: self.pool.clone(),
            handler: self.handler.clone(),
            dlq: dlq.clone(),
            config: self.config.clone(),
            stats: self.stats.clone(),
            faults: self.faults.clone(),
            metrics: self.metrics.clone(),
            crash: crash.clone(),
        };
        let task = tokio::spawn(worker.run(receiver, stop.clone(), done_sender));
        workers.insert(
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
