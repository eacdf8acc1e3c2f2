//! Per-client rate limiting: a token bucket (governor's GCRA) per token subject, or per peer IP
//! for requests without a valid token, answered with 429, `Retry-After` and a JSON body.
//!
//! The middleware verifies the token once and leaves the [`Customer`] in the request's
//! extensions for the handler; it does not refuse a missing or bad token (the handler does).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::rate_limited;
use crate::AppState;

/// How often (in checks) buckets of clients that went quiet are dropped.
const SWEEP_EVERY: u64 = 4096;

/// A token bucket per client key.
pub struct RateLimiter {
    buckets: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl RateLimiter {
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        Self {
            buckets: governor::RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes a token from `key`'s bucket, or says how long until one is there.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.buckets.retain_recent();
        }
        self.buckets
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// Middleware: limits by verified subject, else by peer IP.
pub async fn limit(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let key = match state.keys.authenticate(request.headers()) {
        Ok(customer) => {
            let key = format!("sub:{}", customer.0);
            request.extensions_mut().insert(customer);
            key
        }
        Err(_) => match request.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(peer)) => format!("ip:{}", peer.ip()),
            None => "ip:unknown".to_owned(),
        },
    };
    if let Err(retry_after) = state.limiter.check(&key) {
        tracing::debug!(%key, ?retry_after, "rate limited");
        return rate_limited(retry_after).into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn a_client_may_spend_its_burst_then_must_wait() {
        let limiter = RateLimiter::new(nz(1), nz(3));
        for _ in 0..3 {
            assert!(limiter.check("sub:alice").is_ok());
        }
        let wait = limiter.check("sub:alice").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
    }

    #[test]
    fn clients_have_buckets_of_their_own() {
        let limiter = RateLimiter::new(nz(1), nz(1));
        assert!(limiter.check("sub:alice").is_ok());
        assert!(limiter.check("sub:alice").is_err());
        assert!(limiter.check("sub:bob").is_ok());
        assert!(limiter.check("ip:127.0.0.1").is_ok());
    }
}
