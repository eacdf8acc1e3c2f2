//! The client of the payment provider (in tests and locally, `provider-sim`): charges, refunds,
//! and what settles an outcome we did not see (a charge looked up or voided by its idempotency
//! key, the ledger listed page by page), over HTTP with a timeout per attempt, retries with
//! backoff, and a circuit breaker so an outage is answered at once instead of piling up
//! timed-out calls.
//!
//! Every call returns an outcome, never an error: `Unavailable` means the provider could not be
//! reached or kept failing (try again later with the same idempotency key), and says whether
//! the request may have reached it all the same (`in_doubt`: a timeout or a 5xx may come after
//! the provider acted); anything else is the provider's answer. `Pending` is an answer too (the
//! breaker counts it a success): the provider took the charge but the customer must still
//! authenticate (e.g. 3-D Secure). Retries are safe because the caller supplies the idempotency
//! key. What a payment means for an order (events, the outbox) is not decided here.

use std::time::Duration;

use choreo::resilience::{Backoff, Breaker, BreakerConfig, BreakerState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

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

/// What came of a charge, a lookup or a void.
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
    /// up; ask again later, or void it.
    Pending {
        charge_id: String,
    },
    /// Voided at our request: nothing was captured, and nothing can be under its key.
    Voided {
        charge_id: String,
    },
    /// A lookup found no charge under the key.
    NotFound,
    /// No answer: the provider is down, timed out, the breaker is open, or it rejected the
    /// request. `in_doubt`: an attempt may have reached the provider (timeout, 5xx, connection
    /// lost after sending). Retrying later with the same idempotency key is safe.
    Unavailable {
        detail: String,
        in_doubt: bool,
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

/// A charge in the provider's ledger (`GET /v1/charges`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LedgerCharge {
    pub charge_id: String,
    /// Its place in the ledger's creation order: the cursor of the next page.
    pub seq: u64,
    pub idempotency_key: String,
    /// `captured`, `declined`, `pending` or `voided`.
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
    pub refunded_minor: i64,
}

/// One page of the provider's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LedgerPage {
    pub charges: Vec<LedgerCharge>,
    /// The cursor of the next page; `None` after the last.
    pub next_after: Option<u64>,
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("building the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// Without the URL itself: it may carry credentials.
    #[error("the provider's base URL is not a URL: {0}")]
    BaseUrl(String),
}

/// The provider's client: one per process, shared (its breaker counts every call).
#[derive(Debug)]
pub struct ProviderClient {
    http: reqwest::Client,
    base: String,
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
struct Failure {
    detail: String,
    /// A 4xx: the request was wrong, so trying again would not help.
    rejected: bool,
    /// An attempt may have reached the provider.
    in_doubt: bool,
}

impl ProviderClient {
    pub fn new(config: ProviderConfig) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder().timeout(config.timeout).build()?;
        let base = config.base_url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base).map_err(|e| ClientError::BaseUrl(e.to_string()))?;
        Ok(Self {
            http,
            base,
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
        let url = self.url("/v1/charges");
        let reply = self.call(|| self.http.post(url.clone()).json(req)).await;
        let outcome = charge_outcome(reply);
        // Per call: the payment's change of state is logged once, by the worker.
        tracing::debug!(?outcome, "charge answered");
        outcome
    }

    /// The charge made under `idempotency_key`, as the provider holds it now (`NotFound` when
    /// none was made).
    #[tracing::instrument(skip_all, fields(idempotency_key = %idempotency_key))]
    pub async fn lookup(&self, idempotency_key: &str) -> Outcome {
        let mut url = self.url("/v1/charges");
        url.query_pairs_mut()
            .append_pair("idempotency_key", idempotency_key);
        let page = self.call(|| self.http.get(url.clone())).await;
        let outcome = match page {
            Ok(LedgerPage { charges, .. }) => match charges.into_iter().next() {
                None => Outcome::NotFound,
                Some(found) => charge_outcome(Ok(ChargeReply {
                    charge_id: found.charge_id,
                    status: found.status,
                    decline_code: None,
                })),
            },
            Err(failure) => charge_outcome(Err(failure)),
        };
        tracing::info!(?outcome, "charge looked up");
        outcome
    }

    /// Voids the charge made (or yet to arrive) under the request's key; the answer is the
    /// charge's state after the void: voided, or the capture or decline it could not undo.
    #[tracing::instrument(skip_all, fields(order_id = %req.order_id, idempotency_key = %req.idempotency_key))]
    pub async fn void(&self, req: &ChargeRequest) -> Outcome {
        let url = self.url("/v1/charges/void");
        let reply = self.call(|| self.http.post(url.clone()).json(req)).await;
        let outcome = charge_outcome(reply);
        tracing::info!(?outcome, "void answered");
        outcome
    }

    /// Up to `limit` charges of the provider's ledger after the `after`-th, in creation order.
    pub async fn ledger(&self, after: u64, limit: usize) -> Result<LedgerPage, String> {
        let mut url = self.url("/v1/charges");
        url.query_pairs_mut()
            .append_pair("after", &after.to_string())
            .append_pair("limit", &limit.to_string());
        self.call(|| self.http.get(url.clone()))
            .await
            .map_err(|failure| failure.detail)
    }

    #[tracing::instrument(skip_all, fields(charge_id = %req.charge_id, idempotency_key = %req.idempotency_key))]
    pub async fn refund(&self, req: &RefundRequest) -> RefundOutcome {
        let url = self.url("/v1/refunds");
        let reply: RefundReply = match self.call(|| self.http.post(url.clone()).json(req)).await {
            Ok(reply) => reply,
            Err(Failure {
                detail,
                rejected: true,
                ..
            }) => return RefundOutcome::Rejected { detail },
            Err(Failure { detail, .. }) => return RefundOutcome::Unavailable { detail },
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

    /// The provider's URL of `path`.
    fn url(&self, path: &str) -> reqwest::Url {
        reqwest::Url::parse(&format!("{}{path}", self.base))
            .expect("a URL checked in `new` joined with a fixed path is a URL")
    }

    /// Sends the request `make` builds until an answer, a 4xx, an open breaker or the last
    /// attempt.
    async fn call<R: DeserializeOwned>(
        &self,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<R, Failure> {
        let attempts = self.config.attempts.max(1);
        let mut last = String::new();
        let mut in_doubt = false;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(self.config.backoff.delay(attempt - 1)).await;
            }
            if let Err(open) = self.breaker.allow() {
                tracing::warn!(%open, "provider call skipped");
                return Err(Failure {
                    detail: open.to_string(),
                    rejected: false,
                    in_doubt,
                });
            }
            let request = make();
            let call = request
                .try_clone()
                .and_then(|r| r.build().ok())
                .map(|r| (r.method().to_string(), r.url().path().to_owned()))
                .unwrap_or_default();
            let span = choreo::telemetry::client_span("provider", &call.0, &call.1);
            let mut trace = reqwest::header::HeaderMap::new();
            span.in_scope(|| choreo::telemetry::inject_http(&mut trace));
            let sent = request.headers(trace).send().instrument(span).await;
            let response = match sent {
                Ok(response) => response,
                Err(e) => {
                    self.breaker.failure();
                    // A refused connection sent nothing; anything else may have.
                    in_doubt |= !e.is_connect();
                    // Without the URL: it is configuration, and may carry credentials.
                    last = e.without_url().to_string();
                    tracing::warn!(attempt, error = %last, "provider call failed");
                    continue;
                }
            };
            let status = response.status();
            if status.is_server_error() {
                self.breaker.failure();
                in_doubt = true;
                last = format!("{status}: {}", error_text(response).await);
                tracing::warn!(attempt, error = %last, "provider call failed");
                continue;
            }
            // Any other answer shows the provider is up.
            self.breaker.success();
            if !status.is_success() {
                let detail = format!("{status}: {}", error_text(response).await);
                tracing::error!(error = %detail, "the provider rejected the request");
                return Err(Failure {
                    detail,
                    rejected: true,
                    // A conflict may say a charge exists under the key already.
                    in_doubt: in_doubt || status == reqwest::StatusCode::CONFLICT,
                });
            }
            return response.json::<R>().await.map_err(|e| {
                let detail = format!("unreadable answer: {}", e.without_url());
                tracing::error!(error = %detail, "the provider answered in an unknown format");
                Failure {
                    detail,
                    rejected: false,
                    in_doubt: true,
                }
            });
        }
        Err(Failure {
            detail: format!("no answer after {attempts} attempts: {last}"),
            rejected: false,
            in_doubt,
        })
    }
}

/// A charge, lookup or void reply as an outcome.
fn charge_outcome(reply: Result<ChargeReply, Failure>) -> Outcome {
    let reply = match reply {
        Ok(reply) => reply,
        Err(Failure {
            detail, in_doubt, ..
        }) => return Outcome::Unavailable { detail, in_doubt },
    };
    match reply.status.as_str() {
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
        "voided" => Outcome::Voided {
            charge_id: reply.charge_id,
        },
        other => {
            tracing::error!(
                status = other,
                "the provider answered an unknown charge status"
            );
            Outcome::Unavailable {
                detail: format!("unknown charge status {other:?}"),
                in_doubt: true,
            }
        }
    }
}

/// The `detail` of a problem body (RFC 9457), or the start of whatever else came back.
async fn error_text(response: reqwest::Response) -> String {
    #[derive(Deserialize)]
    struct ProblemBody {
        detail: String,
    }
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ProblemBody>(&text) {
        Ok(body) => body.detail,
        Err(_) => text.chars().take(200).collect(),
    }
}
