//! Who may call a service's own HTTP API: the internal APIs are not public, so every route a
//! service adds is guarded by a bearer credential, and the routes that change state on an
//! operator's word (a price, a goods receipt) take only the operator's.
//!
//! Two shared secrets, each read with [`crate::secret::read`] (a file named by `X_FILE`, or `X`):
//! `SERVICE_TOKEN`, which the gateway sends, and `OPERATOR_TOKEN`, which people and the
//! operator tools send. [`guard`] wraps a service's routes: no or a wrong token is 401 (a problem
//! with `WWW-Authenticate: Bearer`); a right one marks the request with its [`Caller`].
//! [`operator_only`] is the route layer of an operator route: a service token there is 403.
//! Tokens are compared in constant time. [`super::Service`] applies the guard to the routes it
//! serves; the operations endpoints (`/metrics`, `/healthz`, `/readyz`) stay open for probes
//! and Prometheus (network policies fence them).
//!
//! What lives elsewhere: the gateway's customer tokens (JWTs, in the gateway).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::config::ConfigError;
use crate::problem::{Kind, Problem};
use crate::secret::{self, ExposeSecret, SecretString};

/// The variable (or `_FILE` variable) holding the credential services accept from each other.
pub const SERVICE_TOKEN_VAR: &str = "SERVICE_TOKEN";
/// The variable (or `_FILE` variable) holding the operator's credential.
pub const OPERATOR_TOKEN_VAR: &str = "OPERATOR_TOKEN";

/// Who a request authenticated as; put in its extensions by [`guard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Another service (the gateway).
    Service,
    /// An operator: allowed everywhere.
    Operator,
}

/// The two tokens a service accepts. `Debug` shows neither.
#[derive(Debug, Clone)]
pub struct Credentials {
    service: Option<SecretString>,
    operator: SecretString,
}

impl Credentials {
    pub fn new(service: SecretString, operator: SecretString) -> Self {
        Self {
            service: Some(service),
            operator,
        }
    }

    /// Credentials accepting the operator token alone (a process no service calls).
    pub fn operator(operator: SecretString) -> Self {
        Self {
            service: None,
            operator,
        }
    }

    /// Both tokens from the environment (`SERVICE_TOKEN[_FILE]`, `OPERATOR_TOKEN[_FILE]`);
    /// either missing is an error: a service never runs open by accident.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::new(
            secret::required(SERVICE_TOKEN_VAR)?,
            secret::required(OPERATOR_TOKEN_VAR)?,
        ))
    }

    /// The caller `token` stands for, if any. Both tokens are always compared.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        let operator = same(token.as_bytes(), self.operator.expose_secret().as_bytes());
        let service = self
            .service
            .as_ref()
            .is_some_and(|s| same(token.as_bytes(), s.expose_secret().as_bytes()));
        if operator {
            Some(Caller::Operator)
        } else if service {
            Some(Caller::Service)
        } else {
            None
        }
    }
}

/// Whether `given` equals `expected`, in a time that depends on `expected`'s length only.
fn same(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!e);
        diff |= usize::from(std::hint::black_box(g ^ e));
    }
    diff == 0
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

async fn authenticate(
    State(credentials): State<Arc<Credentials>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer(&request) else {
        return Problem::unauthorized("an Authorization: Bearer token is required").into_response();
    };
    match credentials.caller(token) {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => Problem::unauthorized("the bearer token is not valid").into_response(),
    }
}

async fn require_operator(request: Request, next: Next) -> Response {
    match request.extensions().get::<Caller>() {
        Some(Caller::Operator) => next.run(request).await,
        Some(Caller::Service) => {
            Problem::new(Kind::FORBIDDEN, "this operation takes the operator token").into_response()
        }
        None => Problem::unauthorized("an Authorization: Bearer token is required").into_response(),
    }
}

/// `routes` with every route requiring the service or the operator token (see the module docs).
pub fn guard<S>(routes: Router<S>, credentials: Arc<Credentials>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes.route_layer(middleware::from_fn_with_state(credentials, authenticate))
}

/// `routes` taking the operator token only (a service token is 403); they must be served
/// inside a [`guard`], which authenticates the caller.
pub fn operator_only<S>(routes: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes.route_layer(middleware::from_fn(require_operator))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::{get, put};

    fn credentials() -> Arc<Credentials> {
        Arc::new(Credentials::new(
            SecretString::from("svc-token"),
            SecretString::from("op-token"),
        ))
    }

    fn app() -> Router {
        let operator =
            operator_only(Router::new().route("/catalog/{sku}", put(|| async { "set" })));
        guard(
            Router::new()
                .route("/catalog", get(|| async { "list" }))
                .merge(operator),
            credentials(),
        )
        .route("/healthz", get(|| async { "ok" }))
    }

    async fn call(method: &str, path: &str, token: Option<&str>) -> reqwest::Response {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app()).await });
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = reqwest::Client::new().request(method, format!("http://{address}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    #[tokio::test]
    async fn a_request_without_a_token_is_refused_with_401_asking_for_a_bearer_token() {
        let response = call("GET", "/catalog", None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let wrong = call("GET", "/catalog", Some("svc-token-but-longer")).await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            call("GET", "/catalog", Some("svc-toke")).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn the_service_and_the_operator_token_both_read() {
        for token in ["svc-token", "op-token"] {
            let response = call("GET", "/catalog", Some(token)).await;
            assert_eq!(response.status(), StatusCode::OK, "{token}");
        }
    }

    #[tokio::test]
    async fn a_service_token_on_an_operator_route_is_403_and_the_operator_token_passes() {
        let response = call("PUT", "/catalog/SKU-1", Some("svc-token")).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            crate::problem::PROBLEM_JSON
        );
        let response = call("PUT", "/catalog/SKU-1", Some("op-token")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let response = call("PUT", "/catalog/SKU-1", None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn the_operations_endpoints_stay_open() {
        assert_eq!(call("GET", "/healthz", None).await.status(), StatusCode::OK);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abd", b"abc"));
        assert!(!same(b"ab", b"abc"));
        assert!(!same(b"abcd", b"abc"));
        assert!(!same(b"", b"abc"));
        assert!(!format!("{:?}", credentials()).contains("op-token"));
    }
}
