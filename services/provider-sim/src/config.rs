//! The simulator's configuration: flags, each also read from a `PROVIDER_*` environment
//! variable, and the behaviour rules derived from them. One secret, never a flag: the operator
//! token `/admin/faults` takes (`OPERATOR_TOKEN[_FILE]`, which the binary requires).

use std::net::SocketAddr;
use std::time::Duration;

use choreo::secret::SecretString;
use clap::Parser;

use crate::decide::Rules;
use crate::faults::Faults;

/// A payment provider simulator: charges and refunds over HTTP, with injected latency,
/// failures, declines and pending charges.
///
/// Customer-id prefixes: `cus_decline` is declined (`card_declined`), `cus_flaky` fails at
/// --flaky-rate, `cus_pending` is answered `pending` (authentication outstanding) and declined
/// (`authentication_timeout`) after --pending-ms; repeating the charge with its idempotency key
/// answers its current state.
///
/// Endpoints: `POST /v1/charges`, `GET /v1/charges?idempotency_key=` (lookup) or
/// `?after=&limit=` (paged list), `POST /v1/charges/void`, `GET /v1/charges/{id}`,
/// `POST /v1/refunds`, `GET|PUT|DELETE /admin/faults`, `GET /stats`, `GET /healthz`.
#[derive(Debug, Clone, Parser)]
#[command(name = "provider-sim", version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "PROVIDER_ADDR", default_value = "127.0.0.1:8090")]
    pub addr: SocketAddr,
    /// Base latency of every answer, in milliseconds.
    #[arg(long, env = "PROVIDER_LATENCY_MS", default_value_t = 20)]
    pub latency_ms: u64,
    /// Random extra latency, uniform in [0, jitter], in milliseconds.
    #[arg(long, env = "PROVIDER_JITTER_MS", default_value_t = 10)]
    pub jitter_ms: u64,
    /// Fraction (0..=1) of charge calls answered 503 before doing anything.
    #[arg(long, env = "PROVIDER_FAILURE_RATE", default_value_t = 0.0, value_parser = fraction)]
    pub failure_rate: f64,
    /// Fraction (0..=1) of charge calls answered 503 for customers whose id starts with
    /// `cus_flaky` (the larger of this and --failure-rate applies to them).
    #[arg(long, env = "PROVIDER_FLAKY_RATE", default_value_t = 0.5, value_parser = fraction)]
    pub flaky_rate: f64,
    /// Decline amounts above this many minor units (code `amount_limit`); no limit when unset.
    #[arg(long, env = "PROVIDER_DECLINE_ABOVE_MINOR")]
    pub decline_above_minor: Option<i64>,
    /// How long a charge of a customer whose id starts with `cus_pending` stays pending before
    /// it is declined with `authentication_timeout`, in milliseconds.
    #[arg(long, env = "PROVIDER_PENDING_MS", default_value_t = 120_000)]
    pub pending_ms: u64,
    /// Seed of the random draws (failures, jitter), for reproducible runs; random when unset.
    #[arg(long, env = "PROVIDER_SEED")]
    pub seed: Option<u64>,
    /// Start with the late-answer fault: every charge is done (captured) at once but answered
    /// only after this many milliseconds; set it above the payment client's timeout to make
    /// outcomes unknown. `PUT`/`DELETE /admin/faults` replace it at run time.
    #[arg(long, env = "PROVIDER_ANSWER_AFTER_MS")]
    pub answer_after_ms: Option<u64>,
    /// The bearer token `/admin/faults` requires (the shop's operator token); read by the
    /// binary from `OPERATOR_TOKEN_FILE` or `OPERATOR_TOKEN`, never a flag. `None` (tests
    /// only) leaves the faults open.
    #[arg(skip)]
    pub operator_token: Option<SecretString>,
}

impl Config {
    /// Settings for tests: port 0 on 127.0.0.1, no latency, no injected failures (flaky customers
    /// still fail half the time), pending charges held 2 minutes, and a fixed seed (42) so draws
    /// repeat run after run. Change what a test needs with `Config { .., ..Config::for_tests() }`.
    pub fn for_tests() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency_ms: 0,
            jitter_ms: 0,
            failure_rate: 0.0,
            flaky_rate: 0.5,
            decline_above_minor: None,
            pending_ms: 120_000,
            seed: Some(42),
            answer_after_ms: None,
            operator_token: None,
        }
    }

    /// The decision rules these flags describe.
    pub fn rules(&self) -> Rules {
        Rules {
            failure_rate: self.failure_rate,
            flaky_rate: self.flaky_rate,
            decline_above_minor: self.decline_above_minor,
        }
    }

    /// The faults the simulator starts with.
    pub fn faults(&self) -> Faults {
        Faults {
            answer_after_ms: self.answer_after_ms,
            ..Faults::default()
        }
    }

    /// How long a pending charge waits for its customer to authenticate.
    pub fn pending_for(&self) -> Duration {
        Duration::from_millis(self.pending_ms)
    }

    /// The delay before an answer, given a random draw in [0, 1).
    pub fn latency(&self, draw: f64) -> Duration {
        let jitter = (self.jitter_ms as f64 * draw).round() as u64;
        Duration::from_millis(self.latency_ms + jitter.min(self.jitter_ms))
    }
}

fn fraction(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not a fraction between 0 and 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_outside_zero_to_one_are_rejected() {
        assert!(Config::try_parse_from(["provider-sim", "--failure-rate", "1.5"]).is_err());
        assert!(Config::try_parse_from(["provider-sim", "--flaky-rate", "-0.1"]).is_err());
        let config = Config::try_parse_from(["provider-sim", "--failure-rate", "1"]).unwrap();
        assert_eq!(config.failure_rate, 1.0);
    }

    #[test]
    fn charges_stay_pending_for_two_minutes_by_default() {
        let config = Config::try_parse_from(["provider-sim"]).unwrap();
        assert_eq!(config.pending_for(), Duration::from_secs(120));
        let config = Config::try_parse_from(["provider-sim", "--pending-ms", "50"]).unwrap();
        assert_eq!(config.pending_for(), Duration::from_millis(50));
    }
}
