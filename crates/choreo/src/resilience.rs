//! Resilience for calls to something outside the shop (a payment provider, a carrier): a
//! circuit breaker ([`Breaker`]) that stops hammering a dependency that keeps failing, and
//! exponential backoff with full jitter ([`Backoff`]) between retries. The breaker's transitions
//! are a pure function of its state, the time and the input, so they are tested without sleeping;
//! [`Breaker`] only adds a mutex and the clock. Retry loops, timeouts and what counts as a
//! failure belong to the caller, not here.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When a [`Breaker`] opens and for how long.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker (0 is taken as 1).
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before it lets one probe through.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    /// 5 consecutive failures, open for 5 s.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

/// What a breaker reports about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go ahead.
    Closed,
    /// Calls are refused until the next probe is due.
    Open,
    /// A probe is due or in flight; its result closes or reopens the breaker.
    HalfOpen,
}

/// The refusal of an open breaker.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("circuit open; next probe in {retry_after:?}")]
pub struct Open {
    /// How long until the breaker lets the next probe through.
    pub retry_after: Duration,
}

/// A circuit breaker: closed -> open after `failure_threshold` consecutive failures; after
/// `open_for` one probe is let through (half-open); its success closes, its failure reopens.
///
/// A probe that reports nothing within `open_for` (its caller was cancelled) is taken as lost,
/// and the next call becomes a new probe, so a breaker can never stay half-open for good.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    phase: Mutex<Phase>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            phase: Mutex::new(Phase::Closed { failures: 0 }),
        }
    }

    /// Ok when a call may go ahead (closed, or the single half-open probe); Err(Open) with how
    /// long until the next probe otherwise.
    pub fn allow(&self) -> Result<(), Open> {
        let mut phase = self.lock();
        let (next, verdict) = step(&self.config, *phase, Instant::now(), Input::Allow);
        *phase = next;
        verdict
    }

    /// Reports that a call let through by [`Breaker::allow`] succeeded.
    pub fn success(&self) {
        self.record(Input::Success);
    }

    /// Reports that a call let through by [`Breaker::allow`] failed.
    pub fn failure(&self) {
        self.record(Input::Failure);
    }

    /// The state as of now; an open breaker whose probe is due is reported half-open.
    pub fn state(&self) -> BreakerState {
        self.lock().state(Instant::now())
    }

    fn record(&self, input: Input) {
        let mut phase = self.lock();
        *phase = step(&self.config, *phase, Instant::now(), input).0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        // The state is a plain value that every step replaces whole: a panic elsewhere cannot
        // leave it half-written, so a poisoned lock is safe to use.
        self.phase
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The breaker's full state, a plain value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_since: Instant },
}

