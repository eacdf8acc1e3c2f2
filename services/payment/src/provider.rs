//! The client of the payment provider (in tests and locally, `provider-sim`): charges and
//! refunds over HTTP with a timeout per attempt, retries with backoff, and a circuit breaker so
//! an outage is answered at once instead of piling up timed-out calls.
//!
//! Every call returns an outcome, never an error: `Unavailable` means the provider could not be
//! reached or kept failing (try again later with the same idempotency key), anything else is the
//! provider's answer. `Pending` is an answer too (the breaker counts it a success): the provider
//! took the charge but the customer must still authenticate (e.g. 3-D Secure), and repeating the
//! charge later with the same idempotency key tells how it ended. Retries are safe because the
//! caller supplies the idempotency key. What a payment means for an order (events, the outbox)
//! is not decided here.

use std::time::Duration;

use choreo::resilience::{Backoff, Breaker, BreakerConfig, BreakerState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How to reach the provider and how hard to try.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The provider's base URL, e.g. `http://127.0.0.1:8090`.
    pub base_url: String,
    /// The limit on one attempt, connecting included (default 2 s).
    pub timeout: Duration,
    /// Attempts per call, the first included (default 3; 0 is taken as 1).
    pub attempts: u32,
    /// The wait between attempts (default 100 ms doubling up to 2 s, with full jitter).
    pub backoff: Backoff,
    /// When to stop calling a failing provider (default 5 failures, open 5 s).
    pub breaker: BreakerConfig,
}

impl ProviderConfig {
    /// The defaults for everything but the address.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            timeout: Duration::from_secs(2),
            attempts: 3,
            backoff: Backoff::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

/// A charge to make; the same `idempotency_key` always means the same charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChargeRequest {
    pub idempotency_key: String,
    pub order_id: String,
    pub customer_id: String,
    pub amount_minor: i64,
    pub currency: String,
}

/// A refund to make; the same `idempotency_key` always means the same refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefundRequest {
    pub idempotency_key: String,
    pub charge_id: String,
    pub amount_minor: i64,
}

/// What came of a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Captured {
        charge_id: String,
    },
    Declined {
        charge_id: String,
        code: String,
    },
    /// Neither captured nor declined yet: the customer must still authenticate. The provider is
    /// up; ask again later with the same idempotency key.
    Pending {
        charge_id: String,
    },
    /// No answer: the provider is down, timed out, the breaker is open, or it rejected the
    /// request. Retrying later with the same idempotency key is safe.
    Unavailable {
        detail: String,
    },
}

/// What came of a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    Refunded {
        refund_id: String,
    },
    /// The provider refused it (unknown or declined charge, more than was captured).
    Rejected {
        detail: String,
    },
    /// No answer; retrying later with the same idempotency key is safe.
    Unavailable {
        detail: String,
    },
}

/// The provider's client: one per process, shared (its breaker counts every call).
#[derive(Debug)]
pub struct ProviderClient {
    http: reqwest::Client,
    breaker: Breaker,
    config: ProviderConfig,
}

#[derive(Deserialize)]
struct ChargeReply {
    charge_id: String,
    status: String,
    decline_code: Option<String>,
}

#[derive(Deserialize)]
struct RefundReply {
    refund_id: String,
    status: String,
}

/// Why a call produced no answer to act on.
enum Failure {
    /// Unreachable, 5xx, timed out or the breaker is open.
    Unavailable(String),
    /// A 4xx: the request was wrong, so trying again would not help.
    Rejected(String),
}

impl ProviderClient {
    pub fn new(config: ProviderConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(config.timeout).build()?;
        Ok(Self {
            http,
            breaker: Breaker::new(config.breaker.clone()),
            config,
        })
    }

