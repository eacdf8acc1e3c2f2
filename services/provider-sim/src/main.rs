use clap::Parser;
use provider_sim::{Config, Simulator};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = Config::parse();
    let shutdown = choreo::shutdown::on_signal()?;
    let simulator = Simulator::bind(config).await?;
    tracing::info!(addr = %simulator.local_addr()?, "provider simulator listening");
    simulator.run(shutdown).await
}
