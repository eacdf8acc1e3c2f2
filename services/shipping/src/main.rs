//! `shipping`: runs the shipping service (see the library's docs and `shipping --help`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    choreo::config::load_env_file();
    choreo::service::init_tracing();
    let config = shipping::Config::parse();
    let app = shipping::Application::build(config.settings()?).await?;
    tracing::info!(addr = %app.local_addr(), "shipping service listening");
    app.run(choreo::shutdown::on_signal()?).await?;
    Ok(())
}
