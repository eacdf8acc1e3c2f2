//! The `gateway` binary: reads the configuration, sets up JSON logs, then serves until SIGTERM
//! (or prints a token with `gateway token --subject <customer-id>`).

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use gateway::auth::JwtKeys;
use gateway::config::{Cli, Command, Secrets};
use gateway::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    choreo::config::load_env_file();
    let cli = Cli::parse();
    if let Some(Command::Token { subject, ttl_secs }) = cli.command {
        let policy = cli.config.token_policy();
        let ttl = ttl_secs.map_or(policy.max_lifetime, Duration::from_secs);
        let keys = JwtKeys::new(&Secrets::jwt_secret_from_env()?, policy);
        println!("{}", keys.issue(&subject, ttl)?);
        return Ok(());
    }
    let _telemetry = choreo::service::init_tracing("gateway");
    let secrets = Secrets::from_env()?;
    let shutdown = choreo::shutdown::on_signal().context("install signal handlers")?;
    let app = Application::build(cli.config, secrets).await?;
    app.run_until(shutdown).await.context("serve HTTP")
}
