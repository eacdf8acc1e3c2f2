//! Bearer-token authentication: HS256 JWTs whose `sub` is the customer id. [`JwtKeys`] signs
//! and verifies them; the [`Customer`] extractor gives a handler the verified customer or
//! answers 401 with a problem body. The secret stays inside `secrecy` and is never logged.
//!
//! A token is accepted only when its signature is HS256 with the gateway's secret (never `none`
//! nor another algorithm), its `iss` and `aud` are the gateway's ([`TokenPolicy`]), it is not
//! before its `nbf`, not after its `exp`, was not issued in the future, and it carries `exp`
//! and `iat` no further apart than the policy's maximum lifetime: a stolen long-lived token is
//! refused even with a good signature.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use choreo::problem::Problem;

use crate::AppState;

/// The claims the gateway reads from a token; a token without `exp` or `iat` does not decode.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The customer id.
    pub sub: String,
    /// Who issued the token (must be the policy's issuer).
    pub iss: String,
    /// Whom the token is for (must be the policy's audience).
    pub aud: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Not valid before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

/// What a token must say besides its signature.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    /// The `iss` the gateway issues and accepts.
    pub issuer: String,
    /// The `aud` the gateway issues and accepts.
    pub audience: String,
    /// The longest `exp - iat` accepted (and issued).
    pub max_lifetime: Duration,
}

/// The customer a verified token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer(pub String);

/// Signs and verifies tokens with one HS256 secret under one [`TokenPolicy`].
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    policy: TokenPolicy,
}

/// Seconds since the Unix epoch.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl JwtKeys {
    pub fn new(secret: &SecretString, policy: TokenPolicy) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_issuer(&[&policy.issuer]);
        validation.set_audience(&[&policy.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
            policy,
        }
    }

    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    /// A token for `subject`, valid from now for `ttl`, at most the policy's maximum lifetime.
    pub fn issue(&self, subject: &str, ttl: Duration) -> anyhow::Result<String> {
        anyhow::ensure!(
            ttl <= self.policy.max_lifetime,
            "a token may live at most {:?} (GATEWAY_JWT_MAX_LIFETIME), not {ttl:?}",
            self.policy.max_lifetime
        );
        let iat = now_secs();
        let claims = Claims {
            sub: subject.to_owned(),
            iss: self.policy.issuer.clone(),
            aud: self.policy.audience.clone(),
            iat,
            nbf: Some(iat),
            exp: iat + ttl.as_secs(),
        };
        self.sign(&claims)
    }

    /// `claims` signed as they are (tests forge tokens with it).
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.encoding,
        )?)
    }

    /// The customer of a valid token.
    pub fn verify(&self, token: &str) -> Result<Customer, Problem> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => {
                    Problem::unauthorized("the bearer token has expired")
                }
                ErrorKind::ImmatureSignature => {
                    Problem::unauthorized("the bearer token is not valid yet")
                }
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                    Problem::unauthorized("the bearer token is not for this gateway")
                }
                _ => Problem::unauthorized("the bearer token is not valid"),
            })?;
        let claims = data.claims;
        if claims.iat > now_secs() {
            return Err(Problem::unauthorized(
                "the bearer token is issued in the future",
            ));
        }
        let lifetime = claims.exp.saturating_sub(claims.iat);
        if lifetime > self.policy.max_lifetime.as_secs() {
            return Err(Problem::unauthorized("the bearer token lives too long"));
        }
        if claims.sub.is_empty() {
            return Err(Problem::unauthorized("the bearer token has no subject"));
        }
        Ok(Customer(claims.sub))
    }

    /// The customer of the request's `Authorization: Bearer` header.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Customer, Problem> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| Problem::unauthorized("an Authorization: Bearer token is required"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header is not a Bearer token")
            })?;
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

    fn policy() -> TokenPolicy {
        TokenPolicy {
            issuer: "choreo-shop".into(),
            audience: "shop-gateway".into(),
            max_lifetime: Duration::from_secs(3600),
        }
    }

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::new(&SecretString::from(secret), policy())
    }

    /// Claims of a good token for `cus_alice`, to spoil one at a time.
    fn good_claims() -> Claims {
        let now = now_secs();
        Claims {
            sub: "cus_alice".into(),
            iss: "choreo-shop".into(),
            aud: "shop-gateway".into(),
            iat: now,
            nbf: Some(now),
            exp: now + 60,
        }
    }

    fn refusal(claims: &Claims) -> String {
        let keys = keys("secret");
        let token = keys.sign(claims).unwrap();
        let problem = keys.authenticate(&bearer(&token)).unwrap_err();
        assert!(problem.is(Kind::UNAUTHORIZED));
        problem.detail.clone()
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
            iat: now_secs() - 100,
            nbf: None,
            exp: now_secs() - 10,
            ..good_claims()
        };
        let token = keys.sign(&expired).unwrap();
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
    fn a_token_for_another_issuer_or_audience_is_refused() {
        let wrong_aud = refusal(&Claims {
            aud: "another-api".into(),
            ..good_claims()
        });
        assert_eq!(wrong_aud, "the bearer token is not for this gateway");
        let wrong_iss = refusal(&Claims {
            iss: "someone-else".into(),
            ..good_claims()
        });
        assert_eq!(wrong_iss, "the bearer token is not for this gateway");
    }

    #[test]
    fn a_token_before_its_nbf_or_issued_in_the_future_is_refused() {
        let later = now_secs() + 600;
        let detail = refusal(&Claims {
            nbf: Some(later),
            ..good_claims()
        });
        assert_eq!(detail, "the bearer token is not valid yet");
        let detail = refusal(&Claims {
            iat: later,
            nbf: None,
            exp: later + 60,
            ..good_claims()
        });
        assert_eq!(detail, "the bearer token is issued in the future");
    }

    #[test]
    fn a_token_living_longer_than_the_maximum_is_refused_and_never_issued() {
        let detail = refusal(&Claims {
            exp: now_secs() + 3601,
            ..good_claims()
        });
        assert_eq!(detail, "the bearer token lives too long");
        assert!(keys("secret")
            .issue("cus_alice", Duration::from_secs(3601))
            .is_err());
        let token = keys("secret")
            .issue("cus_alice", Duration::from_secs(3600))
            .unwrap();
        assert!(keys("secret").authenticate(&bearer(&token)).is_ok());
    }

    /// `{"alg":"none","typ":"JWT"}`, base64url.
    const ALG_NONE: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";

    #[test]
    fn a_token_without_exp_or_iat_or_with_alg_none_is_refused() {
        let keys = keys("secret");
        let now = now_secs();
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap()
        };
        let no_iat = serde_json::json!({"sub": "cus_alice", "iss": "choreo-shop",
            "aud": "shop-gateway", "exp": now + 60});
        let no_exp = serde_json::json!({"sub": "cus_alice", "iss": "choreo-shop",
            "aud": "shop-gateway", "iat": now});
        for claims in [no_iat, no_exp] {
            let refused = keys.authenticate(&bearer(&sign(claims))).unwrap_err();
            assert!(refused.is(Kind::UNAUTHORIZED));
        }
        let good = keys.issue("cus_alice", Duration::from_secs(60)).unwrap();
        let payload = good.split('.').nth(1).unwrap();
        let unsigned = format!("{ALG_NONE}.{payload}.");
        assert!(keys.authenticate(&bearer(&unsigned)).is_err());
    }

    #[test]
    fn garbage_is_refused() {
        assert!(keys("secret").authenticate(&bearer("not.a.jwt")).is_err());
    }
}
