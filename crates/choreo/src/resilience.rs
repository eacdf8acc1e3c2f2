//! Resilience for calls to something outside the shop (a payment provider, a carrier): a
//! circuit breaker ([`Breaker`]) that stops hammering a dependency that is failing as a whole,
//! and exponential backoff with full jitter ([`Backoff`]) between retries; its
//! [`Backoff::delays`] drive backon's retry loops (`backon::Retryable`), whose own exponential
//! backoff only adds jitter on top of the delay (up to twice the cap), not full jitter.
//!
//! The breaker follows the count-based sliding window of resilience4j: a closed breaker
//! remembers the outcomes of the last `window` calls and opens once `failure_threshold` of them
//! are failures, so it reacts to a dependency-wide failure rate, not to a burst of per-request
//! failures (a few slow customers timing out together) among many successes. Its transitions
//! are a pure function of its state, the time and the input, so they are tested without
//! sleeping; [`Breaker`] only adds a mutex and the clock. Retry loops, timeouts and what counts
//! as a failure belong to the caller, not here.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most call outcomes a closed breaker can remember (one bit each in a `u64`).
pub const MAX_WINDOW: u32 = 64;

/// When a [`Breaker`] opens, for how long, and how it closes again.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// How many of the latest call outcomes a closed breaker considers, `1..=64` (0 is taken
    /// as 1, more than 64 as 64).
    pub window: u32,
    /// Failures among the last `window` outcomes that open a closed breaker (0 is taken as 1,
    /// more than `window` as `window`). A dependency that fails every call is refused after
    /// this many calls.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before it lets probes through; also how long a
    /// probe may go without a result before it is taken as lost.
    pub open_for: Duration,
    /// Calls let through while half-open (0 is taken as 1): all of them must succeed to
    /// close the breaker, and any failure reopens it.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    /// 10 failures among the last 20 calls (50 %), open for 5 s, 3 probes.
    fn default() -> Self {
        Self {
            window: 20,
            failure_threshold: 10,
            open_for: Duration::from_secs(5),
            half_open_probes: 3,
        }
    }
}

impl BreakerConfig {
    fn window(&self) -> u32 {
        self.window.clamp(1, MAX_WINDOW)
    }

    fn threshold(&self) -> u32 {
        self.failure_threshold.clamp(1, self.window())
    }

    fn probes(&self) -> u32 {
        self.half_open_probes.max(1)
    }
}

/// What a breaker reports about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go ahead.
    Closed,
    /// Calls are refused until probes are due.
    Open,
    /// Probes are due or in flight; their results close or reopen the breaker.
    HalfOpen,
}

/// The refusal of an open breaker.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("circuit open; next probe in {retry_after:?}")]
pub struct Open {
    /// How long until the breaker lets the next probe through.
    pub retry_after: Duration,
}

/// A circuit breaker: closed -> open once `failure_threshold` of the last `window` outcomes
/// are failures; after `open_for`, `half_open_probes` calls are let through (half-open); when
/// all of them succeed it closes with a clean window, and any failure reopens it.
///
/// Probes that report nothing within `open_for` (their callers were cancelled, or they hang)
/// are taken as lost and new probes may go, so a breaker can never stay half-open for good.
/// Results that arrive while open are ignored; a success reported while half-open is counted
/// as a probe's even if it belongs to a call let through before the breaker opened (the two
/// cannot be told apart).
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    phase: Mutex<Phase>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            phase: Mutex::new(Phase::CLOSED),
        }
    }

    /// Ok when a call may go ahead (closed, or a half-open probe); Err(Open) with how long
    /// until the next probe otherwise.
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

    /// The state as of now; an open breaker whose probes are due is reported half-open.
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

/// The latest outcomes of a closed breaker as a bit ring: bit `i` is set when the outcome `i`
/// calls ago was a failure. Slots not yet filled read as successes, so no count is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcomes {
    failures: u64,
}

impl Outcomes {
    const EMPTY: Self = Self { failures: 0 };

    /// Adds the newest outcome and forgets those older than `window`.
    fn push(self, failed: bool, window: u32) -> Self {
        let mask = u64::MAX >> (u64::BITS - window);
        Self {
            failures: ((self.failures << 1) | u64::from(failed)) & mask,
        }
    }

