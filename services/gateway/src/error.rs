//! The one error type of the HTTP boundary, [`ApiError`], and the one place it becomes a status
//! code and a JSON body `{"error": "...", "field": "..."}`.
//!
//! Caller mistakes are shown with a clear message (and the field at fault); upstream trouble, and
//! a new order shed while the shop is saturated, are shown as 503/504 with `Retry-After`;
//! infrastructure errors are logged with their context and answered with a bare 500 that leaks
//! nothing.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::upstream::UpstreamError;

/// The body of every error the gateway itself answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    pub error: String,
    /// The request field at fault (a JSON path such as `lines[0].quantity`, or a header name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all.
    #[error("{message}")]
    MalformedBody { message: String },
    /// The request is well-formed but a value is not acceptable.
    #[error("{message}")]
    Invalid {
        message: String,
        field: Option<String>,
    },
    #[error("expected a JSON body (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("not found")]
    NotFound,
    #[error("this Idempotency-Key was used with another request body")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still in progress; retry later")]
    RequestInFlight,
    #[error("too many requests")]
    RateLimited { retry_after: Duration },
    /// The shop is saturated: new orders are shed until it catches up.
    #[error("the shop is busy; retry later")]
    Overloaded { retry_after: Duration },
    /// An upstream answered with a 4xx: shown to the caller as it is.
    #[error("upstream answered {status}")]
    Upstream4xx {
        status: StatusCode,
        body: serde_json::Value,
    },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, field: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::MalformedBody { .. } => StatusCode::BAD_REQUEST,
            Self::Invalid { .. } | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::RequestInFlight => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream4xx { status, .. } => *status,
            Self::Upstream(UpstreamError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::Overloaded { retry_after } => {
                Some(*retry_after)
            }
            Self::Upstream(e) => Some(e.retry_after()),
            Self::RequestInFlight => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

/// Whole seconds for a `Retry-After` header, never less than one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after();
        let body = match self {
            Self::Upstream4xx { body, .. } => return (status, Json(body)).into_response(),
            Self::Internal(ref e) => {
                tracing::error!(error = ?e, "request failed");
                ErrorBody {
                    error: "internal error".into(),
                    field: None,
                }
            }
            Self::Upstream(ref e) => {
                tracing::warn!(error = ?e, "upstream unavailable");
                ErrorBody {
                    error: e.to_string(),
                    field: None,
                }
            }
            Self::Invalid { message, field } => ErrorBody {
                error: message,
                field,
            },
            other => ErrorBody {
                error: other.to_string(),
                field: None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(wait) = retry_after {
            headers.insert(header::RETRY_AFTER, retry_after_secs(wait).into());
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_of_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    #[test]
    fn internal_errors_leak_nothing() {
        let response = ApiError::Internal(anyhow::anyhow!("password=hunter2")).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
