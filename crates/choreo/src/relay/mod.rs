//! The relay: publishes the outbox to Kafka, in id order, and deletes what Kafka acknowledged.
//!
//! One relay per database leads; the others wait as standbys. Leadership is a PostgreSQL
//! session-level advisory lock held by the leader's own connection, which also reads and deletes
//! the rows. That connection runs with `idle_session_timeout` equal to the lease: a leader that
//! dies releases the lock at once (its connection closes), and one that hangs or is paused loses
//! it after the lease, so a standby takes over within the lease plus its retry interval. A live
//! leader waiting on Kafka (a slow commit, a backoff) keeps its session with a ping every third
//! of the lease ([`lease`]), so a commit slower than the lease is not published twice.
//!
//! A paused leader that wakes up is fenced twice. Its database connection is gone, so it can
//! neither read nor delete rows; and every relay of a service shares one Kafka
//! `transactional.id`, so the new leader's `init_transactions` bumped the producer epoch and the
//! old leader's pending transaction can only abort. Each batch is one Kafka transaction: either
//! every row of it is visible to (read-committed) consumers, or none is. A batch that Kafka
//! committed but whose rows were not deleted yet (a crash in between) is published again by the
//! next leader; consumers' inboxes absorb the duplicates.
//!
//! No gap: rows are deleted or parked, never skipped past, so a row whose transaction commits
//! late is simply found by a later batch. Key order: the outbox serialises writers of one key, so
//! a key's rows have ids in commit order, and a batch is sent in id order by an idempotent
//! producer.
//!
//! Waking. A leader that finds the outbox empty waits for a ring of the writers'
//! [doorbell](crate::doorbell) (in memory when the writer is in its process, a `NOTIFY` on
//! [`crate::outbox::CHANNEL`] forwarded from another process), or else polls, more slowly the
//! longer nothing comes. A published batch is deleted by the statement that fetches the next
//! one, so a batch costs one round trip and one commit in PostgreSQL.
//!
//! Failures. A producer whose transaction failed is never reused ([`producer`]): the relay drops
//! it, backs off (exponential with jitter, capped) and creates a new one after pinging its lease,
//! so a broker that comes back is used again within about a second. A row that can never be
//! published ([`park`]) is moved to `choreo_outbox_parked`; later rows of its (topic, key) wait
//! behind it, in order, while other keys flow (see [`crate::outbox`] for how an operator sees
//! and un-parks them). On shutdown the in-flight batch gets `shutdown_drain` to finish; then it
//! is abandoned (its rows stay and are published again by the next leader).

#[cfg(feature = "testing")]
mod faults;
mod leader;
mod lease;
mod park;
mod producer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::doorbell::Doorbell;
use crate::metrics::Metrics;
use crate::resilience::Backoff;

/// The advisory lock that makes a relay the leader of its database.
pub const RELAY_LOCK: i64 = 0x6368_6f72_656f_0002;

/// The Kafka `transactional.id` every relay of `service` shares (one per service, so that a new
/// leader fences the old one); `choreo topics` grants `service` Write on exactly this id.
pub fn transactional_id(service: &str) -> String {
    format!("choreo-relay-{service}")
}

/// How a relay behaves.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The service whose outbox this is; the Kafka `transactional.id` is `choreo-relay-<service>`.
    pub service: String,
    /// The most rows one Kafka transaction carries.
    pub batch_size: i64,
    /// How often an idle leader looks for rows when no ring came (doubling, up to four times
    /// this, while nothing comes).
    pub poll_interval: Duration,
    /// How long a leader may be silent before PostgreSQL ends its session and its lock.
    pub lease: Duration,
    /// How often a standby tries to take the lock.
    pub standby_retry: Duration,
    /// The bound of each Kafka step (initialising a producer, a batch's deliveries, its commit);
    /// past it the step has failed and the producer is replaced (10 s).
    pub kafka_timeout: Duration,
    /// Delays between attempts after consecutive failed batches (100 ms doubling to 5 s).
    pub backoff: Backoff,
    /// How long a topic must stay unknown before its rows are parked (30 s).
    pub unknown_topic_grace: Duration,
    /// How long a batch in flight at shutdown may still take to finish (2 s).
    pub shutdown_drain: Duration,
}

