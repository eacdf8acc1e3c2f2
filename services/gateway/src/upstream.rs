//! Calls to one internal service: an HTTP client with a timeout and a circuit breaker
//! (`choreo::resilience`), forwarding the request id and the trace context. Every call carries
//! the service token ([`client`]), which the services require (`choreo::service::auth`); a
//! service refusing it (401 or 403) is the gateway's misconfiguration, never the client's
//! problem, so it is answered as the service being unavailable.
//!
//! A 2xx or 4xx answer is returned as a status and a JSON value for the route to pass on; a
//! 5xx, a timeout or a refused connection counts as a breaker failure and becomes an
//! [`UpstreamError`] (503, or 504 for a timeout, with `Retry-After`). What the bodies mean is
//! the routes' business, not this module's.

use std::time::Duration;

use anyhow::Context;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use choreo::resilience::{Breaker, BreakerConfig};
use choreo::secret::{ExposeSecret, SecretString};
use serde::Serialize;

/// The client every call to the services goes through: `Authorization: Bearer <service token>`
/// on each request (a header marked sensitive, so it is never shown), `connect_timeout` to
/// connect.
pub fn client(
    service_token: &SecretString,
    connect_timeout: Duration,
) -> anyhow::Result<reqwest::Client> {
    let mut authorization =
        HeaderValue::from_str(&format!("Bearer {}", service_token.expose_secret()))
            .context("SERVICE_TOKEN is not a valid header value")?;
    authorization.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, authorization);
    reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(connect_timeout)
        .build()
        .context("build the HTTP client")
}

/// Why an upstream gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the {service} service is unavailable (circuit open); retry later")]
    Open {
        service: &'static str,
        retry_after: Duration,
    },
    #[error("the {service} service did not answer in time")]
    Timeout { service: &'static str },
    #[error("the {service} service is unavailable")]
    Unavailable {
        service: &'static str,
        #[source]
        source: anyhow::Error,
    },
}

impl UpstreamError {
    /// What to put in `Retry-After`.
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Open { retry_after, .. } => *retry_after,
            _ => Duration::from_secs(1),
        }
    }
}

/// An upstream's answer: a 2xx or a 4xx, with its JSON body (`null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

/// One internal service behind a breaker and a timeout.
pub struct Upstream {
    service: &'static str,
    base_url: String,
    client: reqwest::Client,
    breaker: Breaker,
    timeout: Duration,
}

impl Upstream {
    pub fn new(
        service: &'static str,
        base_url: &str,
        client: reqwest::Client,
        timeout: Duration,
        breaker: BreakerConfig,
    ) -> Self {
        Self {
            service,
            base_url: base_url.trim_end_matches('/').to_owned(),
            client,
            breaker: Breaker::new(breaker),
            timeout,
        }
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The client the calls go through (with the service token).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// `GET {base}{path}`; `path` may carry a query string.
    pub async fn get(&self, path: &str, request_id: &str) -> Result<Reply, UpstreamError> {
        let request = self.client.get(self.url(path));
        self.send(request, request_id).await
    }

    /// `POST {base}{path}` with a JSON body.
    pub async fn post<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
        request_id: &str,
    ) -> Result<Reply, UpstreamError> {
        let request = self.client.post(self.url(path)).json(body);
        self.send(request, request_id).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    #[tracing::instrument(name = "upstream", skip_all, fields(service = self.service, status, otel.kind = "client"))]
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        request_id: &str,
    ) -> Result<Reply, UpstreamError> {
        let service = self.service;
        self.breaker.allow().map_err(|open| UpstreamError::Open {
            service,
            retry_after: open.retry_after,
        })?;
        let mut trace = reqwest::header::HeaderMap::new();
        choreo::telemetry::inject_http(&mut trace);
        let request = request.header("x-request-id", request_id).headers(trace);
        let outcome = tokio::time::timeout(self.timeout, async {
            let response = request.send().await?;
            let status = response.status();
            let bytes = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, bytes))
        })
        .await;
        let (status, bytes) = match outcome {
            Err(_elapsed) => {
                self.breaker.failure();
                return Err(UpstreamError::Timeout { service });
            }
            Ok(Err(e)) => {
                self.breaker.failure();
                return Err(UpstreamError::Unavailable {
                    service,
                    source: e.into(),
                });
            }
            Ok(Ok(answer)) => answer,
        };
        tracing::Span::current().record("status", status.as_u16());
        let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            tracing::error!(%status, "the service refused the gateway's SERVICE_TOKEN");
            self.breaker.failure();
            return Err(UpstreamError::Unavailable {
                service,
                source: anyhow::anyhow!("refused the service token ({status})"),
            });
        }
        if status.is_server_error() || !(status.is_success() || status.is_client_error()) {
            self.breaker.failure();
            return Err(UpstreamError::Unavailable {
                service,
                source: anyhow::anyhow!("answered {status}"),
            });
        }
        self.breaker.success();
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(body) => body,
                // A 4xx with a plain-text body still reaches the caller as JSON.
                Err(_) if status.is_client_error() => {
                    serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
                }
                Err(e) => {
                    return Err(UpstreamError::Unavailable {
                        service,
                        source: anyhow::Error::new(e).context("the body is not JSON"),
                    })
                }
            }
        };
        Ok(Reply { status, body })
    }
}
