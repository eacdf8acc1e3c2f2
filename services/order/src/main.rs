//! `order`: runs the order service (see the library's docs and `order --help`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    choreo::config::load_env_file();
    choreo::service::init_tracing();
    let config = order::Config::parse();
    let settings = choreo::service::ServiceSettings::from_env("order", config.http_addr)?;
    let app = order::Application::build(&config, settings).await?;
    tracing::info!(addr = %app.local_addr(), "order service listening");
    app.run(choreo::shutdown::on_signal()?).await?;
    Ok(())
}
