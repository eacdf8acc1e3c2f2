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

/// Where the Kafka cluster is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` bootstrap list (`KAFKA_BROKERS`).
    pub brokers: String,
}

impl KafkaConfig {
    pub const BROKERS_VAR: &'static str = "KAFKA_BROKERS";

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::parse(&required(Self::BROKERS_VAR)?)
    }

    /// Accepts a comma-separated list of `host:port` pairs.
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
        })
    }
}

/// Where the Confluent-compatible schema registry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Base URL of the Confluent API (`SCHEMA_REGISTRY_URL`), without a trailing slash.
    pub url: String,
}

impl RegistryConfig {
    pub const URL_VAR: &'static str = "SCHEMA_REGISTRY_URL";

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::parse(&required(Self::URL_VAR)?)
    }

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
        })
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
