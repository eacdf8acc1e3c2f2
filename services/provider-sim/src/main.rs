//! The `provider-sim` binary: reads the configuration, sets up the JSON logs every service
//! writes, then serves until SIGTERM.

use clap::Parser;
use provider_sim::{Config, Simulator};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let _telemetry = choreo::service::init_tracing("provider-sim");
    let mut config = Config::parse();
    config.operator_token =
        Some(choreo::secret::required("OPERATOR_TOKEN").map_err(std::io::Error::other)?);
    let shutdown = choreo::shutdown::on_signal()?;
    let simulator = Simulator::bind(config).await?;
    tracing::info!(addr = %simulator.local_addr()?, "provider simulator listening");
    simulator.run(shutdown).await
}
