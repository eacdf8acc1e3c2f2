//! The `payment` binary: reads its flags and the environment, sets up JSON logs, then runs the
//! consumer, the payment worker, the relay and the HTTP API until SIGTERM (see the library's
//! docs and `payment --help`); `payment replay` instead reprocesses a dump file through its
//! handler into a fresh database ([`choreo::replay`]).

use std::process::ExitCode;

use choreo::replay::CommandLine;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    choreo::config::load_env_file();
    let config = match choreo::replay::command_line::<payment::config::Config>("payment") {
        CommandLine::Serve(config) => config,
        CommandLine::Replay(args) => {
            return Ok(choreo::replay::main(payment::replay_service(), args).await)
        }
    };
    let _telemetry = choreo::service::init_tracing("payment");
    let settings = choreo::service::ServiceSettings::from_env("payment", config.http_addr)?;
    let app = payment::build(&config, settings).await?;
    tracing::info!(addr = %app.local_addr(), "payment service listening");
    app.run(choreo::shutdown::on_signal()?).await?;
    Ok(ExitCode::SUCCESS)
}
