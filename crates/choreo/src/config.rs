//! Typed configuration read from environment variables (12-factor).
//!
//! `scripts/stack up` writes every address of the local stack into one env file, `.stack/env`;
//! [`load_env_file`] reads it so that tools and tests find the stack without anything exported by
//! hand. Variables already set in the environment always win over the file, which is how a
//! deployment points the same binaries at another cluster.
//!
//! Durations are read with [`parse_duration`]: whole seconds (`3600`) or a number with a unit
//! (`500ms`, `90s`, `15m`, `24h`, `8d`), the same in every variable that holds one.

use std::env;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The variable that names an env file explicitly.
pub const ENV_FILE_VAR: &str = "CHOREO_ENV_FILE";
/// Where `scripts/stack` writes the stack's addresses, relative to the repository root.
pub const STACK_ENV_FILE: &str = ".stack/env";

/// A configuration value that is missing or malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "{var} is not set (run `scripts/stack up`, which writes it to .stack/env, or export it)"
    )]
    Missing { var: &'static str },
    #[error("{var}={value:?} is not valid: {why}")]
    Invalid {
        var: &'static str,
        value: String,
        why: String,
    },
}

/// Loads the env file named by `CHOREO_ENV_FILE`, or else the nearest `.stack/env` found from the
/// current directory upwards. Never overrides a variable that is already set. Returns the file
/// that was read, if any.
pub fn load_env_file() -> Option<PathBuf> {
    let path = match env::var_os(ENV_FILE_VAR) {
        Some(explicit) => PathBuf::from(explicit),
        None => find_upwards(&env::current_dir().ok()?, STACK_ENV_FILE)?,
    };
    dotenvy::from_path(&path).ok().map(|()| path)
}

fn find_upwards(start: &Path, relative: &str) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(relative))
        .find(|candidate| candidate.is_file())
}

fn required(var: &'static str) -> Result<String, ConfigError> {
    match env::var(var) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
        _ => Err(ConfigError::Missing { var }),
    }
}

/// A duration written as whole seconds (`3600`) or as a whole number with one unit: `ms`, `s`,
/// `m`, `h` or `d` (`500ms`, `90s`, `15m`, `24h`, `8d`). `why` of the error says what is wrong.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(digits);
    let number: u64 = number.parse().map_err(|_| {
        "expected a whole number with an optional unit, e.g. 90s, 15m, 24h, 8d".to_owned()
    })?;
    let unit_secs: u64 = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(number)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit `{other}` (use ms, s, m, h or d)")),
    };
    number
        .checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(|| "too long".to_owned())
}

/// Parses `value` of `var` as a duration (see [`parse_duration`]); a value below `at_least` is
/// refused, with `why_at_least` as the reason.
pub fn duration_at_least(
    var: &'static str,
    value: &str,
    at_least: Duration,
    why_at_least: &str,
) -> Result<Duration, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid {
        var,
        value: value.to_owned(),
        why,
    };
    let duration = parse_duration(value).map_err(invalid)?;
    if duration < at_least {
        return Err(invalid(format!(
            "must be at least {}s: {why_at_least}",
            at_least.as_secs()
        )));
    }
    Ok(duration)
}

/// Where the Kafka cluster is and how a client proves who it is.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` bootstrap list (`KAFKA_BROKERS`).
    pub brokers: String,
    /// Encryption and authentication ([`KafkaSecurity::from_env`]).
    pub security: KafkaSecurity,
}

impl KafkaConfig {
    pub const BROKERS_VAR: &'static str = "KAFKA_BROKERS";

