//! `inventory`: runs the inventory service; `inventory replay` instead reprocesses a dump file
//! through its handlers into a fresh database ([`choreo::replay`]). See the library's docs and
//! `inventory --help`.

use std::process::ExitCode;

use choreo::replay::CommandLine;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    choreo::config::load_env_file();
    let config = match choreo::replay::command_line::<inventory::Config>(inventory::NAME) {
        CommandLine::Serve(config) => config,
        CommandLine::Replay(args) => {
            return Ok(choreo::replay::main(inventory::replay_service(), args).await)
        }
    };
    let _telemetry = choreo::service::init_tracing("inventory");
    let app = inventory::build(config.settings()?).await?;
    tracing::info!(addr = %app.local_addr(), "inventory service listening");
    app.run(choreo::shutdown::on_signal()?).await?;
    Ok(ExitCode::SUCCESS)
}
