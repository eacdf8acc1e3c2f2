//! The gateway's command line and configuration: every setting is a flag and an environment
//! variable (12-factor), documented in `--help`, except the secrets ([`Secrets`]), which are
//! read from files (`GATEWAY_JWT_SECRET_FILE`, `SERVICE_TOKEN_FILE`) or the environment, never
//! from a flag (`ps` shows flags), and are wrapped so they are never printed. `gateway token`
//! signs a token for local use with the same secret and policy.
//!
//! Durations in `..._MS` variables are milliseconds; `GATEWAY_IDEMPOTENCY_RETENTION` and
//! `GATEWAY_JWT_MAX_LIFETIME` take the backbone's duration syntax (`86400`, `90m`, `24h`, `7d`;
//! see `choreo::config::parse_duration`).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use choreo::secret::{self, ExposeSecret, SecretString};
use choreo::ConfigError;
use clap::{Args, Parser, Subcommand};

use crate::auth::TokenPolicy;

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
        /// How long the token is valid, in seconds (at most --jwt-max-lifetime; default that).
        #[arg(long)]
        ttl_secs: Option<u64>,
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

    /// Address `/metrics` listens on, apart from the public API (`127.0.0.1:0` for any free
    /// port); `/healthz` and `/readyz` stay on the public port for the probes.
    #[arg(
        long,
        env = "METRICS_ADDR",
        default_value = "127.0.0.1:9464",
        global = true
    )]
    pub metrics_addr: SocketAddr,

    /// The `iss` claim the gateway issues and requires in bearer tokens.
    #[arg(
        long,
        env = "GATEWAY_JWT_ISSUER",
        default_value = "choreo-shop",
        global = true
    )]
    pub jwt_issuer: String,

    /// The `aud` claim the gateway issues and requires in bearer tokens.
    #[arg(
        long,
        env = "GATEWAY_JWT_AUDIENCE",
        default_value = "shop-gateway",
        global = true
    )]
    pub jwt_audience: String,

    /// The longest a bearer token may live (its `exp` minus its `iat`); a token without either
    /// claim, or living longer, is refused.
    #[arg(
        long,
        env = "GATEWAY_JWT_MAX_LIFETIME",
        default_value = "1h",
        value_parser = parse_max_lifetime,
        global = true
    )]
    pub jwt_max_lifetime: Duration,

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

/// A token lifetime of at least a minute.
fn parse_max_lifetime(value: &str) -> Result<Duration, String> {
    choreo::config::duration_at_least(
        "GATEWAY_JWT_MAX_LIFETIME",
        value,
        Duration::from_secs(60),
        "a client would need a new token for every few requests",
    )
    .map_err(|e| e.to_string())
}

/// The gateway's secrets, from files or the environment (never flags); `Debug` shows neither.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// `GATEWAY_JWT_SECRET[_FILE]`: signs and verifies the HS256 bearer tokens, at least
    /// [`MIN_JWT_SECRET_LEN`] bytes.
    pub jwt_secret: SecretString,
    /// `SERVICE_TOKEN[_FILE]`: sent to the internal services as `Authorization: Bearer`.
    pub service_token: SecretString,
}

/// The shortest JWT secret accepted: 32 bytes, the size of the HS256 hash (RFC 7518, 3.2).
pub const MIN_JWT_SECRET_LEN: usize = 32;

impl Secrets {
    /// Both secrets; either missing is an error.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            jwt_secret: Self::jwt_secret_from_env()?,
            service_token: secret::required(choreo::service::auth::SERVICE_TOKEN_VAR)?,
        })
    }

    /// The JWT secret alone (what `gateway token` needs).
    pub fn jwt_secret_from_env() -> Result<SecretString, ConfigError> {
        let secret = secret::required("GATEWAY_JWT_SECRET")?;
        if secret.expose_secret().len() < MIN_JWT_SECRET_LEN {
            return Err(ConfigError::Invalid {
                var: "GATEWAY_JWT_SECRET",
                value: "[REDACTED]".into(),
                why: format!("an HS256 secret needs at least {MIN_JWT_SECRET_LEN} bytes"),
            });
        }
        Ok(secret)
    }
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

    /// The token policy the gateway would use with this environment (its variables, else
    /// their defaults): for tools that sign tokens for a running gateway.
    pub fn token_policy_from_env() -> anyhow::Result<TokenPolicy> {
        Ok(Cli::try_parse_from(["gateway"])?.config.token_policy())
    }

    /// What a bearer token must say: the issuer, audience and maximum lifetime.
    pub fn token_policy(&self) -> TokenPolicy {
        TokenPolicy {
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            max_lifetime: self.jwt_max_lifetime,
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

    #[test]
    fn the_token_subcommand_parses_with_its_defaults() {
        let cli = Cli::try_parse_from(["gateway", "token", "--subject", "cus_alice"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Token { ref subject, ttl_secs: None }) if subject == "cus_alice"
        ));
        assert_eq!(cli.config.rate_burst.get(), 200);
        assert_eq!(cli.config.breaker_window, 20);
        assert_eq!(cli.config.breaker_failures, 10);
        assert_eq!(cli.config.max_in_flight, 128);
        assert_eq!(cli.config.max_open_sagas, 300);
        assert_eq!(
            cli.config.idempotency_retention,
            Duration::from_secs(24 * 3600)
        );
        let policy = cli.config.token_policy();
        assert_eq!(policy.issuer, "choreo-shop");
        assert_eq!(policy.audience, "shop-gateway");
        assert_eq!(policy.max_lifetime, Duration::from_secs(3600));
        assert!(cli.config.metrics_addr.ip().is_loopback());
    }

    #[test]
    fn the_jwt_secret_is_no_flag() {
        assert!(Cli::try_parse_from(["gateway", "--jwt-secret", "s3cret"]).is_err());
    }

    #[test]
    fn a_max_lifetime_is_read_in_any_unit_and_at_least_a_minute() {
        let parse = |value: &str| {
            Cli::try_parse_from(["gateway", "--jwt-max-lifetime", value])
                .map(|cli| cli.config.jwt_max_lifetime)
        };
        assert_eq!(parse("15m").unwrap(), Duration::from_secs(900));
        assert!(parse("30s").is_err());
        assert!(parse("soon").is_err());
    }

    #[test]
    fn an_idempotency_retention_is_read_in_any_unit_and_at_least_an_hour() {
        let parse = |value: &str| {
            Cli::try_parse_from(["gateway", "--idempotency-retention", value])
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
        let zero = Cli::try_parse_from(["gateway", "--max-in-flight", "0"]);
        assert!(zero.is_err());
    }

    #[test]
    fn the_secrets_are_not_in_the_debug_output() {
        let secrets = Secrets {
            jwt_secret: SecretString::from("s3cret-s3cret-s3cret-s3cret-s3cret"),
            service_token: SecretString::from("svc-s3cret"),
        };
        let shown = format!("{secrets:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
