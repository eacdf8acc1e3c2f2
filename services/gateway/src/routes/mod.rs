//! The public API's routes and what they share: the request id to forward upstream and the way a
//! stored or fresh JSON answer is written. Each file holds one resource's handlers.

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

pub mod orders;

pub const REQUEST_ID: &str = "x-request-id";

/// The request's id (set by the request-id layer when the client sent none), for upstream calls.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Ok(Self(id))
    }
}

/// A response with exactly these JSON bytes (stored answers are replayed byte for byte): a
/// problem (`application/problem+json`) when `status` is not a success.
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let content_type = if status.is_success() {
        "application/json"
    } else {
        choreo::problem::PROBLEM_JSON
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
