//! The gateway's command line and configuration: every setting is a flag and an environment
//! variable (12-factor), documented in `--help`; the JWT secret is wrapped so it is never
//! printed. `gateway token` signs a token for local use with the same secret.
//!
//! Durations in `..._MS` variables are milliseconds; `GATEWAY_IDEMPOTENCY_RETENTION` takes the
//! backbone's duration syntax (`86400`, `90m`, `24h`, `7d`; see `choreo::config::parse_duration`).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

/// The shop's HTTP gateway: the only public entry. It authenticates, rate-limits and forwards
/// requests to the order, payment and shipping services.
#[derive(Debug, Parser)]
#[command(name = "gateway", version)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a signed bearer token for local use: `TOKEN=$(gateway token --subject cus_alice)`.
    Token {
        /// The customer id the token stands for (its `sub` claim).
        #[arg(long)]
        subject: String,
        /// How long the token is valid, in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
    },
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address the public HTTP API listens on.
    #[arg(
        long,
        env = "HTTP_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub http_addr: SocketAddr,

    /// PostgreSQL URL of the gateway's own database (idempotency keys). When unset,
    /// DATABASE_URL_GATEWAY is used (the local stack writes it to .stack/env).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<SecretString>,

    /// Base URL of the order service.
    #[arg(
        long,
        env = "ORDER_URL",
        default_value = "http://127.0.0.1:8101",
        global = true
    )]
    pub order_url: String,

    /// Base URL of the payment service.
    #[arg(
        long,
        env = "PAYMENT_URL",
        default_value = "http://127.0.0.1:8103",
        global = true
    )]
    pub payment_url: String,

    /// Base URL of the shipping service.
    #[arg(
        long,
        env = "SHIPPING_URL",
        default_value = "http://127.0.0.1:8104",
        global = true
    )]
    pub shipping_url: String,

    /// Secret that signs and verifies the HS256 bearer tokens. Required; never logged.
    #[arg(long, env = "GATEWAY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: SecretString,

    /// Requests per second each client may make (per token subject, or per IP before auth).
    #[arg(
        long,
        env = "GATEWAY_RATE_PER_SEC",
        default_value = "100",
        global = true
    )]
    pub rate_per_sec: NonZeroU32,

    /// How many requests a client may make at once before the per-second rate applies.
    #[arg(long, env = "GATEWAY_RATE_BURST", default_value = "200", global = true)]
    pub rate_burst: NonZeroU32,

    /// How long to wait for an upstream service before answering 504, in milliseconds.
    #[arg(
        long,
        env = "GATEWAY_UPSTREAM_TIMEOUT_MS",
        default_value_t = 2000,
        global = true
    )]
    pub upstream_timeout_ms: u64,

    /// How many of the latest calls to one upstream its circuit breaker looks at (1 to 64): it
    /// reacts to the failure rate among them, not to a burst of failures among many successes.
    #[arg(
        long,
        env = "GATEWAY_BREAKER_WINDOW",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..=64),
        global = true
    )]
    pub breaker_window: u32,

    /// Failed calls among the last --breaker-window to one upstream that open its circuit
    /// breaker (at most the window; 10 of 20 is 50 %). An upstream that fails every call is
    /// refused after this many calls.
    #[arg(
        long,
        env = "GATEWAY_BREAKER_FAILURES",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..=64),
        global = true
    )]
    pub breaker_failures: u32,

    /// How long an open breaker refuses calls before it lets a few try again, in milliseconds.
    #[arg(
        long,
        env = "GATEWAY_BREAKER_OPEN_MS",
        default_value_t = 5000,
        global = true
    )]
    pub breaker_open_ms: u64,

    /// Order placements (`POST /orders`) the gateway handles at once at most. One more is
    /// refused at once with 503 and `Retry-After: 1` (counted in
    /// `gateway_shed_total{reason="in_flight"}`) instead of queueing in front of a saturated
    /// order service.
    #[arg(
        long,
        env = "GATEWAY_MAX_IN_FLIGHT",
        default_value_t = 128,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub max_in_flight: u32,

    /// How many sagas (orders placed but not yet confirmed or cancelled) may be open before new
    /// orders are refused with 503 and `Retry-After: 2`
    /// (`gateway_shed_total{reason="saga_backlog"}`). The open sagas are the rate times the saga
    /// latency: at the shop's capacity, this bounds the latency (300 at ~150 orders/s: 2 s).
    /// The gateway reads them from the order service's `GET /admission` twice a second; while
    /// that fails it does not shed.
    #[arg(
        long,
        env = "GATEWAY_MAX_OPEN_SAGAS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub max_open_sagas: u64,

    /// How long an Idempotency-Key is remembered (24h, as Stripe does); a retry after that is a
    /// new request. Older keys are deleted every minute, never one whose request is still in
    /// flight. At least an hour.
    #[arg(
        long,
        env = "GATEWAY_IDEMPOTENCY_RETENTION",
        default_value = "24h",
        value_parser = parse_idempotency_retention,
        global = true
    )]
    pub idempotency_retention: Duration,
}

