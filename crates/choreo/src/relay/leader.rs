//! The leader's loop: fetch a batch (leaving out keys held behind a parked row) in the statement
//! that deletes the previous one, publish it in one Kafka transaction while keeping the lease;
//! when the outbox is empty wait for a doorbell ring or the (slowing) poll; after a failure
//! replace the producer and back off, or park what can never be published. Leadership itself is
//! in the parent module.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use sqlx::postgres::PgListener;
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

use super::lease::{self, keep_alive};
use super::park::{Decision, Parking};
use super::producer::{Settings, Txn};
use super::{Relay, RelayError, Row};

/// Why a batch was not published.
enum Failure {
    /// These rows (by index) failed; the transaction was not committed.
    Rows(Vec<(usize, KafkaError)>),
    /// The transaction itself failed (begin or commit).
    Transaction(KafkaError),
}

/// The leader's state between batches.
struct Term {
    /// The producer, until a transaction of it fails; then none until a new one is initialised.
    producer: Option<Txn>,
    /// Failures since the last published batch (the backoff's exponent).
    failures: u32,
    parking: Parking,
    /// The next batch stops before this row (to publish what precedes a row to be parked).
    limit: Option<usize>,
    /// When the gauges were last sampled.
    sampled: Option<Instant>,
    /// The last published batch, deleted by the next fetch (one statement for both).
    published: Vec<i64>,
    /// Polls in a row that found nothing (the idle poll slows down with them).
    idle_polls: u32,
}

impl Relay {
    /// Relays while `conn` holds the lock: returns on shutdown, fails when the lease is lost.
    pub(super) async fn lead(
        &self,
        mut conn: PgConnection,
        shutdown: &CancellationToken,
    ) -> Result<(), RelayError> {
        let mut listener = PgListener::connect(&self.database_url).await?;
        listener.listen(crate::outbox::CHANNEL).await?;
        let mut term = Term {
            producer: None,
            failures: 0,
            parking: Parking::new(self.config.unknown_topic_grace),
            limit: None,
            sampled: None,
            published: Vec::new(),
            idle_polls: 0,
        };
        loop {
            if shutdown.is_cancelled() {
                return flush_deletes(&mut conn, &mut term).await;
            }
            // The gauges: every second while busy, every 15 s while idle.
            let every = Duration::from_secs(if term.idle_polls == 0 { 1 } else { 15 });
            self.sample(&mut conn, &mut term.sampled, every).await?;
            if term.producer.is_none() {
                match self.new_producer(&mut conn).await? {
                    Ok(txn) => term.producer = Some(txn),
                    Err(error) => {
                        tracing::warn!(%error, "relay cannot initialise its Kafka producer");
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                        self.metrics.iter().for_each(|m| m.relay_failures.inc());
                        self.back_off(&mut conn, &mut term, shutdown).await?;
                        continue;
                    }
                }
            }
            let limit = term.limit.take().map_or(self.config.batch_size, |l| {
                i64::try_from(l)
                    .unwrap_or(i64::MAX)
                    .min(self.config.batch_size)
            });
            let rows = fetch(&mut conn, &std::mem::take(&mut term.published), limit).await?;
            if rows.is_empty() {
                if let Some(metrics) = self.metrics.as_ref().filter(|m| m.outbox_held.get() == 0) {
                    // Nothing waits but what a ring will announce: no query needed to say so.
                    metrics.outbox_backlog.set(0);
                    metrics.outbox_oldest_age_seconds.set(0.0);
                }
                // Woken by a ring in this process, one forwarded from another, or the poll: a
                // safety net that slows down while nothing comes (up to 4 poll intervals).
                let idle = self.config.poll_interval * (1 << term.idle_polls.min(2));
                term.idle_polls += 1;
                tokio::select! {
                    () = self.doorbell.rung() => term.idle_polls = 0,
                    notification = listener.recv() => { notification?; term.idle_polls = 0; }
                    () = tokio::time::sleep(idle) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
                continue;
            }
            term.idle_polls = 0;
            let txn = term.producer.take().expect("created above");
            match self.publish(&mut conn, &txn, &rows).await? {
                Ok(()) => {
                    term.producer = Some(txn);
                    term.failures = 0;
                    term.parking.published();
                    term.published = self.published(&rows)?;
                }
                Err(failure) => {
                    // Never trust a producer whose transaction failed: a new one comes next.
                    drop(txn);
                    self.failed(&mut conn, &mut term, &rows, &failure, shutdown)
                        .await?;
                }
            }
        }
    }

    /// A new producer, once the lease is proven: a zombie must not fence the leader.
    async fn new_producer(
        &self,
        conn: &mut PgConnection,
    ) -> Result<Result<Txn, KafkaError>, RelayError> {
        lease::ping(conn).await?;
        let id = super::transactional_id(&self.config.service);
        let settings = Settings {
            kafka: &self.kafka,
            transactional_id: &id,
            timeout: self.config.kafka_timeout,
            propagation: self.config.unknown_topic_grace.min(Duration::from_secs(5)),
        };
        let created = keep_alive(conn, self.config.lease, Txn::create(&settings)).await?;
        if created.is_ok() && self.stats.producers.fetch_add(1, Ordering::Relaxed) > 0 {
            self.metrics
                .iter()
                .for_each(|m| m.relay_producer_restarts.inc());
        }
        Ok(created)
    }

    /// Sends `rows` in one Kafka transaction and commits it.
    async fn publish(
        &self,
        conn: &mut PgConnection,
        txn: &Txn,
        rows: &[Row],
    ) -> Result<Result<(), Failure>, RelayError> {
        let started = Instant::now();
        self.stats.attempts.fetch_add(1, Ordering::Relaxed);
        let flight = match txn.send(rows) {
            Ok(flight) => flight,
            Err(error) => return Ok(Err(Failure::Transaction(error))),
        };
        let failed = keep_alive(conn, self.config.lease, txn.settle(flight)).await?;
        #[cfg(feature = "testing")]
        self.faults.before_commit().await;
        if !failed.is_empty() {
            return Ok(Err(Failure::Rows(failed)));
        }
        let committed = keep_alive(conn, self.config.lease, txn.commit()).await?;
        self.stats
            .publish_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(committed.map_err(Failure::Transaction))
    }

    /// Counts a published batch and returns its ids, for the next fetch to delete (or, with
    /// feature `testing`, crashes at the fault point first, deleting nothing).
    fn published(&self, rows: &[Row]) -> Result<Vec<i64>, RelayError> {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        #[cfg(feature = "testing")]
        self.faults.after_publish(&ids)?;
        self.stats
            .published
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            let now = chrono::Utc::now();
            metrics.relay_events.inc_by(ids.len() as u64);
            for row in rows {
                let latency = (now - row.created_at).to_std().unwrap_or_default();
                metrics
                    .relay_commit_to_ack_seconds
                    .observe(latency.as_secs_f64());
            }
        }
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        Ok(ids)
    }

