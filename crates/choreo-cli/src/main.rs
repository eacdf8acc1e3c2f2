use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Addresses of the local stack come from .stack/env unless the environment sets them.
    choreo::config::load_env_file();
    let cli = choreo_cli::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHOREO_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    choreo_cli::cli::run(cli)
}
