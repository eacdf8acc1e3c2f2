//! The one error body of every HTTP API built on the backbone: RFC 9457 problem details,
//! served as `application/problem+json`.
//!
//! A [`Problem`] has a `type` (a stable URI per kind of problem, `urn:choreo:problem:<slug>`,
//! see [`Kind`]), a `title` (the same for every problem of a kind), the HTTP `status`, a
//! `detail` for a person to read, an optional `instance`, and extension members for what a
//! client acts on (the gateway's `field`, for example). Headers that belong to an answer
//! (`Retry-After` on 429/503/504, `WWW-Authenticate` on 401) travel with it.
//!
//! Infrastructure failures become [`Problem::internal`]: logged with their context where they
//! are built, answered 500 with nothing of them in the body. A database error becomes a problem
//! in one place, [`Problem::from_db`]: a violated constraint is looked up by name in the
//! service's table of [`Constraint`]s (a caller's mistake the schema caught); any other
//! database error is internal.
//!
//! What lives elsewhere: the kinds particular to one service (it declares its own [`Kind`]
//! constants) and the shapes of successful answers.

use std::fmt;
use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The media type of a problem body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// What every problem `type` URI starts with; the kind's slug follows.
pub const TYPE_PREFIX: &str = "urn:choreo:problem:";

/// A kind of problem: its `type` slug, its `title` and its status. The constants below are
/// the kinds every service shares; a service declares its own with [`Kind::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    slug: &'static str,
    title: &'static str,
    status: StatusCode,
}

impl Kind {
    /// The request cannot be read: not JSON, a malformed query or path.
    pub const BAD_REQUEST: Kind = Kind::new("bad-request", "Bad request", StatusCode::BAD_REQUEST);
    /// No (valid) credentials.
    pub const UNAUTHORIZED: Kind =
        Kind::new("unauthorized", "Unauthorized", StatusCode::UNAUTHORIZED);
    /// Credentials that are valid but not enough for this operation.
    pub const FORBIDDEN: Kind = Kind::new("forbidden", "Forbidden", StatusCode::FORBIDDEN);
    /// No such resource (or none the caller may see).
    pub const NOT_FOUND: Kind = Kind::new("not-found", "Not found", StatusCode::NOT_FOUND);
    /// The request contradicts the resource's state.
    pub const CONFLICT: Kind = Kind::new("conflict", "Conflict", StatusCode::CONFLICT);
    /// The body is not of a media type the endpoint takes.
    pub const UNSUPPORTED_MEDIA_TYPE: Kind = Kind::new(
        "unsupported-media-type",
        "Unsupported media type",
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    /// The body is larger than the endpoint takes.
    pub const PAYLOAD_TOO_LARGE: Kind = Kind::new(
        "payload-too-large",
        "Payload too large",
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    /// The request is well-formed but a value in it is refused.
    pub const INVALID_VALUE: Kind = Kind::new(
        "invalid-value",
        "Invalid value",
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    /// The caller sends too much; `Retry-After` says when to come back.
    pub const RATE_LIMITED: Kind = Kind::new(
        "rate-limited",
        "Too many requests",
        StatusCode::TOO_MANY_REQUESTS,
    );
    /// Our fault; the detail says nothing more.
    pub const INTERNAL: Kind = Kind::new(
        "internal",
        "Internal error",
        StatusCode::INTERNAL_SERVER_ERROR,
    );
    /// The service, or one it needs, cannot answer now; retry later.
    pub const UNAVAILABLE: Kind = Kind::new(
        "unavailable",
        "Service unavailable",
        StatusCode::SERVICE_UNAVAILABLE,
    );
    /// A service it needs did not answer in time; retry later.
    pub const TIMEOUT: Kind = Kind::new("timeout", "Timeout", StatusCode::GATEWAY_TIMEOUT);

    /// A kind of a service's own; `slug` is lower-case words joined by `-` and never changes
    /// once clients may see it.
    pub const fn new(slug: &'static str, title: &'static str, status: StatusCode) -> Self {
        Self {
            slug,
            title,
            status,
        }
    }

    /// The kind's `type` URI: `urn:choreo:problem:<slug>`.
    pub fn type_uri(&self) -> String {
        format!("{TYPE_PREFIX}{}", self.slug)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn title(&self) -> &'static str {
        self.title
    }
}

/// An RFC 9457 problem: the body and the headers of an error answer; see the module docs. Its
/// members are read and changed through [`Details`] (it dereferences to them); it is one
/// pointer wide, so a `Result<_, Problem>` stays small.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Problem(Box<Details>);

/// The members of a [`Problem`] and the headers sent with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Details {
    /// The kind's URI, `urn:choreo:problem:<slug>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// The kind's short summary, the same for every problem of the kind.
    pub title: String,
    /// The HTTP status code of the answer.
    pub status: u16,
    /// What went wrong this time, for a person to read.
    #[serde(default)]
    pub detail: String,
    /// A URI naming this occurrence (a request path, for example).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension members: what a client may act on beyond the kind (e.g. `field`).
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
    /// Headers sent with the body (not part of it).
    #[serde(skip)]
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem of `kind` with `detail`.
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Self(Box::new(Details {
            type_uri: kind.type_uri(),
            title: kind.title.to_owned(),
            status: kind.status.as_u16(),
            detail: detail.into(),
            instance: None,
            extensions: Map::new(),
            headers: Vec::new(),
        }))
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(Kind::BAD_REQUEST, detail)
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(Kind::INVALID_VALUE, detail)
    }

    /// No (valid) credentials: 401, asking for a bearer token (`WWW-Authenticate: Bearer`).
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(Kind::UNAUTHORIZED, detail)
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(Kind::NOT_FOUND, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(Kind::CONFLICT, detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(Kind::UNAVAILABLE, detail)
    }

    /// A failure of ours: `error` is logged here with its whole chain, the caller gets a 500
    /// saying nothing of it.
    pub fn internal(error: impl fmt::Debug) -> Self {
        tracing::error!(error = ?error, "request failed");
        Self::new(Kind::INTERNAL, "internal error")
    }

    /// The problem a database error answers: a violated constraint named in `constraints`
    /// is the caller's problem of that entry's kind; anything else is [`Problem::internal`].
    pub fn from_db(error: sqlx::Error, constraints: &[Constraint]) -> Self {
        let named = match &error {
            sqlx::Error::Database(db) => db
                .constraint()
                .and_then(|name| constraints.iter().find(|c| c.name == name)),
            _ => None,
        };
        match named {
            Some(constraint) => Self::new(constraint.kind, constraint.detail),
            None => Self::internal(error),
        }
    }

    /// Whether this problem is of `kind`.
    pub fn is(&self, kind: Kind) -> bool {
        self.type_uri.strip_prefix(TYPE_PREFIX) == Some(kind.slug)
    }

    /// The status code (500 when the stored one is not a status code).
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Adds the extension member `name` (not one of the standard members).
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Sends `Retry-After` with the wait in whole seconds, at least one.
    pub fn retry_after(self, wait: Duration) -> Self {
        self.with_header(header::RETRY_AFTER, retry_after_secs(wait).into())
    }

    /// Sends `name: value` with the body.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name, value));
        self
    }

    /// The headers sent with the body.
    pub fn headers(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.headers.iter().map(|(n, v)| (n, v))
    }
}

impl std::ops::Deref for Problem {
    type Target = Details;

