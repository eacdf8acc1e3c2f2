//! Command-line definitions and dispatch. Each subcommand prints what it does to stdout and its
//! errors to stderr, and maps failures to documented exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::topics;

const AFTER_HELP: &str = "\
Addresses come from flags, then environment variables, then .stack/env (written by
`scripts/stack up`), found from the current directory upwards or named by CHOREO_ENV_FILE.

Exit codes: 0 done (or nothing to do), 1 failed (e.g. cluster unreachable),
2 bad input (bad arguments or spec files), 3 refused (a destructive change was asked for).";

/// The operator tool for the shop's event backbone.
#[derive(Debug, Parser)]
#[command(name = "choreo", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(
        long,
        env = "KAFKA_BROKERS",
        global = true,
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// How long to wait for the cluster on each request, in seconds.
    #[arg(long, global = true, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Topics as code: compare topics/*.yaml with the cluster and align it.
    #[command(subcommand)]
    Topics(TopicsCommand),
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Show what `apply` would change, changing nothing.
    #[command(after_help = "Example:\n  choreo topics plan --dir topics")]
    Plan(TopicsArgs),
    /// Print the plan, then create missing topics, add partitions and align configs. Refuses
    /// the whole plan if any topic would need fewer partitions or another replication factor.
    #[command(after_help = "Example:\n  choreo topics apply --dir topics --brokers kafka-0:9092")]
    Apply(TopicsArgs),
}

#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// The folder of topic spec files (one <topic>.yaml per topic).
    #[arg(long, default_value = "topics")]
    pub dir: PathBuf,
}

/// Runs a parsed command line to its exit code.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(Failure::Error(e.into())),
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(failure),
    }
}

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

fn fail(failure: Failure) -> ExitCode {
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

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let kafka = choreo::KafkaConfig::parse(&cli.cluster.brokers)
        .map_err(|e| Failure::BadInput(e.to_string()))?;
    let timeout = Duration::from_secs(cli.cluster.timeout);
    match cli.command {
        Command::Topics(TopicsCommand::Plan(args)) => {
            topics_run(&kafka, &args, timeout, false).await
        }
        Command::Topics(TopicsCommand::Apply(args)) => {
            topics_run(&kafka, &args, timeout, true).await
        }
    }
}

async fn topics_run(
    kafka: &choreo::KafkaConfig,
    args: &TopicsArgs,
    timeout: Duration,
    apply: bool,
) -> Result<(), Failure> {
    let specs = topics::load_dir(&args.dir).map_err(|e| Failure::BadInput(e.to_string()))?;
    let admin = topics::cluster::connect(kafka, timeout)?;
    let plan = topics::cluster::plan_against(&admin, &specs, timeout).await?;
    println!(
        "topics plan: {} spec(s) in {} against {}",
        specs.len(),
        args.dir.display(),
        kafka.brokers
    );
    println!("{plan}");
    if !plan.refusals.is_empty() {
        let reasons: Vec<String> = plan.refusals.iter().map(ToString::to_string).collect();
        return Err(Failure::Refused(format!(
            "nothing was applied:\n  {}",
            reasons.join("\n  ")
        )));
    }
    if !apply {
        return Ok(());
    }
    if plan.is_empty() {
        println!("No changes: the cluster matches the specs.");
        return Ok(());
    }
    topics::cluster::apply(&admin, &specs, &plan, timeout).await?;
    println!("Applied: the cluster now matches the specs.");
    Ok(())
}