    /// The brokers and the security settings from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::parse(&required(Self::BROKERS_VAR)?)?.with_security(KafkaSecurity::from_env()?))
    }

    /// Accepts a comma-separated list of `host:port` pairs; plaintext, no authentication (add
    /// them with [`KafkaConfig::with_security`]).
    pub fn parse(brokers: &str) -> Result<Self, ConfigError> {
        let invalid = |why: String| ConfigError::Invalid {
            var: Self::BROKERS_VAR,
            value: brokers.to_owned(),
            why,
        };
        let hosts: Vec<&str> = brokers.split(',').map(str::trim).collect();
        for host in &hosts {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| invalid(format!("`{host}` has no :port")))?;
            if name.is_empty() {
                return Err(invalid(format!("`{host}` has no host name")));
            }
            port.parse::<u16>()
                .map_err(|_| invalid(format!("`{port}` in `{host}` is not a port number")))?;
        }
        Ok(Self {
            brokers: hosts.join(","),
            security: KafkaSecurity::default(),
        })
    }

    /// The same brokers, reached with `security`.
    pub fn with_security(self, security: KafkaSecurity) -> Self {
        Self { security, ..self }
    }

    /// The same security settings towards other brokers (a proxy in front of them, say).
    pub fn with_brokers(&self, brokers: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            security: self.security.clone(),
            ..Self::parse(brokers)?
        })
    }
}

/// How a Kafka client talks to the brokers, in librdkafka's terms: `security.protocol` and,
/// for SASL, the mechanism and the principal's name and password; for TLS, the CA that signed
/// the brokers' certificates (hostnames are verified). Read from `KAFKA_SECURITY_PROTOCOL`
/// (`PLAINTEXT`, the default, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`), `KAFKA_SASL_MECHANISM`
/// (default `SCRAM-SHA-512`), `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD` or
/// `KAFKA_SASL_PASSWORD_FILE` ([`crate::secret`]) and `KAFKA_SSL_CA_LOCATION` (a PEM file;
/// the system's CAs when unset). The password never shows in `Debug`.
#[derive(Debug, Clone, Default)]
pub struct KafkaSecurity {
    /// `security.protocol`.
    pub protocol: SecurityProtocol,
    /// The SASL login, for the `SASL_*` protocols.
    pub sasl: Option<SaslLogin>,
    /// `ssl.ca.location`, for `SSL` and `SASL_SSL`.
    pub ssl_ca_location: Option<PathBuf>,
}

/// Kafka's four security protocols.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// The name librdkafka and Kafka use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// A SASL principal's mechanism, name and password.
#[derive(Debug, Clone)]
pub struct SaslLogin {
    /// `sasl.mechanisms`, e.g. `SCRAM-SHA-512`.
    pub mechanism: String,
    pub username: String,
    pub password: crate::secret::SecretString,
}

impl KafkaSecurity {
    pub const PROTOCOL_VAR: &'static str = "KAFKA_SECURITY_PROTOCOL";
    pub const MECHANISM_VAR: &'static str = "KAFKA_SASL_MECHANISM";
    pub const USERNAME_VAR: &'static str = "KAFKA_SASL_USERNAME";
    pub const PASSWORD_VAR: &'static str = "KAFKA_SASL_PASSWORD";
    pub const CA_VAR: &'static str = "KAFKA_SSL_CA_LOCATION";

    /// The settings in the environment (see the type's documentation).
    pub fn from_env() -> Result<Self, ConfigError> {
        let protocol = match env::var(Self::PROTOCOL_VAR) {
            Ok(value) if !value.trim().is_empty() => parse_protocol(&value)?,
            _ => SecurityProtocol::Plaintext,
        };
        let sasl = if protocol.uses_sasl() {
            Some(SaslLogin {
                mechanism: env::var(Self::MECHANISM_VAR)
                    .ok()
                    .map(|m| m.trim().to_owned())
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "SCRAM-SHA-512".to_owned()),
                username: required(Self::USERNAME_VAR)?,
                password: crate::secret::required(Self::PASSWORD_VAR)?,
            })
        } else {
            None
        };
        let ssl_ca_location = match env::var(Self::CA_VAR) {
            Ok(path) if protocol.uses_tls() && !path.trim().is_empty() => {
                let path = PathBuf::from(path.trim());
                if !path.is_file() {
                    return Err(ConfigError::Invalid {
                        var: Self::CA_VAR,
                        value: path.display().to_string(),
                        why: "no such file (a PEM file of the CA that signed the brokers' certificates)".into(),
                    });
                }
                Some(path)
            }
            _ => None,
        };
        Ok(Self {
            protocol,
            sasl,
            ssl_ca_location,
        })
    }

    /// librdkafka's properties for these settings.
    pub fn client_properties(&self) -> Vec<(&'static str, String)> {
        use crate::secret::ExposeSecret;
        let mut properties = vec![("security.protocol", self.protocol.as_str().to_owned())];
        if let Some(login) = &self.sasl {
            properties.push(("sasl.mechanisms", login.mechanism.clone()));
            properties.push(("sasl.username", login.username.clone()));
            properties.push(("sasl.password", login.password.expose_secret().to_owned()));
        }
        if let Some(ca) = &self.ssl_ca_location {
            properties.push(("ssl.ca.location", ca.display().to_string()));
        }
        properties
    }

    /// The principal's name, when it logs in with SASL.
    pub fn principal(&self) -> Option<&str> {
        self.sasl.as_ref().map(|login| login.username.as_str())
    }
}

