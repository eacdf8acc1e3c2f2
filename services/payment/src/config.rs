//! The payment service's flags, each also read from an environment variable (12-factor) and
//! documented in `--help`. The database, Kafka and registry addresses come from
//! [`choreo::service::ServiceSettings::from_env`]; no secret is read here.

use std::net::SocketAddr;
use std::time::Duration;

use choreo::resilience::{Backoff, BreakerConfig};
use clap::Parser;

use crate::provider::ProviderConfig;
use crate::reconciler::ReconcileConfig;
use crate::worker::WorkerConfig;

/// The payment service: captures an order's amount once its stock is reserved, refunds it when
/// the order is cancelled. Database: DATABASE_URL or DATABASE_URL_PAYMENT; Kafka: KAFKA_BROKERS;
/// registry: SCHEMA_REGISTRY_URL.
#[derive(Debug, Clone, Parser)]
#[command(name = "payment", version)]
pub struct Config {
    /// Address of the HTTP API (`/payments`, `/payments/summary`, `/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8103")]
    pub http_addr: SocketAddr,

    /// Base URL of the payment provider.
    #[arg(long, env = "PROVIDER_URL", default_value = "http://127.0.0.1:8090")]
    pub provider_url: String,

    /// The limit on one provider request, connecting included, in milliseconds.
    #[arg(long, env = "PROVIDER_TIMEOUT_MS", default_value_t = 2_000)]
    pub provider_timeout_ms: u64,

    /// Attempts of one provider call before it counts as unavailable (the first included).
    #[arg(long, env = "PROVIDER_ATTEMPTS", default_value_t = 3)]
    pub provider_attempts: u32,

    /// How many of the latest provider calls the circuit breaker looks at (1 to 64): it reacts
    /// to the failure rate among them, not to a burst of failures among many successes.
    #[arg(
        long,
        env = "BREAKER_WINDOW",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..=64)
    )]
    pub breaker_window: u32,

    /// Failed provider calls among the last --breaker-window that open the circuit breaker (at
    /// most the window; 10 of 20 is 50 %). A provider that fails every call is refused after
    /// this many calls.
    #[arg(
        long,
        env = "BREAKER_FAILURES",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..=64)
    )]
    pub breaker_failures: u32,

    /// How long an open breaker refuses calls before it lets a few probes through, in
    /// milliseconds.
    #[arg(long, env = "BREAKER_OPEN_MS", default_value_t = 5_000)]
    pub breaker_open_ms: u64,

    /// Provider calls in flight at once. Calls mostly wait on the network, so this is far above
    /// the core count: a few slow calls (each up to attempts x timeout) must not hold every slot.
    #[arg(long, env = "PAYMENT_WORKERS", default_value_t = 64)]
    pub workers: usize,

    /// How often the worker looks for due payments, in milliseconds (it is also woken after
    /// each consumer batch, so this only paces retries that come due).
    #[arg(long, env = "PAYMENT_POLL_MS", default_value_t = 1000)]
    pub poll_ms: u64,

    /// A payment whose charge is still unsettled this long after its creation (the provider
    /// stays unavailable, or the customer never authenticates) is voided at the provider and
    /// fails with PROVIDER_UNAVAILABLE once the provider confirms that no capture exists (a
    /// capture it holds is kept, or refunded if the order was cancelled). A payment whose
    /// outcome is unknown is never failed without asking. Refunds are never given up.
    #[arg(long, env = "PAYMENT_GIVE_UP_AFTER_SECS", default_value_t = 120)]
    pub give_up_after_secs: u64,

    /// The first wait before a payment whose provider was unavailable, or whose charge was
    /// pending, is tried again, in milliseconds; it doubles (with jitter) per attempt.
    #[arg(long, env = "PAYMENT_RETRY_FIRST_MS", default_value_t = 500)]
    pub retry_first_ms: u64,

    /// The longest wait between two attempts of one payment, in milliseconds.
    #[arg(long, env = "PAYMENT_RETRY_MAX_MS", default_value_t = 10_000)]
    pub retry_max_ms: u64,

    /// How often the reconciliation compares the provider's ledger with the payments table, in
    /// milliseconds; a capture whose payment ended failed or voided is refunded, other
    /// differences are logged and counted (`shop_payment_mismatches_total`). 0 turns it off.
    #[arg(long, env = "PAYMENT_RECONCILE_MS", default_value_t = 30_000)]
    pub reconcile_ms: u64,

    /// Charges per page the reconciliation reads from the provider's ledger (1 to 1000).
    #[arg(
        long,
        env = "PAYMENT_RECONCILE_PAGE",
        default_value_t = 200,
        value_parser = clap::value_parser!(u16).range(1..=1000)
    )]
    pub reconcile_page: u16,
}

