//! Whether a consumer is a member of its group right now, as librdkafka itself reports it.
//!
//! librdkafka's statistics (sent every `statistics.interval.ms` from the consumer's poll) carry
//! the group handler's state: a member is `up` (it has a coordinator) and `steady` (neither
//! joining, syncing nor waiting on an assignment call). The runner polls all the time, so fresh
//! statistics keep arriving; statistics that stop arriving mean the runner stopped polling,
//! and librdkafka will soon leave the group on its own (`max.poll.interval.ms`).
//!
//! Readiness answers from [`Membership::is_member`], never from a flag set once: a member that
//! the broker evicted (its session expired while the broker was paused) and that has not joined
//! again is not ready. The runner asks [`Membership::lost_for`] and starts a new session when the
//! member has been out longer than it may be (`ConsumerConfig::rejoin_after`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often librdkafka sends statistics (`statistics.interval.ms`).
pub(crate) const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Statistics older than this no longer vouch for membership.
const FRESH: Duration = Duration::from_secs(5);

/// True when librdkafka's group handler state and join state say "in the group, settled".
pub fn in_group(state: &str, join_state: &str) -> bool {
    state == "up" && join_state == "steady"
}

#[derive(Debug)]
struct Seen {
    /// The last time the member was seen in its group.
    member_at: Option<Instant>,
    /// The last time statistics said it was not.
    out_at: Option<Instant>,
    /// When the current session started.
    session_at: Instant,
}

/// One consumer's membership, shared by its runner, its rebalance hook and readiness.
#[derive(Debug)]
pub struct Membership {
    seen: Mutex<Seen>,
}

impl Default for Membership {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl Membership {
    fn new(now: Instant) -> Self {
        Self {
            seen: Mutex::new(Seen {
                member_at: None,
                out_at: None,
                session_at: now,
            }),
        }
    }

    /// A new session (a new Kafka consumer) starts: not a member until it joins.
    pub(crate) fn session_started(&self, now: Instant) {
        let mut seen = self.seen.lock().expect("membership lock");
        *seen = Seen {
            member_at: None,
            out_at: None,
            session_at: now,
        };
    }

    /// librdkafka's statistics said `state`/`join_state` at `now`.
    pub(crate) fn observe(&self, state: &str, join_state: &str, now: Instant) {
        let mut seen = self.seen.lock().expect("membership lock");
        if in_group(state, join_state) {
            seen.member_at = Some(now);
            seen.out_at = None;
        } else {
            seen.out_at = Some(now);
        }
    }

    /// A rebalance assigned partitions (possibly none) at `now`.
    pub(crate) fn joined(&self, now: Instant) {
        let mut seen = self.seen.lock().expect("membership lock");
        seen.member_at = Some(now);
        seen.out_at = None;
    }

    /// In the group, as statistics at most a few seconds old say.
    pub fn is_member(&self) -> bool {
        self.is_member_at(Instant::now())
    }

    fn is_member_at(&self, now: Instant) -> bool {
        let seen = self.seen.lock().expect("membership lock");
        seen.out_at.is_none()
            && seen
                .member_at
                .is_some_and(|at| now.saturating_duration_since(at) <= FRESH)
    }

    /// How long the member has been out of its group (or never in it this session); zero while
    /// it is a member.
    pub(crate) fn lost_for(&self, now: Instant) -> Duration {
        if self.is_member_at(now) {
            return Duration::ZERO;
        }
        let seen = self.seen.lock().expect("membership lock");
        let since = seen
            .member_at
            .map_or(seen.session_at, |at| at.max(seen.session_at));
        now.saturating_duration_since(since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_up_and_steady_is_in_the_group() {
        assert!(in_group("up", "steady"));
        assert!(!in_group("up", "wait-join"));
        assert!(!in_group("up", "wait-unassign-call"));
        assert!(!in_group("wait-coord", "steady"));
        assert!(!in_group("query-coord", "init"));
    }

    #[test]
    fn a_member_the_broker_evicted_is_not_a_member_though_it_joined_once() {
        let start = Instant::now();
        let membership = Membership::new(start);
        assert!(!membership.is_member_at(start));
        membership.joined(start + Duration::from_secs(1));
        assert!(membership.is_member_at(start + Duration::from_secs(2)));
        membership.observe("up", "wait-join", start + Duration::from_secs(3));
        assert!(!membership.is_member_at(start + Duration::from_secs(3)));
        assert_eq!(
            membership.lost_for(start + Duration::from_secs(61)),
            Duration::from_secs(60)
        );
        membership.observe("up", "steady", start + Duration::from_secs(62));
        assert!(membership.is_member_at(start + Duration::from_secs(62)));
        assert_eq!(
            membership.lost_for(start + Duration::from_secs(62)),
            Duration::ZERO
        );
    }

    #[test]
    fn statistics_that_stop_arriving_stop_vouching() {
        let start = Instant::now();
        let membership = Membership::new(start);
        membership.observe("up", "steady", start);
        assert!(membership.is_member_at(start + FRESH));
        assert!(!membership.is_member_at(start + FRESH + Duration::from_secs(1)));
    }

    #[test]
    fn a_session_that_never_joins_is_out_since_it_started() {
        let start = Instant::now();
        let membership = Membership::new(start);
        membership.observe("wait-coord", "init", start + Duration::from_secs(5));
        assert_eq!(
            membership.lost_for(start + Duration::from_secs(30)),
            Duration::from_secs(30)
        );
        membership.session_started(start + Duration::from_secs(40));
        assert_eq!(
            membership.lost_for(start + Duration::from_secs(45)),
            Duration::from_secs(5)
        );
    }
}
