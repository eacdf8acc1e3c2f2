//! The schema registry edge of `schemas register|check`: the few Confluent API calls they need.
//!
//! Registering, looking up, listing versions and asking for compatibility go through
//! schema_registry_converter, as the codec does; setting and reading a subject's compatibility
//! level (`/config/{subject}`), which it has no function for, go through reqwest. Every failure
//! becomes one [`RegistryError`], mapped here once from the HTTP status and the registry's
//! `error_code`. Compatibility is asked with `POST /compatibility/subjects/{s}/versions`, which
//! checks against every version under the subject's level (`.../versions/latest` checks only
//! the latest, even under a TRANSITIVE level, and calls an unknown subject compatible). Apicurio
//! 3.3 ignores `?verbose=true` and answers with its own key order, not the text it was sent, so
//! reasons are found locally ([`super::compat`]) and texts are compared normalized.
//!
//! Both clients send the configured user's credentials ([`choreo::avro::registry::settings`],
//! [`http_client`]): registering and setting a level need a user with the write role (the
//! operator's), reading needs any user.

use std::time::Duration;

use choreo::avro::registry::describe;
use choreo::avro::RegistryFailure;
use schema_registry_converter::async_impl::schema_registry::{
    get_all_versions, get_schema_by_subject_and_version, is_compatible_schema, perform_sr_call,
    post_schema, SrSettings,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SrCall, SuppliedSchema};

/// The compatibility level every shop subject has.
pub const LEVEL: &str = "BACKWARD_TRANSITIVE";

/// Why a registry call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Not reachable, timed out, or failing on its side (5xx): try again later.
    #[error("the schema registry at {url} is unreachable or failing: {detail}")]
    Unavailable { url: String, detail: String },
    /// The registry refused a schema as incompatible with the subject's versions (409).
    #[error("the registry refused the schema for {subject} as incompatible: {detail}")]
    Incompatible { subject: String, detail: String },
    /// Any other refusal (an invalid schema, a bad request).
    #[error("the registry failed on {subject}: {detail}")]
    Failed { subject: String, detail: String },
}

/// A schema as registered under a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub id: u32,
    pub version: u32,
    pub schema: String,
}

/// A Confluent-compatible schema registry.
pub struct Registry {
    url: String,
    settings: SrSettings,
    http: reqwest::Client,
}

