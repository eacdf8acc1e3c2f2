//! `inventory`: runs the inventory service (see the library's docs and `inventory --help`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    choreo::config::load_env_file();
    choreo::service::init_tracing();
    let config = inventory::Config::parse();
    let app = inventory::Application::build(config.settings()?).await?;
    tracing::info!(addr = %app.local_addr(), "inventory service listening");
    app.run(choreo::shutdown::on_signal()?).await?;
    Ok(())
}