    fn failures(self) -> u32 {
        self.failures.count_ones()
    }
}

/// The breaker's full state, a plain value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed {
        outcomes: Outcomes,
    },
    Open {
        until: Instant,
    },
    /// `in_flight` probes were let through and have neither reported nor been taken as lost;
    /// `succeeded` have succeeded; the latest was let through at `last_probe`.
    HalfOpen {
        in_flight: u32,
        succeeded: u32,
        last_probe: Instant,
    },
}

impl Phase {
    const CLOSED: Self = Phase::Closed {
        outcomes: Outcomes::EMPTY,
    };

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
        (Phase::Closed { outcomes }, Input::Success | Input::Failure) => {
            let outcomes = outcomes.push(input == Input::Failure, config.window());
            if outcomes.failures() >= config.threshold() {
                (reopen, Ok(()))
            } else {
                (Phase::Closed { outcomes }, Ok(()))
            }
        }
        (Phase::Open { until }, Input::Allow) if now < until => (
            phase,
            Err(Open {
                retry_after: until - now,
            }),
        ),
        (Phase::Open { .. }, Input::Allow) => (
            Phase::HalfOpen {
                in_flight: 1,
                succeeded: 0,
                last_probe: now,
            },
            Ok(()),
        ),
        // Late results of calls let through before the breaker opened change nothing.
        (Phase::Open { .. }, Input::Success | Input::Failure) => (phase, Ok(())),
        (
            Phase::HalfOpen {
                in_flight,
                succeeded,
                last_probe,
            },
            Input::Allow,
        ) => {
            let lost_at = last_probe + config.open_for;
            // Once the latest probe is older than open_for, so are all those in flight: lost.
            let in_flight = if now < lost_at { in_flight } else { 0 };
            if succeeded + in_flight < config.probes() {
                let next = Phase::HalfOpen {
                    in_flight: in_flight + 1,
                    succeeded,
                    last_probe: now,
                };
                (next, Ok(()))
            } else {
                let retry_after = lost_at - now;
                (phase, Err(Open { retry_after }))
            }
        }
        (
            Phase::HalfOpen {
                in_flight,
                succeeded,
                last_probe,
            },
            Input::Success,
        ) => {
            let succeeded = succeeded + 1;
            if succeeded >= config.probes() {
                (Phase::CLOSED, Ok(()))
            } else {
                let next = Phase::HalfOpen {
                    in_flight: in_flight.saturating_sub(1),
                    succeeded,
                    last_probe,
                };
                (next, Ok(()))
            }
        }
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

    /// The delays before retries 0, 1, 2, … without end: a `backon::Backoff` (take as many as
    /// the retries allowed).
    pub fn delays(self) -> Delays {
        Delays {
            backoff: self,
            attempt: 0,
        }
    }
}

/// The delays of a [`Backoff`], one per retry; see [`Backoff::delays`].
#[derive(Debug, Clone)]
pub struct Delays {
    backoff: Backoff,
    attempt: u32,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.backoff.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    fn config(window: u32, threshold: u32, probes: u32, open_ms: u64) -> BreakerConfig {
        BreakerConfig {
            window,
            failure_threshold: threshold,
            open_for: Duration::from_millis(open_ms),
            half_open_probes: probes,
        }
    }

    fn run(config: &BreakerConfig, phase: Phase, now: Instant, inputs: &[Input]) -> Phase {
        inputs
            .iter()
            .fold(phase, |phase, input| step(config, phase, now, *input).0)
    }

    /// Failures where `pattern` has `x`, successes where it has `.`.
    fn outcomes(pattern: &str) -> Vec<Input> {
        pattern
            .chars()
            .map(|c| match c {
                'x' => Input::Failure,
                _ => Input::Success,
            })
            .collect()
    }

