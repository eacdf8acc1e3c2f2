//! Doorbells: wake a loop that waits for rows (the relay for the outbox, a service's worker for
//! its queue) as soon as a transaction that wrote them commits, without costing every writer's
//! commit.
//!
//! A `NOTIFY` in the writing transaction would do it, but PostgreSQL serialises the commits of
//! every notifying transaction in the whole cluster on one lock, held across the commit's WAL
//! flush: under load the services' commits queue behind each other one fsync at a time. So a
//! writer [`Doorbell::ring`]s *after* its commit instead. When the waiting loop is in the same
//! process (the relay leads here: the common case) the ring is an in-memory wake-up. Otherwise
//! the ring is forwarded by [`Doorbell::forward`]: one `pg_notify` on a connection of its own,
//! coalescing the rings that arrive meanwhile. That session commits with
//! `synchronous_commit = off`: it writes nothing but the hint, so it gives up no durability and
//! holds the notify lock for microseconds. A lost ring costs latency, never an event: the
//! waiting loop also polls, slowly.
//!
//! A doorbell made [`Doorbell::for_writes`] is rung after a consumer batch only if the batch
//! [`Doorbell::mark`]ed it (the outbox marks its bell on every `add`): a batch that published
//! nothing does not send the relay looking for rows that are not there.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Rung after a commit that wrote rows for a waiting loop; see the module docs.
#[derive(Clone)]
pub struct Doorbell {
    inner: Arc<Inner>,
}

struct Inner {
    /// The channel a remote waiter listens on.
    channel: String,
    /// The waiter in this process, when it is the one that works (see [`Doorbell::waiting_here`]).
    local: Notify,
    here: AtomicBool,
    /// Rings for [`Doorbell::forward`].
    remote: Notify,
    /// Rows written for the waiter so far ([`Doorbell::mark`]).
    marks: AtomicU64,
    /// Rung after a consumer batch only when the batch marked it.
    marked_only: bool,
}

impl Doorbell {
    /// A doorbell whose remote waiters listen on `channel`, rung after every consumer batch.
    pub fn new(channel: &str) -> Self {
        Self::with(channel, false)
    }

    /// A doorbell rung after a consumer batch only when the batch [`Doorbell::mark`]ed it.
    pub fn for_writes(channel: &str) -> Self {
        Self::with(channel, true)
    }

    fn with(channel: &str, marked_only: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                channel: channel.to_owned(),
                local: Notify::new(),
                here: AtomicBool::new(false),
                remote: Notify::new(),
                marks: AtomicU64::new(0),
                marked_only,
            }),
        }
    }

    /// Notes that a row for the waiter was written (in a transaction not yet committed).
    pub fn mark(&self) {
        self.inner.marks.fetch_add(1, Ordering::Relaxed);
    }

    /// Where the marks stand; hand it to [`Doorbell::ring_after_batch`] after the commit.
    pub fn marks(&self) -> u64 {
        self.inner.marks.load(Ordering::Relaxed)
    }

    /// Rings after a committed batch: always, or (for a doorbell made
    /// [`Doorbell::for_writes`]) when someone marked it since `marks_before` was read. A
    /// concurrent batch's mark may ring it once more than needed, never once less.
    pub fn ring_after_batch(&self, marks_before: u64) {
        if !self.inner.marked_only || self.marks() != marks_before {
            self.ring();
        }
    }

    /// The channel remote waiters `LISTEN` on.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Says that rows were committed: wakes the waiter in this process, or has
    /// [`Doorbell::forward`] notify the one elsewhere. Cheap; rings coalesce.
    pub fn ring(&self) {
        if self.inner.here.load(Ordering::Acquire) {
            self.inner.local.notify_one();
        } else {
            self.inner.remote.notify_one();
        }
    }

    /// Set by the waiting loop: `true` while it works in this process (the relay leads), so
    /// rings stay in memory; `false` sends them to the other processes.
    pub fn waiting_here(&self, here: bool) {
        self.inner.here.store(here, Ordering::Release);
    }

    /// Resolves at the next ring in this process (or at once if one came since the last call).
    pub async fn rung(&self) {
        self.inner.local.notified().await;
    }

    /// Forwards rings that no waiter in this process takes to the waiters listening elsewhere,
    /// until `stop`. A database that cannot be reached is tried again at the next ring.
    pub async fn forward(&self, database_url: &str, stop: CancellationToken) {
        let mut conn: Option<PgConnection> = None;
        let mut warned = false;
        loop {
            tokio::select! {
                () = self.inner.remote.notified() => {}
                () = stop.cancelled() => return,
            }
            if conn.is_none() {
                match Self::connect(database_url).await {
                    Ok(c) => conn = Some(c),
                    Err(error) => {
                        if !std::mem::replace(&mut warned, true) {
                            tracing::warn!(%error, channel = %self.inner.channel,
                                "cannot forward doorbell rings; the waiter polls instead");
                        }
                        continue;
                    }
                }
            }
            let sent = sqlx::query!("select pg_notify($1, '')", &self.inner.channel)
                .execute(conn.as_mut().expect("connected above"))
                .await;
            match sent {
                Ok(_) => warned = false,
                Err(error) => {
                    conn = None;
                    if !std::mem::replace(&mut warned, true) {
                        tracing::warn!(%error, channel = %self.inner.channel,
                            "forwarding a doorbell ring failed; the waiter polls instead");
                    }
                }
            }
        }
    }

    async fn connect(database_url: &str) -> Result<PgConnection, sqlx::Error> {
        let mut conn =
            tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(database_url))
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??;
        // Only a hint goes through this session: waiting for its WAL flush would buy nothing.
        sqlx::query!(
            "select set_config('synchronous_commit', 'off', false) as synchronous_commit,
                    set_config('application_name', 'choreo-doorbell', false) as application_name",
        )
        .fetch_one(&mut conn)
        .await?;
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ring_before_the_wait_is_kept_and_rings_coalesce() {
        let bell = Doorbell::new("test");
        bell.waiting_here(true);
        bell.ring();
        bell.ring();
        tokio::time::timeout(Duration::from_millis(100), bell.rung())
            .await
            .expect("the ring rung before the wait is kept");
        // The second ring coalesced into the first: nothing is left.
        assert!(tokio::time::timeout(Duration::from_millis(20), bell.rung())
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_doorbell_for_writes_rings_after_a_batch_only_if_it_was_marked() {
        let bell = Doorbell::for_writes("test");
        bell.waiting_here(true);
        let before = bell.marks();
        bell.ring_after_batch(before);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), bell.rung())
                .await
                .is_err(),
            "a batch that wrote nothing does not ring"
        );
        let before = bell.marks();
        bell.mark();
        bell.ring_after_batch(before);
        tokio::time::timeout(Duration::from_millis(100), bell.rung())
            .await
            .expect("a batch that wrote rings");
        // A plain doorbell rings after every batch.
        let plain = Doorbell::new("test");
        plain.waiting_here(true);
        plain.ring_after_batch(plain.marks());
        tokio::time::timeout(Duration::from_millis(100), plain.rung())
            .await
            .expect("rung");
    }

    #[tokio::test]
    async fn rings_go_to_the_forwarder_while_the_waiter_works_elsewhere() {
        let bell = Doorbell::new("test");
        bell.ring(); // nobody waits here
        assert!(
            tokio::time::timeout(Duration::from_millis(20), bell.rung())
                .await
                .is_err(),
            "a ring for another process does not wake this one"
        );
        tokio::time::timeout(Duration::from_millis(100), bell.inner.remote.notified())
            .await
            .expect("the forwarder is told");
    }
}
