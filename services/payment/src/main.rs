//! The `payment` binary: reads its flags and the environment, sets up JSON logs, then runs the
//! consumer, the payment worker, the relay and the HTTP API until SIGTERM (see the library's
//! docs and `payment --help`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    choreo::config::load_env_file();
    choreo::service::init_tracing();
    let config = payment::config::Config::parse();
    let settings = choreo::service::ServiceSettings::from_env("payment", config.http_addr)?;
    let app = payment::Application::build(&config, settings).await?;
    tracing::info!(addr = %app.local_addr(), "payment service listening");
    app.run(choreo::shutdown::on_signal()?).await?;
    Ok(())
}