impl Phase {
    fn state(self, now: Instant) -> BreakerState {
        match self {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { until } if now < until => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Allow,
    Success,
    Failure,
}

/// The breaker's transition: the next state, and for [`Input::Allow`] whether the call may go
/// ahead (always `Ok` for the other inputs).
fn step(
    config: &BreakerConfig,
    phase: Phase,
    now: Instant,
    input: Input,
) -> (Phase, Result<(), Open>) {
    let reopen = Phase::Open {
        until: now + config.open_for,
    };
    match (phase, input) {
        (Phase::Closed { .. }, Input::Allow) => (phase, Ok(())),
        (Phase::Closed { .. }, Input::Success) => (Phase::Closed { failures: 0 }, Ok(())),
        (Phase::Closed { failures }, Input::Failure) => {
            let failures = failures.saturating_add(1);
            if failures >= config.failure_threshold.max(1) {
                (reopen, Ok(()))
            } else {
                (Phase::Closed { failures }, Ok(()))
            }
        }
        (Phase::Open { until }, Input::Allow) if now < until => (
            phase,
            Err(Open {
                retry_after: until - now,
            }),
        ),
        (Phase::Open { .. }, Input::Allow) => (Phase::HalfOpen { probe_since: now }, Ok(())),
        // Late results of calls let through before the breaker opened change nothing.
        (Phase::Open { .. }, Input::Success | Input::Failure) => (phase, Ok(())),
        (Phase::HalfOpen { probe_since }, Input::Allow) => {
            let lost_at = probe_since + config.open_for;
            if now < lost_at {
                (
                    phase,
                    Err(Open {
                        retry_after: lost_at - now,
                    }),
                )
            } else {
                (Phase::HalfOpen { probe_since: now }, Ok(()))
            }
        }
        (Phase::HalfOpen { .. }, Input::Success) => (Phase::Closed { failures: 0 }, Ok(())),
        (Phase::HalfOpen { .. }, Input::Failure) => (reopen, Ok(())),
    }
}

/// Exponential backoff with full jitter: the delay before retry `attempt` (0 = the first retry)
/// is uniformly random in `[0, min(max, first * 2^attempt)]`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The bound of the first retry's delay.
    pub first: Duration,
    /// The largest delay ever returned.
    pub max: Duration,
}

impl Default for Backoff {
    /// 100 ms, doubling up to 2 s.
    fn default() -> Self {
        Self {
            first: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// A random delay before retry `attempt` (0 = the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        // uuid v4 is already a dependency and draws from the OS; 64 of its random bits suffice.
        self.delay_with(attempt, uuid::Uuid::new_v4().as_u64_pair().0)
    }

    /// The upper bound of the delay before retry `attempt`: `min(max, first * 2^attempt)`.
    pub fn bound(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry `attempt` for a given random draw: deterministic, for tests.
    pub fn delay_with(&self, attempt: u32, random: u64) -> Duration {
        let bound = u64::try_from(self.bound(attempt).as_nanos()).unwrap_or(u64::MAX);
        match bound.checked_add(1) {
            Some(span) => Duration::from_nanos(random % span),
            None => Duration::from_nanos(random),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(threshold: u32, open_ms: u64) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: threshold,
            open_for: Duration::from_millis(open_ms),
        }
    }

    fn run(config: &BreakerConfig, phase: Phase, now: Instant, inputs: &[Input]) -> Phase {
        inputs
            .iter()
            .fold(phase, |phase, input| step(config, phase, now, *input).0)
    }

    #[test]
    fn threshold_failures_open_the_breaker_and_it_refuses_calls() {
        let config = config(3, 1000);
        let now = Instant::now();
        let phase = run(
            &config,
            Phase::Closed { failures: 0 },
            now,
            &[Input::Failure; 3],
        );
        assert_eq!(phase.state(now), BreakerState::Open);
        let (_, verdict) = step(
            &config,
            phase,
            now + Duration::from_millis(400),
            Input::Allow,
        );
        assert_eq!(verdict.unwrap_err().retry_after, Duration::from_millis(600));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let config = config(3, 1000);
        let now = Instant::now();
        let inputs = [
            Input::Failure,
            Input::Failure,
            Input::Success,
            Input::Failure,
            Input::Failure,
        ];
        let phase = run(&config, Phase::Closed { failures: 0 }, now, &inputs);
        assert_eq!(phase, Phase::Closed { failures: 2 });
    }

    #[test]
    fn after_open_for_one_probe_goes_through_and_its_success_closes() {
        let config = config(1, 1000);
        let now = Instant::now();
        let open = run(
            &config,
            Phase::Closed { failures: 0 },
            now,
            &[Input::Failure],
        );
        let later = now + Duration::from_millis(1000);
        let (probing, first) = step(&config, open, later, Input::Allow);
        assert!(first.is_ok());
        assert_eq!(probing.state(later), BreakerState::HalfOpen);
        assert!(step(&config, probing, later, Input::Allow).1.is_err());
        let closed = step(&config, probing, later, Input::Success).0;
        assert_eq!(closed, Phase::Closed { failures: 0 });
    }

    #[test]
    fn a_failed_probe_reopens_for_another_open_for() {
        let config = config(1, 1000);
        let now = Instant::now();
        let probing = Phase::HalfOpen { probe_since: now };
        let reopened = step(&config, probing, now, Input::Failure).0;
        assert_eq!(
            reopened,
            Phase::Open {
                until: now + Duration::from_millis(1000)
            }
        );
    }

    #[test]
    fn a_lost_probe_is_replaced_after_open_for() {
        let config = config(1, 1000);
        let now = Instant::now();
        let probing = Phase::HalfOpen { probe_since: now };
        let (_, verdict) = step(
            &config,
            probing,
            now + Duration::from_millis(1000),
            Input::Allow,
        );
        assert!(verdict.is_ok());
    }

    #[test]
    fn the_breaker_wrapper_follows_the_same_rules() {
        let breaker = Breaker::new(config(2, 60_000));
        assert!(breaker.allow().is_ok());
        breaker.failure();
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        let refused = breaker.allow().unwrap_err();
        assert!(refused.retry_after <= Duration::from_secs(60));
        assert!(refused.to_string().starts_with("circuit open"));
    }

    #[test]
    fn backoff_bound_doubles_up_to_max() {
        let backoff = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let bounds: Vec<u64> = (0..6)
            .map(|a| backoff.bound(a).as_millis() as u64)
            .collect();
        assert_eq!(bounds, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.bound(u32::MAX), Duration::from_millis(1000));
        assert_eq!(backoff.delay_with(0, 0), Duration::ZERO);
    }

    fn input() -> impl Strategy<Value = (u64, Input)> {
        let input = prop_oneof![
            Just(Input::Allow),
            Just(Input::Success),
            Just(Input::Failure)
        ];
        (0u64..700, input)
    }

    proptest! {
        /// Walks random inputs at random (increasing) times and checks the invariants at every step.
        #[test]
        fn breaker_invariants_hold(
            threshold in 1u32..6,
            open_ms in 1u64..2000,
            inputs in proptest::collection::vec(input(), 0..200),
        ) {
            let config = config(threshold, open_ms);
            let open_for = config.open_for;
            let mut now = Instant::now();
            let mut phase = Phase::Closed { failures: 0 };
            let mut opened_at: Option<Instant> = None;
            let mut probe_granted_at: Option<Instant> = None;
            let mut consecutive_failures = 0u32;
            for (advance_ms, input) in inputs {
                now += Duration::from_millis(advance_ms);
                let before = phase;
                let (next, verdict) = step(&config, phase, now, input);
                match before {
                    Phase::Closed { .. } => {
                        if input == Input::Allow {
                            prop_assert!(verdict.is_ok(), "a closed breaker lets calls through");
                        }
                    }
                    Phase::Open { .. } => {
                        let since = now - opened_at.expect("opened before");
                        if input == Input::Allow {
                            prop_assert_eq!(verdict.is_ok(), since >= open_for,
                                "open lets a call through exactly once open_for has passed");
                        }
                    }
                    Phase::HalfOpen { .. } => {
                        if input == Input::Allow && verdict.is_ok() {
                            let since = now - probe_granted_at.expect("a probe was granted");
                            prop_assert!(since >= open_for,
                                "a second probe only once the first is lost");
                        }
                    }
                }
                if let Err(open) = verdict {
                    prop_assert!(open.retry_after <= open_for);
                    prop_assert!(open.retry_after > Duration::ZERO);
                }
                if input == Input::Allow && verdict.is_ok() && !matches!(before, Phase::Closed { .. }) {
                    probe_granted_at = Some(now);
                }
                if matches!(before, Phase::Closed { .. }) {
                    consecutive_failures = match input {
                        Input::Failure => consecutive_failures + 1,
                        Input::Success => 0,
                        Input::Allow => consecutive_failures,
                    };
                    if consecutive_failures >= threshold {
                        prop_assert!(matches!(next, Phase::Open { .. }),
                            "threshold consecutive failures open a closed breaker");
                    } else {
                        prop_assert_eq!(next, Phase::Closed { failures: consecutive_failures });
                    }
                }
                if matches!(next, Phase::Open { .. }) && !matches!(before, Phase::Open { .. }) {
                    opened_at = Some(now);
                }
                if matches!(next, Phase::Closed { .. }) && !matches!(before, Phase::Closed { .. }) {
                    prop_assert_eq!(input, Input::Success, "only a probe's success closes");
                    prop_assert_eq!(next, Phase::Closed { failures: 0 });
                    consecutive_failures = 0;
                }
                if !matches!(next, Phase::Closed { .. }) {
                    consecutive_failures = 0;
                }
                phase = next;
            }
        }

        #[test]
        fn backoff_never_exceeds_max_and_its_bound_grows(
            first_ms in 0u64..5000,
            max_ms in 0u64..60_000,
            attempt in 0u32..80,
            random: u64,
        ) {
            let backoff = Backoff {
                first: Duration::from_millis(first_ms),
                max: Duration::from_millis(max_ms),
            };
            let delay = backoff.delay_with(attempt, random);
            prop_assert!(delay <= backoff.max);
            prop_assert!(delay <= backoff.bound(attempt));
            prop_assert!(backoff.bound(attempt) <= backoff.bound(attempt + 1));
            prop_assert!(backoff.delay(attempt) <= backoff.max);
        }
    }
}