    #[test]
    fn threshold_failures_in_the_window_open_the_breaker_and_it_refuses_calls() {
        let config = config(5, 3, 1, 1000);
        let now = Instant::now();
        let phase = run(&config, Phase::CLOSED, now, &outcomes("x.x.x"));
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
    fn failures_that_slide_out_of_the_window_are_forgotten() {
        let config = config(5, 3, 1, 1000);
        let now = Instant::now();
        // Never more than 2 failures among any 5 consecutive outcomes.
        let phase = run(&config, Phase::CLOSED, now, &outcomes("xx...xx...xx....."));
        assert_eq!(phase.state(now), BreakerState::Closed);
        let Phase::Closed { outcomes } = phase else {
            unreachable!()
        };
        assert_eq!(outcomes.failures(), 0);
    }

    #[test]
    fn scattered_failures_among_successes_never_open_the_default_breaker() {
        let config = BreakerConfig::default();
        let now = Instant::now();
        // One failure in 20 (5 %), arriving in bursts of 3 among 57 successes.
        let mut inputs = Vec::new();
        for _ in 0..50 {
            inputs.extend(outcomes("xxx"));
            inputs.extend(outcomes(&".".repeat(57)));
        }
        let phase = run(&config, Phase::CLOSED, now, &inputs);
        assert_eq!(phase.state(now), BreakerState::Closed);
    }

    #[test]
    fn out_of_range_settings_are_clamped() {
        let wide = config(1000, 1000, 0, 1000);
        assert_eq!(
            (wide.window(), wide.threshold(), wide.probes()),
            (64, 64, 1)
        );
        let narrow = config(0, 0, 3, 1000);
        assert_eq!((narrow.window(), narrow.threshold()), (1, 1));
        let now = Instant::now();
        let phase = run(&wide, Phase::CLOSED, now, &[Input::Failure; 64]);
        assert_eq!(phase.state(now), BreakerState::Open);
    }

    #[test]
    fn after_open_for_probes_go_through_and_their_successes_close() {
        let config = config(4, 1, 2, 1000);
        let now = Instant::now();
        let open = run(&config, Phase::CLOSED, now, &[Input::Failure]);
        let later = now + Duration::from_millis(1000);
        let (one, first) = step(&config, open, later, Input::Allow);
        let (two, second) = step(&config, one, later, Input::Allow);
        assert!(first.is_ok() && second.is_ok());
        assert_eq!(two.state(later), BreakerState::HalfOpen);
        assert!(step(&config, two, later, Input::Allow).1.is_err());
        let half = step(&config, two, later, Input::Success).0;
        assert_eq!(half.state(later), BreakerState::HalfOpen);
        assert!(
            step(&config, half, later, Input::Allow).1.is_err(),
            "a succeeded probe does not make room for another"
        );
        let closed = step(&config, half, later, Input::Success).0;
        assert_eq!(closed, Phase::CLOSED);
    }

    #[test]
    fn a_failed_probe_reopens_for_another_open_for() {
        let config = config(4, 1, 3, 1000);
        let now = Instant::now();
        let probing = Phase::HalfOpen {
            in_flight: 2,
            succeeded: 1,
            last_probe: now,
        };
        let reopened = step(&config, probing, now, Input::Failure).0;
        assert_eq!(
            reopened,
            Phase::Open {
                until: now + Duration::from_millis(1000)
            }
        );
    }

    #[test]
    fn lost_probes_are_replaced_once_the_latest_is_older_than_open_for() {
        let config = config(4, 1, 2, 1000);
        let now = Instant::now();
        let probing = Phase::HalfOpen {
            in_flight: 2,
            succeeded: 0,
            last_probe: now,
        };
        let (_, early) = step(
            &config,
            probing,
            now + Duration::from_millis(999),
            Input::Allow,
        );
        assert_eq!(early.unwrap_err().retry_after, Duration::from_millis(1));
        let later = now + Duration::from_millis(1000);
        let (one, first) = step(&config, probing, later, Input::Allow);
        let (two, second) = step(&config, one, later, Input::Allow);
        assert!(first.is_ok() && second.is_ok());
        assert!(step(&config, two, later, Input::Allow).1.is_err());
    }

    #[test]
    fn the_breaker_wrapper_follows_the_same_rules() {
        let breaker = Breaker::new(config(4, 2, 3, 60_000));
        assert!(breaker.allow().is_ok());
        breaker.failure();
        breaker.success();
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

    #[test]
    fn backoff_delays_stay_under_each_retrys_bound() {
        let backoff = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        for (attempt, delay) in (0..).zip(backoff.delays().take(8)) {
            assert!(
                delay <= backoff.bound(attempt),
                "retry {attempt}: {delay:?}"
            );
        }
    }

    #[tokio::test]
    async fn backon_retries_with_the_backoffs_delays_only_when_asked() {
        use backon::Retryable as _;
        let backoff = Backoff {
            first: Duration::from_millis(1),
            max: Duration::from_millis(4),
        };
        let calls = std::sync::atomic::AtomicU32::new(0);
        let call = || async {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n < 3 {
                Err("transient")
            } else {
                Ok(n)
            }
        };
        let done = call
            .retry(backoff.delays().take(3))
            .sleep(tokio::time::sleep)
            .when(|e| *e == "transient")
            .await;
        assert_eq!(done, Ok(3), "three retries after the first call");
        let refused = (|| async { Err::<(), _>("permanent") })
            .retry(backoff.delays())
            .sleep(tokio::time::sleep)
            .when(|e| *e == "transient")
            .await;
        assert_eq!(refused, Err("permanent"));
    }

    /// A window, a threshold no larger than it, probes and open_for.
    fn any_config() -> impl Strategy<Value = BreakerConfig> {
        (1u32..=MAX_WINDOW)
            .prop_flat_map(|window| (Just(window), 1..=window, 1u32..5, 1u64..2000))
            .prop_map(|(window, threshold, probes, open_ms)| {
                config(window, threshold, probes, open_ms)
            })
    }

    fn outcome() -> impl Strategy<Value = Input> {
        prop_oneof![Just(Input::Success), Just(Input::Failure)]
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
        #[test]
        fn a_window_with_fewer_than_failure_threshold_failures_never_opens(
            config in any_config(),
            inputs in proptest::collection::vec(outcome(), 0..300),
        ) {
            let now = Instant::now();
            let mut phase = Phase::CLOSED;
            let mut recent = VecDeque::new();
            for input in inputs {
                recent.push_back(input == Input::Failure);
                if recent.len() > config.window as usize {
                    recent.pop_front();
                }
                phase = step(&config, phase, now, input).0;
                let failures = recent.iter().filter(|failed| **failed).count() as u32;
                if failures < config.failure_threshold {
                    prop_assert!(matches!(phase, Phase::Closed { .. }), "fewer failures stay closed");
                } else {
                    prop_assert!(matches!(phase, Phase::Open { .. }), "threshold failures open");
                    phase = Phase::CLOSED;
                    recent.clear();
                }
            }
        }

        #[test]
        fn failure_threshold_failures_in_a_row_always_open_a_closed_breaker(
            config in any_config(),
            prefix in proptest::collection::vec(outcome(), 0..200),
        ) {
            let now = Instant::now();
            // Whatever came before (reset whenever it opened), the breaker is closed here.
            let phase = prefix.iter().fold(Phase::CLOSED, |phase, input| {
                match step(&config, phase, now, *input).0 {
                    Phase::Closed { outcomes } => Phase::Closed { outcomes },
                    _ => Phase::CLOSED,
                }
            });
            let failures = vec![Input::Failure; config.failure_threshold as usize];
            let (before_last, last) = failures.split_at(failures.len() - 1);
            let almost = run(&config, phase, now, before_last);
            // It may open sooner (earlier failures still in the window), never later.
            let opened = match almost {
                Phase::Closed { .. } => run(&config, almost, now, last),
                open => open,
            };
            prop_assert!(matches!(opened, Phase::Open { .. }), "threshold failures in a row open");
        }

        #[test]
        fn a_fully_failing_dependency_is_refused_after_failure_threshold_calls(
            config in any_config(),
            advances in proptest::collection::vec(0u64..700, 0..200),
        ) {
            let mut now = Instant::now();
            let mut phase = Phase::CLOSED;
            let mut calls = Vec::new();
            let try_call = |phase: Phase, now: Instant, calls: &mut Vec<Instant>| {
                let (next, verdict) = step(&config, phase, now, Input::Allow);
                match verdict {
                    Ok(()) => {
                        calls.push(now);
                        step(&config, next, now, Input::Failure).0
                    }
                    Err(_) => next,
                }
            };
            for _ in 0..config.failure_threshold * 2 {
                phase = try_call(phase, now, &mut calls);
            }
            prop_assert_eq!(calls.len(), config.failure_threshold as usize);
            for advance in advances {
                now += Duration::from_millis(advance);
                phase = try_call(phase, now, &mut calls);
            }
            for pair in calls[config.failure_threshold as usize - 1..].windows(2) {
                prop_assert!(pair[1] - pair[0] >= config.open_for,
                    "once open, one probe per open_for");
            }
        }

        /// Walks random inputs at random (increasing) times and checks the invariants at every step.
        #[test]
        fn breaker_invariants_hold(
            config in any_config(),
            inputs in proptest::collection::vec(input(), 0..300),
        ) {
            let open_for = config.open_for;
            let probes = config.half_open_probes;
            let mut now = Instant::now();
            let mut phase = Phase::CLOSED;
            let mut opened_at: Option<Instant> = None;
            // Calls let through during the current half-open spell, and the closed outcomes.
            let mut probes_granted: Vec<Instant> = Vec::new();
            let mut recent: VecDeque<bool> = VecDeque::new();
            for (advance_ms, input) in inputs {
                now += Duration::from_millis(advance_ms);
                let before = phase;
                let (next, verdict) = step(&config, phase, now, input);
                if let Err(open) = verdict {
                    prop_assert!(open.retry_after <= open_for);
                    prop_assert!(open.retry_after > Duration::ZERO);
                }
                match before {
                    Phase::Closed { .. } => match input {
                        Input::Allow => {
                            prop_assert!(verdict.is_ok(), "a closed breaker lets calls through");
                            prop_assert_eq!(next, before);
                        }
                        Input::Success | Input::Failure => {
                            recent.push_back(input == Input::Failure);
                            if recent.len() > config.window as usize {
                                recent.pop_front();
                            }
                            let failures = recent.iter().filter(|failed| **failed).count() as u32;
                            prop_assert_eq!(matches!(next, Phase::Open { .. }),
                                failures >= config.failure_threshold,
                                "opens exactly when the window holds threshold failures");
                        }
                    },
                    Phase::Open { .. } => {
                        let since = now - opened_at.expect("opened before");
                        match input {
                            Input::Allow => prop_assert_eq!(verdict.is_ok(), since >= open_for,
                                "open lets a call through exactly once open_for has passed"),
                            Input::Success | Input::Failure => prop_assert_eq!(next, before,
                                "results while open are ignored"),
                        }
                    }
                    Phase::HalfOpen { .. } => {}
                }
                if input == Input::Allow && verdict.is_ok() && !matches!(before, Phase::Closed { .. }) {
                    probes_granted.push(now);
                    // Probes older than open_for are lost; the rest are in flight.
                    let in_flight = probes_granted.iter().filter(|at| now - **at < open_for).count();
                    prop_assert!(in_flight <= probes as usize,
                        "half-open never has more than `probes` calls in flight");
                }
                if let Phase::HalfOpen { in_flight, succeeded, .. } = next {
                    prop_assert!(in_flight + succeeded <= probes);
                }
                if matches!(next, Phase::Open { .. }) && !matches!(before, Phase::Open { .. }) {
                    opened_at = Some(now);
                    prop_assert!(input == Input::Failure, "only a failure opens");
                }
                if matches!(next, Phase::Closed { .. }) && !matches!(before, Phase::Closed { .. }) {
                    prop_assert!(matches!(before, Phase::HalfOpen { .. }), "only half-open closes");
                    prop_assert_eq!(input, Input::Success, "only a probe's success closes");
                    prop_assert_eq!(next, Phase::CLOSED);
                }
                if !matches!(next, Phase::Closed { .. }) {
                    recent.clear();
                }
                if !matches!(next, Phase::HalfOpen { .. }) {
                    probes_granted.clear();
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
