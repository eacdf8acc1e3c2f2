//! Where the cluster and the schema registry are: the global flags every subcommand takes
//! ([`ClusterArgs`]) and the registry a subcommand names ([`registry_config`], [`registry`]).

use std::time::Duration;

use clap::Args;

use crate::failure::Failure;
use crate::schemas;

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(
        long,
        env = "KAFKA_BROKERS",
        global = true,
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// How long to wait for the cluster or the schema registry on each request, in seconds.
    #[arg(long, global = true, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

impl ClusterArgs {
    /// The cluster named by `--brokers`, reached with the security settings of the environment
    /// (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_CA_LOCATION`, which `.stack/env`
    /// or the file named by `CHOREO_ENV_FILE` provide): bad input when either is malformed.
    pub fn kafka(&self) -> Result<choreo::KafkaConfig, Failure> {
        let bad = |e: choreo::ConfigError| Failure::BadInput(e.to_string());
        Ok(choreo::KafkaConfig::parse(&self.brokers)
            .map_err(bad)?
            .with_security(choreo::KafkaSecurity::from_env().map_err(bad)?))
    }
}

/// The schema registry named by `--registry` (`url`), else by `SCHEMA_REGISTRY_URL`: bad input
/// naming the variable when neither is given (or is blank), or when the URL does not parse.
pub fn registry_config(url: Option<&str>) -> Result<choreo::RegistryConfig, Failure> {
    choreo::replay::registry_config(url).map_err(Failure::from)
}

/// A client of the schema registry named as [`registry_config`] says.
pub fn registry(url: Option<&str>, timeout: Duration) -> Result<schemas::Registry, Failure> {
    let config = registry_config(url)?;
    schemas::Registry::new(&config, timeout).map_err(|e| Failure::Error(e.into()))
}
