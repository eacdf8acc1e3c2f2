//! Bearer-token authentication: HS256 JWTs whose `sub` is the customer id. [`JwtKeys`] signs
//! and verifies them; the [`Customer`] extractor gives a handler the verified customer or
//! answers 401 with a problem body. The secret stays inside `secrecy` and is never logged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use choreo::problem::Problem;

use crate::error::unauthorized;
use crate::AppState;

/// The claims the gateway reads from a token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The customer id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

/// The customer a verified token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer(pub String);

/// Signs and verifies tokens with one HS256 secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn new(secret: &SecretString) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
        }
    }

    /// A token for `subject`, valid for `ttl`.
    pub fn issue(&self, subject: &str, ttl: Duration) -> anyhow::Result<String> {
        let exp = SystemTime::now().duration_since(UNIX_EPOCH)? + ttl;
        let claims = Claims {
            sub: subject.to_owned(),
            exp: exp.as_secs(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The customer of a valid token.
    pub fn verify(&self, token: &str) -> Result<Customer, Problem> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    unauthorized("the bearer token has expired")
                }
                _ => unauthorized("the bearer token is not valid"),
            })?;
        if data.claims.sub.is_empty() {
            return Err(unauthorized("the bearer token has no subject"));
        }
        Ok(Customer(data.claims.sub))
    }

    /// The customer of the request's `Authorization: Bearer` header.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Customer, Problem> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("an Authorization: Bearer token is required"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header is not a Bearer token"))?;
        self.verify(token)
    }
}

impl FromRequestParts<AppState> for Customer {
    type Rejection = Problem;

    /// Uses the customer the rate limiter already verified, or verifies the token itself.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        if let Some(customer) = parts.extensions.get::<Customer>() {
            return Ok(customer.clone());
        }
        state.keys.authenticate(&parts.headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    use choreo::problem::Kind;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::new(&SecretString::from(secret))
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    async fn error_json(error: Problem) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn a_valid_token_yields_its_customer() {
        let keys = keys("secret");
        let token = keys.issue("cus_alice", Duration::from_secs(60)).unwrap();
        assert_eq!(
            keys.authenticate(&bearer(&token)).unwrap(),
            Customer("cus_alice".into())
        );
    }

    #[tokio::test]
    async fn an_expired_token_is_refused_with_401_problem() {
        let keys = keys("secret");
        let expired = Claims {
            sub: "cus_alice".into(),
            exp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                - 10,
        };
        let token = jsonwebtoken::encode(&Header::default(), &expired, &keys.encoding).unwrap();
        let error = keys.authenticate(&bearer(&token)).unwrap_err();
        let (status, body) = error_json(error).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["detail"], "the bearer token has expired");
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let token = keys("other")
            .issue("cus_mallory", Duration::from_secs(60))
            .unwrap();
        let refused = keys("secret").authenticate(&bearer(&token)).unwrap_err();
        assert!(refused.is(Kind::UNAUTHORIZED));
    }

    #[tokio::test]
    async fn a_missing_header_is_refused_with_401_problem() {
        let error = keys("secret").authenticate(&HeaderMap::new()).unwrap_err();
        let (status, body) = error_json(error).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body["detail"].as_str().unwrap().contains("Bearer"));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(keys("secret").authenticate(&bearer("not.a.jwt")).is_err());
    }
}
