//! The relay: publishes the outbox to Kafka, in id order, and deletes what Kafka acknowledged.
//!
//! One relay per database leads; the others wait as standbys. Leadership is a PostgreSQL
//! session-level advisory lock held by the leader's own connection, which also reads and deletes
//! the rows. That connection runs with `idle_session_timeout` equal to the lease: a leader that
//! dies releases the lock at once (its connection closes), and one that hangs or is paused loses
//! it after the lease, so a standby takes over within the lease plus its retry interval.
//!
//! A paused leader that wakes up is fenced twice. Its database connection is gone, so it can
//! neither read nor delete rows; and every relay of a service shares one Kafka
//! `transactional.id`, so the new leader's `init_transactions` bumped the producer epoch and the
//! old leader's pending transaction can only abort. Each batch is one Kafka transaction: either
//! every row of it is visible to (read-committed) consumers, or none is. A batch that Kafka
//! committed but whose rows were not deleted yet (a crash in between) is published again by the
//! next leader; consumers' inboxes absorb the duplicates.
//!
//! No gap: rows are deleted, never skipped past, so a row whose transaction commits late is
//! simply found by a later batch. Key order: the outbox serialises writers of one key, so a key's
//! rows have ids in commit order, and a batch is sent in id order by an idempotent producer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::metrics::Metrics;

/// The advisory lock that makes a relay the leader of its database.
pub const RELAY_LOCK: i64 = 0x6368_6f72_656f_0002;

/// How a relay behaves.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The service whose outbox this is; the Kafka `transactional.id` is `choreo-relay-<service>`.
    pub service: String,
    /// The most rows one Kafka transaction carries.
    pub batch_size: i64,
    /// How often an idle leader looks for rows when no notification came.
    pub poll_interval: Duration,
    /// How long a leader may be silent before PostgreSQL ends its session and its lock.
    pub lease: Duration,
    /// How often a standby tries to take the lock.
    pub standby_retry: Duration,
}

impl RelayConfig {
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            batch_size: 2_000,
            poll_interval: Duration::from_millis(500),
            lease: Duration::from_secs(5),
            standby_retry: Duration::from_millis(500),
        }
    }
}

/// Why a relay stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("relay database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("relay Kafka error: {0}")]
    Kafka(#[from] KafkaError),
    #[error("a fault point stopped the relay (test crash)")]
    Crashed,
}

/// Test-only interruptions at precise points of a batch (deterministic crash and pause points).
#[derive(Clone, Default)]
pub struct FaultPoints {
    /// Called after Kafka committed a batch and before its rows are deleted; `true` crashes the
    /// relay there (nothing is deleted).
    pub after_publish: Option<Arc<CrashPoint>>,
    /// Awaited after a batch was sent and before it is committed: a pause.
    pub before_commit: Option<Arc<dyn Fn() -> PauseFuture + Send + Sync>>,
}

/// Told the ids of a published batch; `true` crashes the relay there.
pub type CrashPoint = dyn Fn(&[i64]) -> bool + Send + Sync;

/// What [`FaultPoints::before_commit`] returns: the pause, as a future.
pub type PauseFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// What a relay has done, for metrics and tests.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub published: AtomicU64,
    pub batches: AtomicU64,
    pub is_leader: AtomicBool,
    /// Times this relay became leader.
    pub terms: AtomicU64,
    /// Time spent sending and committing batches to Kafka, in microseconds, over all batches.
    pub publish_micros: AtomicU64,
}

/// A relay for one service database.
pub struct Relay {
    database_url: String,
    kafka: KafkaConfig,
    config: RelayConfig,
    faults: FaultPoints,
    stats: Arc<RelayStats>,
    metrics: Option<Arc<Metrics>>,
}

