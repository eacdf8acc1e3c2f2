//! How a command fails: [`Failure`], shared by every subcommand, and its exit code and message
//! ([`fail`]). Subcommands return it; `cli` maps it to the process's exit.

use std::process::ExitCode;

/// Why a command did not succeed; each kind has its own exit code.
#[derive(Debug)]
pub enum Failure {
    Error(anyhow::Error),
    BadInput(String),
    Refused(String),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Error(e)
    }
}

/// Prints `failure` to stderr and gives its exit code.
pub fn fail(failure: Failure) -> ExitCode {
    match failure {
        Failure::Error(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
        Failure::BadInput(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Failure::Refused(message) => {
            eprintln!("error: {message}");
            ExitCode::from(3)
        }
    }
}

impl From<choreo::replay::ReplayError> for Failure {
    fn from(error: choreo::replay::ReplayError) -> Self {
        use choreo::replay::ReplayError;
        match error {
            ReplayError::Failed(message) => Failure::Error(anyhow::anyhow!(message)),
            ReplayError::BadInput(message) => Failure::BadInput(message),
            ReplayError::Refused(message) => Failure::Refused(message),
        }
    }
}