    /// The breaker's state, for readiness and metrics.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    #[tracing::instrument(skip_all, fields(order_id = %req.order_id, idempotency_key = %req.idempotency_key))]
    pub async fn charge(&self, req: &ChargeRequest) -> Outcome {
        let reply: ChargeReply = match self.call("/v1/charges", req).await {
            Ok(reply) => reply,
            Err(Failure::Unavailable(detail) | Failure::Rejected(detail)) => {
                return Outcome::Unavailable { detail }
            }
        };
        let outcome = match reply.status.as_str() {
            "captured" => Outcome::Captured {
                charge_id: reply.charge_id,
            },
            "declined" => Outcome::Declined {
                charge_id: reply.charge_id,
                code: reply.decline_code.unwrap_or_else(|| "unspecified".into()),
            },
            "pending" => Outcome::Pending {
                charge_id: reply.charge_id,
            },
            other => {
                tracing::error!(
                    status = other,
                    "the provider answered an unknown charge status"
                );
                Outcome::Unavailable {
                    detail: format!("unknown charge status {other:?}"),
                }
            }
        };
        if let Outcome::Pending { .. } = outcome {
            // Asked again and again until the customer authenticates: quiet.
            tracing::debug!(?outcome, "charge answered");
        } else {
            tracing::info!(?outcome, "charge answered");
        }
        outcome
    }

    #[tracing::instrument(skip_all, fields(charge_id = %req.charge_id, idempotency_key = %req.idempotency_key))]
    pub async fn refund(&self, req: &RefundRequest) -> RefundOutcome {
        let reply: RefundReply = match self.call("/v1/refunds", req).await {
            Ok(reply) => reply,
            Err(Failure::Unavailable(detail)) => return RefundOutcome::Unavailable { detail },
            Err(Failure::Rejected(detail)) => return RefundOutcome::Rejected { detail },
        };
        let outcome = if reply.status == "refunded" {
            RefundOutcome::Refunded {
                refund_id: reply.refund_id,
            }
        } else {
            tracing::error!(status = %reply.status, "the provider answered an unknown refund status");
            RefundOutcome::Unavailable {
                detail: format!("unknown refund status {:?}", reply.status),
            }
        };
        tracing::info!(?outcome, "refund answered");
        outcome
    }

    /// Posts `body` until an answer, a 4xx, an open breaker or the last attempt.
    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, Failure> {
        let url = format!("{}{path}", self.config.base_url.trim_end_matches('/'));
        let attempts = self.config.attempts.max(1);
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(self.config.backoff.delay(attempt - 1)).await;
            }
            if let Err(open) = self.breaker.allow() {
                tracing::warn!(%open, "provider call skipped");
                return Err(Failure::Unavailable(open.to_string()));
            }
            let response = match self.http.post(&url).json(body).send().await {
                Ok(response) => response,
                Err(e) => {
                    self.breaker.failure();
                    // Without the URL: it is configuration, and may carry credentials.
                    last = e.without_url().to_string();
                    tracing::warn!(attempt, error = %last, "provider call failed");
                    continue;
                }
            };
            let status = response.status();
            if status.is_server_error() {
                self.breaker.failure();
                last = format!("{status}: {}", error_text(response).await);
                tracing::warn!(attempt, error = %last, "provider call failed");
                continue;
            }
            // Any other answer shows the provider is up.
            self.breaker.success();
            if !status.is_success() {
                let detail = format!("{status}: {}", error_text(response).await);
                tracing::error!(error = %detail, "the provider rejected the request");
                return Err(Failure::Rejected(detail));
            }
            return response.json::<R>().await.map_err(|e| {
                let detail = format!("unreadable answer: {}", e.without_url());
                tracing::error!(error = %detail, "the provider answered in an unknown format");
                Failure::Unavailable(detail)
            });
        }
        Err(Failure::Unavailable(format!(
            "no answer after {attempts} attempts: {last}"
        )))
    }
}

/// The `error` of a `{"error": "..."}` body, or the start of whatever else came back.
async fn error_text(response: reqwest::Response) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => body.error,
        Err(_) => text.chars().take(200).collect(),
    }
}