fn parse_protocol(value: &str) -> Result<SecurityProtocol, ConfigError> {
    match value.trim().to_ascii_uppercase().as_str() {
        "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
        "SSL" => Ok(SecurityProtocol::Ssl),
        "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
        "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
        _ => Err(ConfigError::Invalid {
            var: KafkaSecurity::PROTOCOL_VAR,
            value: value.to_owned(),
            why: "expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL".into(),
        }),
    }
}

/// Where the Confluent-compatible schema registry is, and who calls it.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Base URL of the Confluent API (`SCHEMA_REGISTRY_URL`), without a trailing slash.
    pub url: String,
    /// HTTP basic auth (`SCHEMA_REGISTRY_USERNAME` and the password in
    /// `SCHEMA_REGISTRY_PASSWORD_FILE` or `SCHEMA_REGISTRY_PASSWORD`); `None` calls anonymously,
    /// which a registry secured as `scripts/stack` runs it refuses (401).
    pub credentials: Option<RegistryCredentials>,
}

/// A registry user: a service's read-only one, or the operator's, who may register schemas.
#[derive(Debug, Clone)]
pub struct RegistryCredentials {
    pub username: String,
    /// Never shown: its `Debug` says `[REDACTED]`.
    pub password: crate::secret::SecretString,
}

impl RegistryConfig {
    pub const URL_VAR: &'static str = "SCHEMA_REGISTRY_URL";
    pub const USERNAME_VAR: &'static str = "SCHEMA_REGISTRY_USERNAME";
    pub const PASSWORD_VAR: &'static str = "SCHEMA_REGISTRY_PASSWORD";

    /// The URL and the credentials from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::parse(&required(Self::URL_VAR)?)?
            .with_credentials(RegistryCredentials::from_env()?))
    }

    /// The URL alone, without credentials (add them with [`RegistryConfig::with_credentials`]).
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                var: Self::URL_VAR,
                value: url.to_owned(),
                why: "expected an http:// or https:// URL".into(),
            });
        }
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            credentials: None,
        })
    }

    pub fn with_credentials(self, credentials: Option<RegistryCredentials>) -> Self {
        Self {
            credentials,
            ..self
        }
    }
}