    /// After a failed batch: parks what can never be published, or backs off.
    async fn failed(
        &self,
        conn: &mut PgConnection,
        term: &mut Term,
        rows: &[Row],
        failure: &Failure,
        shutdown: &CancellationToken,
    ) -> Result<(), RelayError> {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        self.metrics.iter().for_each(|m| m.relay_failures.inc());
        let (decision, (index, error)) = match failure {
            Failure::Rows(failed) => (
                term.parking.decide(rows, failed, Instant::now()),
                (failed[0].0, &failed[0].1),
            ),
            Failure::Transaction(error) => (Decision::default(), (0, error)),
        };
        for (index, reason) in &decision.park {
            let row = &rows[*index];
            if crate::outbox::park(conn, row.id, reason).await? {
                self.stats.parked.fetch_add(1, Ordering::Relaxed);
                tracing::error!(id = row.id, topic = %row.topic, key = %row.key, %reason,
                    "relay parked an outbox row it can never publish; later rows of its key wait");
            }
        }
        term.limit = decision.limit;
        if !decision.park.is_empty() || decision.limit.is_some() {
            term.sampled = None;
            return Ok(());
        }
        tracing::warn!(%error, id = rows[index].id, failures = term.failures + 1,
            "relay batch failed; backing off and replacing the producer");
        self.back_off(conn, term, shutdown).await
    }

    /// Waits the backoff's delay after another failure (keeping the lease; `shutdown` ends it).
    async fn back_off(
        &self,
        conn: &mut PgConnection,
        term: &mut Term,
        shutdown: &CancellationToken,
    ) -> Result<(), RelayError> {
        let delay = self.config.backoff.delay(term.failures);
        term.failures = term.failures.saturating_add(1);
        let wait = async {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => {}
            }
        };
        Ok(keep_alive(conn, self.config.lease, wait).await?)
    }

    /// Samples the backlog, parked and held gauges (at most once per `every`).
    async fn sample(
        &self,
        conn: &mut PgConnection,
        sampled: &mut Option<Instant>,
        every: Duration,
    ) -> Result<(), RelayError> {
        let Some(metrics) = self
            .metrics
            .as_ref()
            .filter(|_| sampled.is_none_or(|at| at.elapsed() >= every))
        else {
            return Ok(());
        };
        let (backlog, oldest) = crate::outbox::backlog(conn).await?;
        let (parked, held) = crate::outbox::parked_and_held(conn).await?;
        metrics.outbox_backlog.set(backlog);
        metrics.outbox_oldest_age_seconds.set(oldest);
        metrics.outbox_parked.set(parked);
        metrics.outbox_held.set(held);
        *sampled = Some(Instant::now());
        Ok(())
    }
}

/// Deletes the last published batch, if any (before the leader stops).
async fn flush_deletes(conn: &mut PgConnection, term: &mut Term) -> Result<(), RelayError> {
    if !term.published.is_empty() {
        let published = std::mem::take(&mut term.published);
        sqlx::query!("delete from choreo_outbox where id = any($1)", &published)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Deletes the rows of the batch just published (`published`, possibly none) and reads the
/// next `limit` rows in id order, leaving out keys held behind a parked row: one statement, one
/// round trip and one commit per batch. (The select sees the table as it was before the delete,
/// hence `id <> all`.)
async fn fetch(
    conn: &mut PgConnection,
    published: &[i64],
    limit: i64,
) -> Result<Vec<Row>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"with published as (delete from choreo_outbox where id = any($1))
           select id, created_at, topic, key, value,
                  headers as "headers: sqlx::types::Json<Vec<(String, String)>>"
           from choreo_outbox o
           where id <> all($1)
             and not exists (select 1 from choreo_outbox_parked p
                             where p.topic = o.topic and p.key = o.key)
           order by id limit $2"#,
        published,
        limit,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Row {
            id: row.id,
            created_at: row.created_at,
            topic: row.topic,
            key: row.key,
            value: row.value,
            headers: row.headers.0,
        })
        .collect())
}