struct Row {
    id: i64,
    created_at: chrono::DateTime<chrono::Utc>,
    topic: String,
    key: String,
    value: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl Relay {
    pub fn new(database_url: &str, kafka: &KafkaConfig, config: RelayConfig) -> Self {
        Self {
            database_url: database_url.to_owned(),
            kafka: kafka.clone(),
            config,
            faults: FaultPoints::default(),
            stats: Arc::default(),
            metrics: None,
        }
    }

    /// Reports to `metrics` (leadership, events, commit-to-ack latency, outbox backlog).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Installs fault points (tests only).
    pub fn with_faults(mut self, faults: FaultPoints) -> Self {
        self.faults = faults;
        self
    }

    pub fn stats(&self) -> Arc<RelayStats> {
        self.stats.clone()
    }

    /// Waits for leadership, then relays until `shutdown`; after losing leadership (its
    /// connection ended, or it was fenced) it goes back to standby.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), RelayError> {
        loop {
            let Some(conn) = self.acquire(&shutdown).await? else {
                return Ok(());
            };
            self.stats.is_leader.store(true, Ordering::Relaxed);
            self.stats.terms.fetch_add(1, Ordering::Relaxed);
            self.metrics.iter().for_each(|m| m.relay_leader.set(1));
            tracing::info!(service = %self.config.service, "relay leads");
            let result = self.lead(conn, &shutdown).await;
            self.stats.is_leader.store(false, Ordering::Relaxed);
            self.metrics.iter().for_each(|m| m.relay_leader.set(0));
            match result {
                Ok(()) => return Ok(()),
                Err(RelayError::Crashed) => return Err(RelayError::Crashed),
                Err(error) => {
                    tracing::warn!(%error, "relay lost leadership; back to standby");
                    tokio::select! {
                        () = tokio::time::sleep(self.config.standby_retry) => {}
                        () = shutdown.cancelled() => return Ok(()),
                    }
                }
            }
        }
    }

    /// Takes the leader lock on a fresh connection; `None` on shutdown.
    async fn acquire(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<PgConnection>, RelayError> {
        loop {
            match self.try_acquire().await {
                Ok(Some(conn)) => return Ok(Some(conn)),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "relay standby cannot reach its database"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.standby_retry) => {}
                () = shutdown.cancelled() => return Ok(None),
            }
        }
    }