/// An idempotency retention of at least an hour.
fn parse_idempotency_retention(value: &str) -> Result<Duration, String> {
    choreo::config::duration_at_least(
        "GATEWAY_IDEMPOTENCY_RETENTION",
        value,
        Duration::from_secs(3600),
        "a client retrying later would place a second order",
    )
    .map_err(|e| e.to_string())
}

impl Config {
    /// The database URL: `--database-url`/DATABASE_URL, else DATABASE_URL_GATEWAY.
    pub fn database_url(&self) -> anyhow::Result<SecretString> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        match std::env::var("DATABASE_URL_GATEWAY") {
            Ok(url) if !url.trim().is_empty() => Ok(url.trim().into()),
            _ => anyhow::bail!(
                "DATABASE_URL is not set, nor DATABASE_URL_GATEWAY \
                 (run `scripts/stack up`, which writes it to .stack/env, or export it)"
            ),
        }
    }

    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }

    pub fn breaker_open_for(&self) -> Duration {
        Duration::from_millis(self.breaker_open_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn the_token_subcommand_parses_with_its_defaults() {
        let cli = Cli::try_parse_from([
            "gateway",
            "--jwt-secret",
            "s3cret",
            "token",
            "--subject",
            "cus_alice",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Token { ref subject, ttl_secs: 3600 }) if subject == "cus_alice"
        ));
        assert_eq!(cli.config.jwt_secret.expose_secret(), "s3cret");
        assert_eq!(cli.config.rate_burst.get(), 200);
        assert_eq!(cli.config.breaker_window, 20);
        assert_eq!(cli.config.breaker_failures, 10);
        assert_eq!(cli.config.max_in_flight, 128);
        assert_eq!(cli.config.max_open_sagas, 300);
        assert_eq!(
            cli.config.idempotency_retention,
            Duration::from_secs(24 * 3600)
        );
    }

    #[test]
    fn an_idempotency_retention_is_read_in_any_unit_and_at_least_an_hour() {
        let parse = |value: &str| {
            Cli::try_parse_from([
                "gateway",
                "--jwt-secret",
                "s",
                "--idempotency-retention",
                value,
            ])
            .map(|cli| cli.config.idempotency_retention)
        };
        assert_eq!(parse("2d").unwrap(), Duration::from_secs(2 * 86_400));
        assert_eq!(parse("3600").unwrap(), Duration::from_secs(3600));
        let err = parse("10m").unwrap_err().to_string();
        assert!(err.contains("second order"), "{err}");
        assert!(parse("0").is_err());
        assert!(parse("soon").is_err());
    }

    #[test]
    fn at_least_one_order_may_be_in_flight() {
        let zero = Cli::try_parse_from(["gateway", "--jwt-secret", "s", "--max-in-flight", "0"]);
        assert!(zero.is_err());
    }

    #[test]
    fn the_secret_is_not_in_the_debug_output() {
        let cli = Cli::try_parse_from(["gateway", "--jwt-secret", "s3cret"]).unwrap();
        assert!(!format!("{cli:?}").contains("s3cret"));
    }
}
