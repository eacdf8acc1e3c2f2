//! Command-line definitions and dispatch. Each subcommand prints what it does to stdout and its
//! errors to stderr, and maps failures to documented exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cluster::{registry, ClusterArgs};
use crate::failure::{fail, Failure};
use crate::schemas::{self, check, history, register};
use crate::topics;

const AFTER_HELP: &str = "\
Addresses come from flags, then environment variables, then .stack/env (written by
`scripts/stack up`), found from the current directory upwards or named by CHOREO_ENV_FILE.
Logins come from the same places, never from flags (which `ps` shows): Kafka's in librdkafka's
terms, KAFKA_SECURITY_PROTOCOL (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), KAFKA_SASL_MECHANISM
[SCRAM-SHA-512], KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE and
KAFKA_SSL_CA_LOCATION; the registry's SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD(_FILE).
The stack's env file holds the operator's (`admin`).

Exit codes: 0 done (or nothing to do), 1 failed (e.g. cluster or registry unreachable),
2 bad input (bad arguments, spec or schema files, an unknown git ref), 3 refused (a destructive
topic change was asked for, or a schema breaks BACKWARD_TRANSITIVE compatibility).";

const SCHEMAS_REGISTER_HELP: &str = "\
Examples:
  choreo schemas register
  choreo schemas register --registry http://registry:8081 --schemas-dir schemas --topics-dir topics

Each event a topic spec lists is registered under the subject <topic>-<namespace.Record>
(e.g. shop.orders.v1-shop.order.OrderPlaced), as compact JSON with sorted keys, and the subject
is set to BACKWARD_TRANSITIVE. Run twice, the second run reports every subject as already
registered, with the same ids. Exit 3 when the registry refuses a schema as incompatible.";

const SCHEMAS_CHECK_HELP: &str = "\
Examples:
  choreo schemas check                         against the registry's versions
  choreo schemas check --against HEAD~1        offline: against git history up to HEAD~1
  choreo schemas check --against origin/main   offline: before opening a pull request

BACKWARD_TRANSITIVE: a consumer on the new schema must read every event written with any
earlier version. Adding a field with a default or removing a field that has one is fine; adding
a field without a default, changing a type beyond Avro's promotions (int to long, float or
double; long to float or double; float to double; string to and from bytes), removing an enum
symbol (from an enum with no default) or a union branch breaks it. One rule beyond the
registry's: removing a field that an earlier version has without a default breaks consumers
still on that version (they read the producer's new events); give it a default first. Exit 3 on a break, naming the schema, the
field and the rule; exit 2 for bad schema files or an unknown git ref.";

/// The operator tool for the shop's event backbone.
#[derive(Debug, Parser)]
#[command(name = "choreo", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Topics as code: compare topics/*.yaml with the cluster and align it.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Schemas as code: register schemas/**/*.avsc under the subjects topics/*.yaml implies,
    /// and check that they stay BACKWARD_TRANSITIVE.
    Schemas(SchemasArgs),
    /// Run an outbox relay for one service database until SIGTERM: publishes the outbox to
    /// Kafka, leader-elected among every relay of that database (services embed the same relay;
    /// this runs it on its own, e.g. as a sidecar or to drain an outbox by hand).
    #[command(
        after_help = "Example:\n  choreo relay --service inventory --database-url \"$DATABASE_URL_INVENTORY\"\n\n\
        Set CHOREO_LOG=info to see it take and lose the lead."
    )]
    Relay(RelayArgs),
    /// Print a topic's records as JSON lines (values decoded from Avro), with filters and --follow.
    Inspect(crate::inspect::InspectArgs),
    /// Dump event streams to a portable file, or load a dump into a cluster (each service's
    /// binary replays a dump through its handlers: `<service> replay --help`).
    Replay(crate::replay::ReplayArgs),
    /// Every event of one saga run (an order) across its topics, in causal and time order, with
    /// a verdict by the rules of the saga file (sagas/).
    Trace(crate::trace::TraceArgs),
    /// Dead letters: list them grouped by topic, group and reason, show them, redrive them.
    Dlq(crate::dlq::DlqArgs),
    /// Lag per consumer group and partition, and outbox backlog per service database.
    Lag(crate::lag::LagArgs),
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    /// The service whose outbox this is (names its Kafka transactional.id).
    #[arg(long)]
    pub service: String,
    /// The service's PostgreSQL database.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// How long a silent leader keeps the lead, in milliseconds.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(500..=600_000))]
    pub lease_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Show what `apply` would change, changing nothing.
    #[command(after_help = "Example:\n  choreo topics plan --dir topics")]
    Plan(TopicsArgs),
    /// Print the plan, then create missing topics, add partitions, align configs and make the
    /// broker's ACLs exactly those the specs' producers and consumers imply. Refuses the whole
    /// plan if any topic would need fewer partitions or another replication factor.
    #[command(after_help = "Example:\n  choreo topics apply --dir topics --brokers kafka-0:9092")]
    Apply(TopicsArgs),
}