    async fn try_acquire(&self) -> Result<Option<PgConnection>, sqlx::Error> {
        let mut conn = PgConnection::connect(&self.database_url).await?;
        let lease_ms = self.config.lease.as_millis().to_string();
        sqlx::query("select set_config('idle_session_timeout', $1, false), set_config('application_name', 'choreo-relay', false)")
            .bind(&lease_ms)
            .execute(&mut conn)
            .await?;
        let leader: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut conn)
            .await?;
        Ok(leader.then_some(conn))
    }

    async fn lead(
        &self,
        mut conn: PgConnection,
        shutdown: &CancellationToken,
    ) -> Result<(), RelayError> {
        let producer = self.transactional_producer().await?;
        let mut listener = PgListener::connect(&self.database_url).await?;
        listener.listen("choreo_outbox").await?;
        let mut sampled: Option<std::time::Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            if let Some(metrics) = self
                .metrics
                .as_ref()
                .filter(|_| sampled.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)))
            {
                let (backlog, oldest) = crate::outbox::backlog(&mut conn).await?;
                metrics.outbox_backlog.set(backlog);
                metrics.outbox_oldest_age_seconds.set(oldest);
                sampled = Some(std::time::Instant::now());
            }
            let rows = fetch(&mut conn, self.config.batch_size).await?;
            if rows.is_empty() {
                tokio::select! {
                    notification = listener.recv() => { notification?; }
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
                continue;
            }
            let started = std::time::Instant::now();
            self.publish(&producer, &rows).await?;
            self.stats
                .publish_micros
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            if self
                .faults
                .after_publish
                .as_ref()
                .is_some_and(|crash| crash(&ids))
            {
                return Err(RelayError::Crashed);
            }
            sqlx::query("delete from choreo_outbox where id = any($1)")
                .bind(&ids)
                .execute(&mut conn)
                .await?;
            self.stats
                .published
                .fetch_add(ids.len() as u64, Ordering::Relaxed);
            if let Some(metrics) = &self.metrics {
                let now = chrono::Utc::now();
                metrics.relay_events.inc_by(ids.len() as u64);
                for row in &rows {
                    let latency = (now - row.created_at).to_std().unwrap_or_default();
                    metrics
                        .relay_commit_to_ack_seconds
                        .observe(latency.as_secs_f64());
                }
            }
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn transactional_producer(&self) -> Result<FutureProducer, RelayError> {
        let mut config = crate::kafka::producer_config(
            &self.kafka,
            &format!("choreo-relay-{}", self.config.service),
        );
        config
            .set(
                "transactional.id",
                format!("choreo-relay-{}", self.config.service),
            )
            .set("transaction.timeout.ms", "60000")
            // A batch that begins while the broker still writes the previous commit's markers
            // gets CONCURRENT_TRANSACTIONS on AddPartitionsToTxn; the default 100 ms backoff
            // before the retry was the largest part of the relay's tail latency.
            .set("retry.backoff.ms", "5")
            .set("linger.ms", "0")
            .set("batch.size", "1000000");
        let producer: FutureProducer = config.create()?;
        let init = producer.clone();
        blocking(move || init.init_transactions(Duration::from_secs(30))).await?;
        Ok(producer)
    }

    /// Sends `rows` in one Kafka transaction, retrying the whole batch when Kafka asks for an
    /// abort; a fenced or fatal producer error ends this leadership.
    async fn publish(&self, producer: &FutureProducer, rows: &[Row]) -> Result<(), RelayError> {
        loop {
            producer.begin_transaction()?;
            let mut deliveries = Vec::with_capacity(rows.len());
            let mut send_error = None;
            for row in rows {
                let headers = row.headers.iter().fold(
                    OwnedHeaders::new_with_capacity(row.headers.len()),
                    |h, (k, v)| {
                        h.insert(Header {
                            key: k,
                            value: Some(v.as_bytes()),
                        })
                    },
                );
                let record = FutureRecord::to(&row.topic)
                    .key(&row.key)
                    .payload(&row.value)
                    .headers(headers);
                match producer.send_result(record) {
                    Ok(delivery) => deliveries.push(delivery),
                    Err((error, _)) => {
                        send_error = Some(error);
                        break;
                    }
                }
            }
            if let Some(pause) = &self.faults.before_commit {
                pause().await;
            }
            // Wait for every acknowledgement before committing: rdkafka's commit_transaction
            // first flushes by polling the producer in 100 ms steps, and with the delivery
            // reports served by the producer's own thread each step would run to its end. With
            // nothing left in flight (see `settle_out_queue`) that flush returns at once.
            let mut failure = send_error;
            for delivery in deliveries {
                let error = match delivery.await {
                    Ok(Ok(_)) => continue,
                    Ok(Err((error, _))) => error,
                    Err(_) => KafkaError::Canceled,
                };
                failure.get_or_insert(error);
            }
            let committed = match failure {
                Some(error) => Err(error),
                None => {
                    let commit = producer.clone();
                    blocking(move || {
                        settle_out_queue(&commit);
                        commit.commit_transaction(Duration::from_secs(30))
                    })
                    .await
                }
            };
            let error = match committed {
                Ok(()) => return Ok(()),
                Err(KafkaError::Transaction(error)) if error.is_fatal() => {
                    return Err(KafkaError::Transaction(error).into())
                }
                Err(error) => error,
            };
            // Anything else leaves the transaction abortable: abort it and send the batch again
            // (an abort that fails, e.g. because this producer was fenced, ends the leadership).
            tracing::warn!(%error, "relay batch aborted; sending it again");
            let abort = producer.clone();
            blocking(move || abort.abort_transaction(Duration::from_secs(30))).await?;
        }
    }
}

/// An outbox row as read: id, insert time, topic, key, value, headers.
type RowTuple = (
    i64,
    chrono::DateTime<chrono::Utc>,
    String,
    String,
    Vec<u8>,
    sqlx::types::Json<Vec<(String, String)>>,
);

async fn fetch(conn: &mut PgConnection, limit: i64) -> Result<Vec<Row>, sqlx::Error> {
    let rows: Vec<RowTuple> = sqlx::query_as(
        "select id, created_at, topic, key, value, headers from choreo_outbox order by id limit $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, created_at, topic, key, value, headers)| Row {
            id,
            created_at,
            topic,
            key,
            value,
            headers: headers.0,
        })
        .collect())
}

/// Waits (briefly) until librdkafka counts no message of the batch as outstanding.
///
/// A delivery future resolves inside librdkafka's delivery callback, a moment before the message
/// leaves the producer's out-queue count. rust-rdkafka's `commit_transaction` flushes first, and
/// a flush that finds a message still counted polls for up to 100 ms: that race cost most
/// batches tens of milliseconds. The count drops within microseconds, so this waits for it
/// (bounded, so that a queue kept busy by other events only falls back to the flush).
fn settle_out_queue(producer: &FutureProducer) {
    let deadline = std::time::Instant::now() + Duration::from_millis(50);
    while producer.in_flight_count() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// librdkafka's transactional calls block; keep them off the async workers.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, KafkaError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or(Err(KafkaError::Canceled))
}
