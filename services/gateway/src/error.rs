//! The gateway's problems: every error it answers is a [`Problem`] (RFC 9457,
//! `application/problem+json`, see [`choreo::problem`]). This module holds the kinds only the
//! gateway has, the constructors that add its extension member `field` (the request field at
//! fault, a JSON path such as `lines[0].quantity` or a header name) and its headers
//! (`Retry-After` on 409/429/503/504; a 401 is `Problem::unauthorized`, with
//! `WWW-Authenticate`), and the one place an upstream's trouble or refusal becomes the gateway's
//! answer.
//!
//! Caller mistakes are shown with a clear detail; upstream trouble, and a new order shed while
//! the shop is saturated, are 503/504 with `Retry-After`; infrastructure errors are logged with
//! their context ([`Problem::internal`]) and answered 500 with nothing of them.

use std::time::Duration;

use axum::http::StatusCode;
use choreo::problem::{Kind, Problem};
use serde_json::Value;

use crate::upstream::UpstreamError;

/// An `Idempotency-Key` sent again with another request body.
pub const IDEMPOTENCY_KEY_REUSED: Kind = Kind::new(
    "idempotency-key-reused",
    "Idempotency-Key reused",
    StatusCode::UNPROCESSABLE_ENTITY,
);

/// A request with this `Idempotency-Key` is still in progress; retry after `Retry-After`.
pub const REQUEST_IN_FLIGHT: Kind = Kind::new(
    "request-in-flight",
    "Request in progress",
    StatusCode::CONFLICT,
);

/// The shop is saturated: new orders are shed until it catches up; retry after `Retry-After`.
pub const OVERLOADED: Kind = Kind::new("overloaded", "Shop busy", StatusCode::SERVICE_UNAVAILABLE);

/// A refused value, naming the request field at fault.
pub fn invalid(detail: impl Into<String>, field: impl Into<String>) -> Problem {
    Problem::invalid(detail).with("field", field.into())
}

pub fn rate_limited(retry_after: Duration) -> Problem {
    Problem::new(Kind::RATE_LIMITED, "too many requests").retry_after(retry_after)
}

pub fn overloaded(retry_after: Duration) -> Problem {
    Problem::new(OVERLOADED, "the shop is busy; retry later").retry_after(retry_after)
}

pub fn idempotency_key_reused() -> Problem {
    Problem::new(
        IDEMPOTENCY_KEY_REUSED,
        "this Idempotency-Key was used with another request body",
    )
}

pub fn request_in_flight() -> Problem {
    Problem::new(
        REQUEST_IN_FLIGHT,
        "a request with this Idempotency-Key is still in progress; retry later",
    )
    .retry_after(Duration::from_secs(1))
}

impl From<UpstreamError> for Problem {
    /// An upstream that timed out is 504, one that is unavailable (or whose breaker is open)
    /// 503; both say when to retry.
    fn from(error: UpstreamError) -> Self {
        tracing::warn!(error = ?error, "upstream unavailable");
        let kind = match error {
            UpstreamError::Timeout { .. } => Kind::TIMEOUT,
            _ => Kind::UNAVAILABLE,
        };
        Problem::new(kind, error.to_string()).retry_after(error.retry_after())
    }
}

/// An upstream's 4xx answer as the gateway's: its problem as it is (the services answer
/// problems), or a body of another shape as the detail of a problem of that status.
pub fn upstream_refusal(status: StatusCode, body: Value) -> Problem {
    if let Ok(mut problem) = serde_json::from_value::<Problem>(body.clone()) {
        problem.status = status.as_u16();
        return problem;
    }
    let kind = match status {
        StatusCode::BAD_REQUEST => Kind::BAD_REQUEST,
        StatusCode::UNAUTHORIZED => Kind::UNAUTHORIZED,
        StatusCode::NOT_FOUND => Kind::NOT_FOUND,
        StatusCode::CONFLICT => Kind::CONFLICT,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Kind::UNSUPPORTED_MEDIA_TYPE,
        StatusCode::TOO_MANY_REQUESTS => Kind::RATE_LIMITED,
        _ => Kind::INVALID_VALUE,
    };
    let detail = match body {
        Value::String(text) => text,
        Value::Null => status.to_string(),
        other => other.to_string(),
    };
    let mut problem = Problem::new(kind, detail);
    problem.status = status.as_u16();
    problem
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;
    use axum::response::IntoResponse;
    use serde_json::json;

    #[test]
    fn an_upstream_problem_is_passed_on_as_it_is() {
        let body = json!({
            "type": "urn:choreo:problem:invalid-value",
            "title": "Invalid value",
            "status": 422,
            "detail": "unknown sku UNKNOWN",
        });
        let problem = upstream_refusal(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert!(problem.is(Kind::INVALID_VALUE));
        assert_eq!(problem.detail, "unknown sku UNKNOWN");
    }

    #[test]
    fn an_upstream_body_of_another_shape_becomes_the_detail_of_its_status() {
        let problem = upstream_refusal(StatusCode::CONFLICT, json!("already cancelled"));
        assert!(problem.is(Kind::CONFLICT));
        assert_eq!(problem.status(), StatusCode::CONFLICT);
        assert_eq!(problem.detail, "already cancelled");
    }

    #[test]
    fn a_shed_order_says_when_to_retry() {
        let response = overloaded(Duration::from_millis(1500)).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn a_refused_token_asks_for_a_bearer_token() {
        let response = Problem::unauthorized("no").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
