//! The `gateway` binary: reads the configuration, sets up JSON logs, then serves until SIGTERM
//! (or prints a token with `gateway token --subject <customer-id>`).

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use gateway::auth::JwtKeys;
use gateway::config::{Cli, Command};
use gateway::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    choreo::config::load_env_file();
    let cli = Cli::parse();
    if let Some(Command::Token { subject, ttl_secs }) = cli.command {
        let keys = JwtKeys::new(&cli.config.jwt_secret);
        println!("{}", keys.issue(&subject, Duration::from_secs(ttl_secs))?);
        return Ok(());
    }
    choreo::service::init_tracing();
    let shutdown = choreo::shutdown::on_signal().context("install signal handlers")?;
    let app = Application::build(cli.config).await?;
    app.run_until(shutdown).await.context("serve HTTP")
}