    fn deref(&self) -> &Details {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut Details {
        &mut self.0
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.title, self.status, self.detail)
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match serde_json::to_vec(&self) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "a problem could not be serialized");
                br#"{"type":"urn:choreo:problem:internal","title":"Internal error","status":500,"detail":"internal error"}"#.to_vec()
            }
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in self.0.headers {
            headers.insert(name, value);
        }
        response
    }
}

/// One entry of a service's table from constraint names to problems: a violation of the
/// constraint `name` is answered as `kind` with `detail`.
#[derive(Debug, Clone, Copy)]
pub struct Constraint {
    pub name: &'static str,
    pub kind: Kind,
    pub detail: &'static str,
}

/// Whole seconds for a `Retry-After` header, never less than one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn answer(problem: Problem) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = problem.into_response();
        let (parts, body) = response.into_parts();
        let bytes = to_bytes(body, usize::MAX).await.unwrap();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_problem_is_answered_as_problem_json_with_its_members() {
        let problem = Problem::invalid("quantity 0 is not allowed")
            .with("field", "lines[0].quantity")
            .with_instance("/orders");
        let (status, headers, body) = answer(problem).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(body["type"], "urn:choreo:problem:invalid-value");
        assert_eq!(body["title"], "Invalid value");
        assert_eq!(body["status"], 422);
        assert_eq!(body["detail"], "quantity 0 is not allowed");
        assert_eq!(body["instance"], "/orders");
        assert_eq!(body["field"], "lines[0].quantity");
    }

    #[tokio::test]
    async fn retry_after_goes_in_a_header_in_whole_seconds() {
        let problem =
            Problem::new(Kind::RATE_LIMITED, "slow down").retry_after(Duration::from_millis(1500));
        let (status, headers, body) = answer(problem).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[header::RETRY_AFTER], "2");
        assert!(body.get("retry_after").is_none());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_of_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    #[tokio::test]
    async fn internal_problems_leak_nothing() {
        let (status, _, body) = answer(Problem::internal("password=hunter2")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("hunter2"));
    }

    #[test]
    fn a_problem_reads_back_with_its_extensions_and_kind() {
        let text = r#"{"type":"urn:choreo:problem:not-found","title":"Not found","status":404,"detail":"no order 1","field":"id"}"#;
        let problem: Problem = serde_json::from_str(text).unwrap();
        assert!(problem.is(Kind::NOT_FOUND));
        assert!(!problem.is(Kind::CONFLICT));
        assert_eq!(problem.status(), StatusCode::NOT_FOUND);
        assert_eq!(problem.extensions["field"], "id");
    }

    #[test]
    fn a_database_error_that_names_no_known_constraint_is_internal() {
        let problem = Problem::from_db(sqlx::Error::RowNotFound, &[]);
        assert!(problem.is(Kind::INTERNAL));
    }
}
