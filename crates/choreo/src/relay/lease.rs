//! The leader's lease while it waits on Kafka: its connection runs with `idle_session_timeout`
//! equal to the lease, so while a batch is in flight (or the relay backs off) a cheap `select 1`
//! every third of the lease keeps the session, and with it the advisory lock, alive.
//!
//! Only a live relay pings: a process that is frozen (SIGSTOP, a stalled VM) or blocked outside
//! these waits stays silent, loses its session after the lease, and is fenced as before. A ping
//! that fails means the lease is gone, and the wait ends with that error.

use std::future::Future;
use std::time::Duration;

use sqlx::PgConnection;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

/// How often a leader with a lease of `lease` pings: a third of it (at least every 10 ms).
pub(super) fn ping_every(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(10))
}

/// Awaits `work` while keeping `conn`'s session alive; the session's loss ends the wait.
pub(super) async fn keep_alive<T>(
    conn: &mut PgConnection,
    lease: Duration,
    work: impl Future<Output = T>,
) -> Result<T, sqlx::Error> {
    let every = ping_every(lease);
    let mut ticks = interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            out = &mut work => return Ok(out),
            _ = ticks.tick() => ping(conn).await?,
        }
    }
}

/// One round trip on the leader's connection: proves (and renews) the lease.
pub(super) async fn ping(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query_scalar!("select 1 as ping")
        .fetch_one(conn)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_pings_three_times_per_lease() {
        assert_eq!(ping_every(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(ping_every(Duration::ZERO), Duration::from_millis(10));
    }
}