impl RelayConfig {
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            batch_size: 2_000,
            poll_interval: Duration::from_millis(500),
            lease: Duration::from_secs(5),
            standby_retry: Duration::from_millis(500),
            kafka_timeout: Duration::from_secs(10),
            backoff: Backoff {
                first: Duration::from_millis(100),
                max: Duration::from_secs(5),
            },
            unknown_topic_grace: Duration::from_secs(30),
            shutdown_drain: Duration::from_secs(2),
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
    /// A fault point fired (feature `testing` only).
    #[cfg(feature = "testing")]
    #[error("a fault point stopped the relay (test crash)")]
    Crashed,
}

#[cfg(feature = "testing")]
pub use faults::{CrashPoint, FaultPoints, PauseFuture};

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
    /// Batches sent to Kafka (published or not).
    pub attempts: AtomicU64,
    /// Batches (or producer initialisations) that failed.
    pub failures: AtomicU64,
    /// Transactional producers created (a new one after each failure).
    pub producers: AtomicU64,
    /// Rows this relay parked.
    pub parked: AtomicU64,
}

/// A relay for one service database.
pub struct Relay {
    database_url: String,
    kafka: KafkaConfig,
    config: RelayConfig,
    #[cfg(feature = "testing")]
    faults: FaultPoints,
    stats: Arc<RelayStats>,
    metrics: Option<Arc<Metrics>>,
    doorbell: Doorbell,
}

/// An outbox row as the relay reads it.
pub(crate) struct Row {
    id: i64,
    created_at: chrono::DateTime<chrono::Utc>,
    topic: String,
    key: String,
    value: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl Row {
    /// The value of header `name`, as the row was written.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Relay {
    pub fn new(database_url: &str, kafka: &KafkaConfig, config: RelayConfig) -> Self {
        Self {
            database_url: database_url.to_owned(),
            kafka: kafka.clone(),
            config,
            #[cfg(feature = "testing")]
            faults: FaultPoints::default(),
            stats: Arc::default(),
            metrics: None,
            doorbell: Doorbell::new(crate::outbox::CHANNEL),
        }
    }

    /// Answers the rings of `doorbell` (the writers' [`crate::outbox::Outbox::doorbell`]) while
    /// it leads; without one it relies on forwarded rings and its poll.
    pub fn with_doorbell(mut self, doorbell: Doorbell) -> Self {
        self.doorbell = doorbell;
        self
    }

    /// Reports to `metrics` (leadership, events, commit-to-ack latency, outbox backlog, parked
    /// and held rows, failures and producer restarts).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Installs fault points (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn with_faults(mut self, faults: FaultPoints) -> Self {
        self.faults = faults;
        self
    }

    pub fn stats(&self) -> Arc<RelayStats> {
        self.stats.clone()
    }

    /// Waits for leadership, then relays until `shutdown`; after losing leadership (its
    /// connection ended, or it was fenced) it goes back to standby. Returns within
    /// `shutdown_drain` (plus a blocking slice) of `shutdown`, whatever Kafka does.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), RelayError> {
        loop {
            let Some(conn) = self.acquire(&shutdown).await? else {
                return Ok(());
            };
            self.stats.is_leader.store(true, Ordering::Relaxed);
            self.doorbell.waiting_here(true);
            self.stats.terms.fetch_add(1, Ordering::Relaxed);
            self.metrics.iter().for_each(|m| m.relay_leader.set(1));
            tracing::info!(service = %self.config.service, "relay leads");
            let drained = async {
                shutdown.cancelled().await;
                tokio::time::sleep(self.config.shutdown_drain).await;
            };
            let result = tokio::select! {
                result = self.lead(conn, &shutdown) => result,
                () = drained => {
                    tracing::warn!("relay abandoned its batch in flight at shutdown");
                    Ok(())
                }
            };
            self.stats.is_leader.store(false, Ordering::Relaxed);
            self.doorbell.waiting_here(false);
            self.metrics.iter().for_each(|m| m.relay_leader.set(0));
            match result {
                Ok(()) => return Ok(()),
                #[cfg(feature = "testing")]
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
}