#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// The folder of topic spec files (one <topic>.yaml per topic).
    #[arg(long, default_value = "topics")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct SchemasArgs {
    /// The folder of Avro schema files (*.avsc at any depth, one event record each).
    #[arg(long, global = true, default_value = "schemas")]
    pub schemas_dir: PathBuf,
    /// The folder of topic spec files, which say which events travel on which topic.
    #[arg(long, global = true, default_value = "topics")]
    pub topics_dir: PathBuf,
    /// The schema registry's Confluent API base URL (not needed for `check --against`).
    #[arg(long, global = true, env = "SCHEMA_REGISTRY_URL")]
    pub registry: Option<String>,
    #[command(subcommand)]
    pub command: SchemasCommand,
}

#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Set every subject to BACKWARD_TRANSITIVE and register its schema; a schema already
    /// registered keeps its id.
    #[command(after_help = SCHEMAS_REGISTER_HELP)]
    Register,
    /// Check that every schema reads all events written with earlier versions: against the
    /// registry, or offline against git history with --against.
    #[command(after_help = SCHEMAS_CHECK_HELP)]
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Check offline against every version in git history up to and including this ref (a
    /// commit, branch or tag), instead of against the registry.
    #[arg(long, value_name = "GIT_REF")]
    pub against: Option<String>,
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

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let timeout = Duration::from_secs(cli.cluster.timeout);
    match cli.command {
        Command::Topics(command) => {
            let kafka = cli.cluster.kafka()?;
            match command {
                TopicsCommand::Plan(args) => topics_run(&kafka, &args, timeout, false).await,
                TopicsCommand::Apply(args) => topics_run(&kafka, &args, timeout, true).await,
            }
        }
        Command::Schemas(args) => schemas_run(args, timeout).await,
        Command::Relay(args) => {
            let kafka = cli.cluster.kafka()?;
            relay_run(&kafka, args).await
        }
        Command::Inspect(args) => crate::inspect::run(&cli.cluster, args).await,
        Command::Replay(args) => crate::replay::run(&cli.cluster, args).await,
        Command::Trace(args) => crate::trace::run(&cli.cluster, args).await,
        Command::Dlq(args) => crate::dlq::run(&cli.cluster, args).await,
        Command::Lag(args) => crate::lag::run(&cli.cluster, args).await,
    }
}

async fn relay_run(kafka: &choreo::KafkaConfig, args: RelayArgs) -> Result<(), Failure> {
    let shutdown = choreo::shutdown::on_signal().map_err(|e| Failure::Error(e.into()))?;
    let config = choreo::relay::RelayConfig {
        lease: Duration::from_millis(args.lease_ms),
        ..choreo::relay::RelayConfig::new(&args.service)
    };
    choreo::relay::Relay::new(&args.database_url, kafka, config)
        .run(shutdown)
        .await
        .map_err(|e| Failure::Error(e.into()))
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
    let acls = topics::acl::cluster::plan_against(&admin, &specs, timeout).await?;
    println!("{acls}");
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
    if plan.is_empty() && acls.is_empty() {
        println!("No changes: the cluster matches the specs.");
        return Ok(());
    }
    if !plan.is_empty() {
        topics::cluster::apply(&admin, &specs, &plan, timeout).await?;
    }
    topics::acl::cluster::apply(&admin, &specs, &acls, timeout).await?;
    println!("Applied: the cluster now matches the specs.");
    Ok(())
}

async fn schemas_run(args: SchemasArgs, timeout: Duration) -> Result<(), Failure> {
    let catalog = schemas::load(&args.schemas_dir, &args.topics_dir).map_err(|e| {
        let problems = e.to_string().replace('\n', "\n  ");
        Failure::BadInput(format!("the schemas cannot be used:\n  {problems}"))
    })?;
    let report = match args.command {
        SchemasCommand::Register => {
            let registry = registry(args.registry.as_deref(), timeout)?;
            let report = register::register(&catalog, &registry)
                .await
                .map_err(|e| Failure::Error(e.into()))?;
            println!("{report}");
            return refuse_if_any(report.refusals(), "the registry refused");
        }
        SchemasCommand::Check(CheckArgs {
            against: Some(reference),
        }) => {
            let repo = history::Repo::discover(&args.schemas_dir).map_err(git_failure)?;
            check::offline(&catalog, &repo, &reference).map_err(git_failure)?
        }
        SchemasCommand::Check(CheckArgs { against: None }) => {
            let registry = registry(args.registry.as_deref(), timeout)?;
            check::online(&catalog, &registry)
                .await
                .map_err(|e| Failure::Error(e.into()))?
        }
    };
    println!("{report}");
    refuse_if_any(
        report.breaks(),
        "schemas break BACKWARD_TRANSITIVE compatibility",
    )
}

fn refuse_if_any(reasons: Vec<String>, what: &str) -> Result<(), Failure> {
    if reasons.is_empty() {
        return Ok(());
    }
    Err(Failure::Refused(format!(
        "{what}:\n  {}",
        reasons.join("\n  ")
    )))
}

/// A ref or folder the user named is bad input; git failing otherwise is an error.
fn git_failure(error: history::GitError) -> Failure {
    match error {
        history::GitError::Failed { .. } => Failure::Error(error.into()),
        _ => Failure::BadInput(error.to_string()),
    }
}
