//! `shipping`: runs the shipping service; `shipping replay` instead reprocesses a dump file
//! through its handler into a fresh database ([`choreo::replay`]). See the library's docs and
//! `shipping --help`.

use std::process::ExitCode;

use choreo::replay::CommandLine;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    choreo::config::load_env_file();
    let config = match choreo::replay::command_line::<shipping::Config>(shipping::NAME) {
        CommandLine::Serve(config) => config,
        CommandLine::Replay(args) => {
            return Ok(choreo::replay::main(shipping::replay_service(), args).await)
        }
    };
    let _telemetry = choreo::service::init_tracing("shipping");
    let app = shipping::build(config.settings()?).await?;
    tracing::info!(addr = %app.local_addr(), "shipping service listening");
    app.run(choreo::shutdown::on_signal()?).await?;
    Ok(ExitCode::SUCCESS)
}
