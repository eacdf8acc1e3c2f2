//! What a failed schema registry call came to, read from schema_registry_converter's typed error
//! ([`SRCError`]): its `retriable` flag and the registry's own error body, which the client keeps
//! as the error's source ([`RawError`]); never its message text. What an answer means is the
//! caller's to decide: the codec retries everything but a definite answer about the schema, the
//! operator tool reports a refusal at once.
//!
//! Also [`settings`], the one way to reach the registry as [`RegistryConfig`] says, its
//! credentials included (every caller builds its client here, so none forgets them), and
//! [`lookup`], a schema's id under a subject, which a read-only user may ask.

use std::error::Error as _;
use std::time::Duration;

use schema_registry_converter::async_impl::schema_registry::{perform_sr_call, SrSettings};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::RawError;
use schema_registry_converter::schema_registry_common::SrCall;

use crate::config::RegistryConfig;
use crate::secret::ExposeSecret;

/// schema_registry_converter's settings for `config`: its URL, basic auth when it has
/// credentials, and `timeout` per request.
pub fn settings(config: &RegistryConfig, timeout: Duration) -> Result<SrSettings, SRCError> {
    let mut builder = SrSettings::new_builder(config.url.clone());
    builder.set_timeout(timeout);
    if let Some(credentials) = &config.credentials {
        builder.set_basic_authorization(
            &credentials.username,
            Some(credentials.password.expose_secret()),
        );
    }
    builder.build()
}

/// The id of exactly this schema text under `subject` (`POST /subjects/{subject}`, which a
/// read-only user may call), `None` when the subject or the schema is not there.
pub async fn lookup(
    settings: &SrSettings,
    subject: &str,
    schema: &str,
) -> Result<Option<u32>, SRCError> {
    let body = serde_json::json!({ "schema": schema, "schemaType": "AVRO" }).to_string();
    match perform_sr_call(settings, SrCall::PostForVersion(subject, &body)).await {
        Ok(found) => match found.id {
            Some(id) => Ok(Some(id)),
            None => Err(SRCError::non_retryable_without_cause(&format!(
                "the registry's lookup of {subject} answered without an id"
            ))),
        },
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the registry answered that there is no such subject, version or schema.
pub fn is_not_found(error: &SRCError) -> bool {
    matches!(
        RegistryFailure::of(error),
        RegistryFailure::Answered(404 | 40400..=40499)
    )
}

/// How a registry call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryFailure {
    /// No answer (the connection failed or timed out), or 502/503: the client marks these
    /// `retriable`.
    Unreachable,
    /// The registry's own error body with this `error_code`. Confluent's codes, which Apicurio's
    /// ccompat API shares: 40401 subject, 40402 version, 40403 schema not found; 409
    /// incompatible; 42201 invalid schema; 5xxxx the registry's own failure.
    Answered(u32),
    /// Anything else: an HTTP error without the registry's body (a proxy, a wrong path, a
    /// registry still starting: the client then records `error_code` 0), or an answer the
    /// client could not read.
    Unexplained,
}

impl RegistryFailure {
    pub fn of(error: &SRCError) -> Self {
        if error.retriable {
            return Self::Unreachable;
        }
        match error
            .source()
            .and_then(|source| source.downcast_ref::<RawError>())
        {
            Some(raw) if raw.error_code != 0 => Self::Answered(raw.error_code),
            _ => Self::Unexplained,
        }
    }
}

/// The failure for people: the registry's own message when it answered, else the client's
/// error with its cause.
pub fn describe(error: &SRCError) -> String {
    let raw = error
        .source()
        .and_then(|source| source.downcast_ref::<RawError>())
        .filter(|raw| raw.error_code != 0);
    match (raw, &error.cause) {
        (Some(raw), _) => raw.message.clone(),
        (None, Some(cause)) => format!("{}: {cause}", error.error),
        (None, None) => error.error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{registry_answer as answered, registry_unreachable as unreachable};

    #[test]
    fn the_registrys_own_error_body_gives_its_code() {
        let missing = answered(
            404,
            r#"{"error_code":40403,"message":"Schema 9 not found"}"#,
        );
        assert_eq!(
            RegistryFailure::of(&missing),
            RegistryFailure::Answered(40403)
        );
        let invalid = answered(422, r#"{"message":"bad","error_code":42201}"#);
        assert_eq!(
            RegistryFailure::of(&invalid),
            RegistryFailure::Answered(42201)
        );
    }

    #[test]
    fn no_answer_and_a_bad_gateway_are_unreachable_whatever_the_body() {
        assert_eq!(
            RegistryFailure::of(&unreachable()),
            RegistryFailure::Unreachable
        );
        for body in [
            "<html>Bad Gateway</html>",
            r#"{"error_code":50301,"message":"x"}"#,
        ] {
            assert_eq!(
                RegistryFailure::of(&answered(503, body)),
                RegistryFailure::Unreachable
            );
        }
    }

    #[test]
    fn an_error_without_the_registrys_body_is_unexplained_whatever_its_status() {
        for status in [400, 404, 409, 500] {
            let proxy = answered(status, "<html>Not Found</html>");
            assert_eq!(RegistryFailure::of(&proxy), RegistryFailure::Unexplained);
        }
        let unreadable = SRCError::non_retryable_without_cause("could not get id from response");
        assert_eq!(
            RegistryFailure::of(&unreadable),
            RegistryFailure::Unexplained
        );
    }

    #[test]
    fn a_failure_reads_as_the_registrys_message_or_the_clients_error() {
        let missing = answered(
            404,
            r#"{"error_code":40401,"message":"Subject 'x' not found."}"#,
        );
        assert_eq!(describe(&missing), "Subject 'x' not found.");
        let proxy = describe(&answered(404, "<html>Not Found</html>"));
        assert!(
            proxy.starts_with("HTTP request to schema registry failed with status 404"),
            "{proxy}"
        );
        assert!(describe(&unreachable()).starts_with("http call to schema registry failed: "));
    }
}