impl Config {
    /// How the provider client reaches the provider.
    pub fn provider(&self) -> ProviderConfig {
        ProviderConfig {
            timeout: Duration::from_millis(self.provider_timeout_ms),
            attempts: self.provider_attempts,
            breaker: BreakerConfig {
                window: self.breaker_window,
                failure_threshold: self.breaker_failures,
                open_for: Duration::from_millis(self.breaker_open_ms),
                ..BreakerConfig::default()
            },
            ..ProviderConfig::new(self.provider_url.clone())
        }
    }

    /// How the worker claims and retries payments.
    pub fn worker(&self) -> WorkerConfig {
        let provider = self.provider();
        WorkerConfig {
            concurrency: self.workers.max(1),
            poll: Duration::from_millis(self.poll_ms.max(1)),
            give_up_after: Duration::from_secs(self.give_up_after_secs),
            retry: Backoff {
                first: Duration::from_millis(self.retry_first_ms),
                max: Duration::from_millis(self.retry_max_ms),
            },
            lease: WorkerConfig::lease_for(&provider),
            ..WorkerConfig::default()
        }
    }
}

impl Config {
    /// How the reconciliation runs; `None` when it is turned off.
    pub fn reconcile(&self) -> Option<ReconcileConfig> {
        (self.reconcile_ms > 0).then(|| ReconcileConfig {
            every: Duration::from_millis(self.reconcile_ms),
            page: usize::from(self.reconcile_page),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_match_the_documented_ones() {
        let config = Config::try_parse_from(["payment"]).unwrap();
        assert_eq!(config.http_addr.port(), 8103);
        assert_eq!(config.provider_url, "http://127.0.0.1:8090");
        let worker = config.worker();
        assert_eq!(worker.concurrency, 64);
        assert_eq!(worker.poll, Duration::from_millis(1000));
        assert_eq!(worker.give_up_after, Duration::from_secs(120));
        // A lease outlives the slowest call the client can make.
        let provider = config.provider();
        assert!(worker.lease > provider.timeout * provider.attempts);
        assert_eq!(provider.breaker.window, 20);
        assert_eq!(provider.breaker.failure_threshold, 10);
        assert_eq!(provider.breaker.open_for, Duration::from_secs(5));
        let reconcile = config.reconcile().expect("on by default");
        assert_eq!(
            (reconcile.every, reconcile.page),
            (Duration::from_secs(30), 200)
        );
    }

    #[test]
    fn reconciliation_can_be_turned_off_and_its_page_is_bounded() {
        let off = Config::try_parse_from(["payment", "--reconcile-ms", "0"]).unwrap();
        assert!(off.reconcile().is_none());
        assert!(Config::try_parse_from(["payment", "--reconcile-page", "1001"]).is_err());
        assert!(Config::try_parse_from(["payment", "--reconcile-page", "0"]).is_err());
    }

    #[test]
    fn the_breaker_window_is_limited_to_what_the_breaker_can_remember() {
        let parse = |window: &str| Config::try_parse_from(["payment", "--breaker-window", window]);
        assert_eq!(parse("64").unwrap().provider().breaker.window, 64);
        assert!(parse("65").is_err());
        assert!(parse("0").is_err());
    }
}