impl RegistryCredentials {
    /// `SCHEMA_REGISTRY_USERNAME` with its password, `None` when neither is set; one without
    /// the other is an error (a half-configured client would call anonymously and be refused).
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let username = env::var(RegistryConfig::USERNAME_VAR)
            .ok()
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty());
        let password = crate::secret::read(RegistryConfig::PASSWORD_VAR)?;
        match (username, password) {
            (Some(username), Some(password)) => Ok(Some(Self { username, password })),
            (None, None) => Ok(None),
            (Some(username), None) => Err(ConfigError::Invalid {
                var: RegistryConfig::PASSWORD_VAR,
                value: String::new(),
                why: format!(
                    "{} is {username:?} but neither {} nor {}_FILE is set",
                    RegistryConfig::USERNAME_VAR,
                    RegistryConfig::PASSWORD_VAR,
                    RegistryConfig::PASSWORD_VAR
                ),
            }),
            (None, Some(_)) => Err(ConfigError::Missing {
                var: RegistryConfig::USERNAME_VAR,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_list_is_normalised() {
        let config = KafkaConfig::parse("127.0.0.1:9092, kafka-1:19092").unwrap();
        assert_eq!(config.brokers, "127.0.0.1:9092,kafka-1:19092");
    }

    #[test]
    fn a_broker_without_a_port_is_rejected_with_the_offending_entry() {
        let err = KafkaConfig::parse("127.0.0.1:9092,kafka-1").unwrap_err();
        assert!(err.to_string().contains("`kafka-1` has no :port"), "{err}");
    }

    #[test]
    fn a_broker_with_a_bad_port_is_rejected() {
        let err = KafkaConfig::parse("localhost:90920").unwrap_err();
        assert!(err.to_string().contains("not a port number"), "{err}");
    }

    #[test]
    fn security_protocols_are_read_in_any_case_and_unknown_ones_rejected() {
        assert_eq!(
            parse_protocol("sasl_ssl").unwrap(),
            SecurityProtocol::SaslSsl
        );
        assert_eq!(
            parse_protocol(" PLAINTEXT ").unwrap(),
            SecurityProtocol::Plaintext
        );
        let err = parse_protocol("TLS").unwrap_err();
        assert!(err.to_string().contains("SASL_SSL"), "{err}");
    }

    #[test]
    fn a_sasl_login_gives_librdkafka_its_properties_and_hides_the_password_in_debug() {
        let security = KafkaSecurity {
            protocol: SecurityProtocol::SaslSsl,
            sasl: Some(SaslLogin {
                mechanism: "SCRAM-SHA-512".into(),
                username: "order".into(),
                password: "hunter2".to_owned().into(),
            }),
            ssl_ca_location: Some("/stack/tls/ca.crt".into()),
        };
        let properties = security.client_properties();
        let get = |key| {
            properties
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(get("sasl.username"), Some("order"));
        assert_eq!(get("sasl.password"), Some("hunter2"));
        assert_eq!(get("ssl.ca.location"), Some("/stack/tls/ca.crt"));
        assert!(!format!("{security:?}").contains("hunter2"));
        assert_eq!(KafkaSecurity::default().client_properties().len(), 1);
    }

    #[test]
    fn durations_are_seconds_or_a_number_with_a_unit() {
        let secs = |s| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(secs("3600"), Ok(3600));
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("15m"), Ok(900));
        assert_eq!(secs(" 24h "), Ok(86_400));
        assert_eq!(secs("8d"), Ok(691_200));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "h", "1.5h", "-1", "8 days", "1w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_duration_below_its_floor_is_refused_with_the_reason() {
        let err =
            duration_at_least("X", "30m", Duration::from_secs(3600), "redeliveries").unwrap_err();
        assert!(
            err.to_string().contains("at least 3600s: redeliveries"),
            "{err}"
        );
        assert_eq!(
            duration_at_least("X", "2h", Duration::from_secs(3600), "").unwrap(),
            Duration::from_secs(7200)
        );
    }

    #[test]
    fn a_registry_url_must_be_http() {
        assert!(RegistryConfig::parse("127.0.0.1:8081").is_err());
        let config = RegistryConfig::parse("http://127.0.0.1:8081/apis/ccompat/v7/").unwrap();
        assert_eq!(config.url, "http://127.0.0.1:8081/apis/ccompat/v7");
    }

    #[test]
    fn the_env_file_is_found_in_a_parent_directory() {
        let root = std::env::temp_dir().join(format!("choreo-config-{}", std::process::id()));
        let nested = root.join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::create_dir_all(root.join(".stack")).unwrap();
        std::fs::write(root.join(STACK_ENV_FILE), "KAFKA_BROKERS=x:1\n").unwrap();
        assert_eq!(
            find_upwards(&nested, STACK_ENV_FILE),
            Some(root.join(STACK_ENV_FILE))
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
