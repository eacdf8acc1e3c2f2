//! `order`: runs the order service; `order replay` instead reprocesses a dump file through its
//! handlers into a fresh database ([`choreo::replay`]). See the library's docs and `order --help`.

use std::process::ExitCode;

use choreo::replay::CommandLine;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    choreo::config::load_env_file();
    let config = match choreo::replay::command_line::<order::Config>("order") {
        CommandLine::Serve(config) => config,
        CommandLine::Replay(args) => {
            return Ok(choreo::replay::main(order::replay::service(), args).await)
        }
    };
    let _telemetry = choreo::service::init_tracing("order");
    let settings = choreo::service::ServiceSettings::from_env("order", config.http_addr)?;
    let app = order::build(&config, settings).await?;
    tracing::info!(addr = %app.local_addr(), "order service listening");
    app.run(choreo::shutdown::on_signal()?).await?;
    Ok(ExitCode::SUCCESS)
}