/// A plain HTTP client for `config`'s registry, for the calls schema_registry_converter has no
/// function for: every request carries the basic auth header of `config`'s credentials, if any
/// (marked sensitive, so it is never logged).
pub fn http_client(
    config: &choreo::RegistryConfig,
    timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    use base64::Engine as _;
    use choreo::secret::ExposeSecret as _;
    use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};

    let mut headers = HeaderMap::new();
    if let Some(credentials) = &config.credentials {
        let pair = format!(
            "{}:{}",
            credentials.username,
            credentials.password.expose_secret()
        );
        let basic = base64::engine::general_purpose::STANDARD.encode(pair);
        if let Ok(mut value) = HeaderValue::from_str(&format!("Basic {basic}")) {
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .default_headers(headers)
        .build()
}

/// How a failed call ended, from the HTTP status and the registry's error code.
enum Kind {
    /// 404: no such subject, version or schema.
    NotFound,
    Incompatible,
    Unavailable,
    Refused,
}

impl Registry {
    /// A client for the registry at `config.url` (the Confluent API base URL).
    pub fn new(config: &choreo::RegistryConfig, timeout: Duration) -> Result<Self, RegistryError> {
        let unavailable = |detail: String| RegistryError::Unavailable {
            url: config.url.clone(),
            detail,
        };
        let settings = choreo::avro::registry::settings(config, timeout)
            .map_err(|e| unavailable(describe(&e)))?;
        let http = http_client(config, timeout).map_err(|e| unavailable(e.to_string()))?;
        Ok(Self {
            url: config.url.clone(),
            settings,
            http,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sets the compatibility level of `subject` (`PUT /config/{subject}`); the subject need not
    /// have a version yet.
    pub async fn set_level(&self, subject: &str, level: &str) -> Result<(), RegistryError> {
        let response = self
            .http
            .put(format!("{}/config/{subject}", self.url))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .json(&serde_json::json!({ "compatibility": level }))
            .send()
            .await
            .map_err(|e| self.unavailable(&e))?;
        self.http_result(subject, response).await.map(drop)
    }

    /// The compatibility level `subject` is checked under (`GET /config/{subject}`): its own, or
    /// the registry's default; `None` when the registry has none for it.
    pub async fn level(&self, subject: &str) -> Result<Option<String>, RegistryError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Config {
            compatibility_level: Option<String>,
            compatibility: Option<String>,
        }
        let response = self
            .http
            .get(format!("{}/config/{subject}", self.url))
            .send()
            .await
            .map_err(|e| self.unavailable(&e))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.http_result(subject, response).await?;
        let config: Config = response.json().await.map_err(|e| RegistryError::Failed {
            subject: subject.to_owned(),
            detail: format!("unexpected answer to GET /config: {e}"),
        })?;
        Ok(config.compatibility_level.or(config.compatibility))
    }

    /// The registered id and version of exactly this schema text under `subject`, if any.
    pub async fn lookup(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<Option<(u32, u32)>, RegistryError> {
        let body = serde_json::json!({ "schema": schema, "schemaType": "AVRO" }).to_string();
        match perform_sr_call(&self.settings, SrCall::PostForVersion(subject, &body)).await {
            Ok(found) => match (found.id, found.version) {
                (Some(id), Some(version)) => Ok(Some((id, version))),
                _ => Err(RegistryError::Failed {
                    subject: subject.to_owned(),
                    detail: "the lookup answer has no id or version".into(),
                }),
            },
            Err(e) => match kind(&e) {
                Kind::NotFound => Ok(None),
                _ => Err(self.error(subject, &e)),
            },
        }
    }

    /// Registers `schema` (the text as given) for `record` under `subject`; returns its id. A text
    /// already registered there returns the same id and adds no version.
    pub async fn register(
        &self,
        subject: &str,
        record: &str,
        schema: &str,
    ) -> Result<u32, RegistryError> {
        let supplied =
            SuppliedSchema::new(Some(record.to_owned()), SchemaType::Avro, schema.to_owned());
        post_schema(&self.settings, subject.to_owned(), supplied)
            .await
            .map(|registered| registered.id)
            .map_err(|e| self.error(subject, &e))
    }

    /// Whether the registry would accept `schema` under `subject`, checked against every version
    /// under the subject's level; `None` when the subject has no versions yet.
    pub async fn is_compatible(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<Option<bool>, RegistryError> {
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema.to_owned());
        match is_compatible_schema(&self.settings, subject.to_owned(), supplied).await {
            Ok(compatible) => Ok(Some(compatible)),
            Err(e) => match kind(&e) {
                Kind::NotFound => Ok(None),
                _ => Err(self.error(subject, &e)),
            },
        }
    }

    /// Every version registered under `subject`, oldest first; empty for an unknown subject.
    pub async fn versions(&self, subject: &str) -> Result<Vec<Registered>, RegistryError> {
        let numbers = match get_all_versions(&self.settings, subject.to_owned()).await {
            Ok(numbers) => numbers,
            Err(e) => match kind(&e) {
                Kind::NotFound => return Ok(Vec::new()),
                _ => return Err(self.error(subject, &e)),
            },
        };
        let mut versions = Vec::with_capacity(numbers.len());
        for version in numbers {
            let registered =
                get_schema_by_subject_and_version(&self.settings, subject, Some(version))
                    .await
                    .map_err(|e| self.error(subject, &e))?;
            versions.push(Registered {
                id: registered.id,
                version,
                schema: registered.schema,
            });
        }
        versions.sort_by_key(|v| v.version);
        Ok(versions)
    }

    fn error(&self, subject: &str, error: &SRCError) -> RegistryError {
        let detail = describe(error);
        let subject = subject.to_owned();
        match kind(error) {
            Kind::Incompatible => RegistryError::Incompatible { subject, detail },
            Kind::Unavailable => RegistryError::Unavailable {
                url: self.url.clone(),
                detail,
            },
            Kind::NotFound | Kind::Refused => RegistryError::Failed { subject, detail },
        }
    }

    fn unavailable(&self, error: &reqwest::Error) -> RegistryError {
        RegistryError::Unavailable {
            url: self.url.clone(),
            detail: error.to_string(),
        }
    }

    /// The response if it succeeded; otherwise its status and the registry's message as an error.
    async fn http_result(
        &self,
        subject: &str,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, RegistryError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
            .unwrap_or(body);
        let detail = format!("{status}: {message}");
        if status.is_server_error() {
            Err(RegistryError::Unavailable {
                url: self.url.clone(),
                detail,
            })
        } else {
            Err(RegistryError::Failed {
                subject: subject.to_owned(),
                detail,
            })
        }
    }
}

/// From the client's typed error ([`RegistryFailure`]), never its message: only the registry's
/// own error body is an answer. No answer, 502/503, the registry failing on its side, and an
/// HTTP error without the registry's body (a proxy, a wrong URL: its 404 is not "no such
/// subject") are unavailable.
fn kind(error: &SRCError) -> Kind {
    match RegistryFailure::of(error) {
        RegistryFailure::Answered(404 | 40400..=40499) => Kind::NotFound,
        RegistryFailure::Answered(409) => Kind::Incompatible,
        RegistryFailure::Answered(code) if code >= 50000 || (500..600).contains(&code) => {
            Kind::Unavailable
        }
        RegistryFailure::Answered(_) => Kind::Refused,
        RegistryFailure::Unreachable | RegistryFailure::Unexplained => Kind::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use choreo::testing::{registry_answer as answered, registry_unreachable};

    fn kind_of(status: u16, code: u32) -> Kind {
        kind(&answered(
            status,
            &format!(r#"{{"error_code":{code},"message":"m"}}"#),
        ))
    }

    #[test]
    fn the_registrys_not_found_codes_mean_no_such_subject_or_version() {
        for code in [404, 40401, 40402, 40403] {
            assert!(matches!(kind_of(404, code), Kind::NotFound), "{code}");
        }
    }

    #[test]
    fn a_conflict_is_incompatible_and_other_refusals_are_refused() {
        assert!(matches!(kind_of(409, 409), Kind::Incompatible));
        assert!(matches!(kind_of(422, 42201), Kind::Refused));
        assert!(matches!(kind_of(401, 401), Kind::Refused));
    }

    #[test]
    fn the_registry_failing_or_out_of_reach_is_unavailable() {
        assert!(matches!(kind_of(500, 50001), Kind::Unavailable));
        assert!(matches!(kind_of(503, 40401), Kind::Unavailable));
        assert!(matches!(kind(&registry_unreachable()), Kind::Unavailable));
    }

    #[test]
    fn a_404_without_the_registrys_body_is_not_a_missing_subject() {
        // A wrong URL or a proxy: the status is in the message only, and is not read there.
        assert!(matches!(
            kind(&answered(404, "<html>Not Found</html>")),
            Kind::Unavailable
        ));
        assert!(matches!(
            kind(&answered(409, "conflict")),
            Kind::Unavailable
        ));
    }
}
