//! `choreo topics plan|apply` against the real broker, driven through the binary as a user would.
//!
//! Needs the stack: `scripts/stack up` (scripts/test brings it up).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

/// A temporary folder of specs for topics with names of their own; deletes both when dropped.
struct SpecDir {
    dir: PathBuf,
    topics: Vec<String>,
}

impl SpecDir {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("choreo-topics-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            dir,
            topics: Vec::new(),
        }
    }

    /// Writes (or rewrites) the spec of topic `name`.
    fn write(&mut self, name: &str, partitions: u32, replication_factor: u16, retention_ms: u64) {
        let text = format!(
            "name: {name}\ndescription: A topic of the topics test.\npartitions: {partitions}\n\
             replication_factor: {replication_factor}\nconfigs:\n  cleanup.policy: delete\n  \
             retention.ms: {retention_ms}\nkey:\n  format: string\n  description: The order id.\n\
             events: [test.topics.Probe]\nproducer: tester\nconsumers: [reader]\n"
        );
        std::fs::write(self.dir.join(format!("{name}.yaml")), text).unwrap();
        if !self.topics.iter().any(|t| t == name) {
            self.topics.push(name.to_owned());
        }
    }
}

impl SpecDir {
    /// The specs written (those still readable).
    fn specs(&self) -> Vec<choreo_cli::topics::TopicSpec> {
        choreo_cli::topics::load_dir(&self.dir).unwrap_or_default()
    }
}

impl Drop for SpecDir {
    fn drop(&mut self) {
        let specs = self.specs();
        let _ = std::fs::remove_dir_all(&self.dir);
        let Ok(kafka) = choreo::KafkaConfig::from_env() else {
            return;
        };
        if let Ok(admin) = choreo::kafka::admin_config(&kafka, "topics-test")
            .create::<AdminClient<DefaultClientContext>>()
        {
            let names: Vec<&str> = self.topics.iter().map(String::as_str).collect();
            drop(admin.delete_topics(&names, &AdminOptions::new()));
            // The ACLs `apply` granted on these topics and their dead-letter topics (a broker
            // without an authorizer has none; the request then fails, which is fine).
            let acls: Vec<_> = choreo_cli::topics::acl::desired_acls(&specs)
                .into_iter()
                .filter(|acl| self.topics.iter().any(|t| acl.name.starts_with(t.as_str())))
                .collect();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    let _ = choreo_cli::topics::acl::broker::delete(
                        &admin,
                        &acls,
                        std::time::Duration::from_secs(10),
                    );
                });
            }
        }
    }
}

fn kafka() -> choreo::KafkaConfig {
    choreo::config::load_env_file();
    choreo::KafkaConfig::from_env().expect("the stack's addresses (run scripts/stack up)")
}

fn unique_topic() -> String {
    format!("test.topics.{}", uuid::Uuid::now_v7().simple())
}

fn choreo(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_choreo"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env("KAFKA_BROKERS", kafka().brokers)
        .output()
        .expect("run choreo")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn applying_twice_creates_once_and_then_reports_no_change() {
    let mut specs = SpecDir::new();
    let (a, b) = (unique_topic(), unique_topic());
    specs.write(&a, 3, 1, 3_600_000);
    specs.write(&b, 2, 1, 3_600_000);

    let first = choreo(&["topics", "apply"], &specs.dir);
    assert!(
        first.status.success(),
        "{}{}",
        stdout(&first),
        stderr(&first)
    );
    assert!(
        stdout(&first).contains(&format!("+ create {a}: 3 partitions")),
        "{}",
        stdout(&first)
    );
    assert!(
        stdout(&first).contains("Plan: 2 to create, 0 to change, 0 up to date"),
        "{}",
        stdout(&first)
    );

    let second = choreo(&["topics", "apply"], &specs.dir);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stdout(&second).contains("Plan: 0 to create, 0 to change, 2 up to date"),
        "{}",
        stdout(&second)
    );
    assert!(
        stdout(&second).contains("No changes"),
        "{}",
        stdout(&second)
    );
}

#[test]
fn partitions_are_raised_and_configs_aligned_in_place() {
    let mut specs = SpecDir::new();
    let topic = unique_topic();
    specs.write(&topic, 2, 1, 3_600_000);
    assert!(choreo(&["topics", "apply"], &specs.dir).status.success());

    specs.write(&topic, 4, 1, 7_200_000);
    let plan = choreo(&["topics", "plan"], &specs.dir);
    assert!(plan.status.success(), "{}", stderr(&plan));
    assert!(
        stdout(&plan).contains(&format!("~ {topic}: partitions 2 -> 4")),
        "{}",
        stdout(&plan)
    );
    assert!(
        stdout(&plan).contains(&format!("~ {topic}: retention.ms 3600000 -> 7200000")),
        "{}",
        stdout(&plan)
    );

    let apply = choreo(&["topics", "apply"], &specs.dir);
    assert!(apply.status.success(), "{}", stderr(&apply));
    let after = choreo(&["topics", "plan"], &specs.dir);
    assert!(
        stdout(&after).contains("0 to change, 1 up to date"),
        "{}",
        stdout(&after)
    );
}

#[test]
fn a_destructive_spec_is_refused_and_changes_nothing() {
    let mut specs = SpecDir::new();
    let topic = unique_topic();
    specs.write(&topic, 4, 1, 3_600_000);
    assert!(choreo(&["topics", "apply"], &specs.dir).status.success());

    // Fewer partitions, and a config change beside it that must not be applied either.
    specs.write(&topic, 2, 1, 60_000);
    let refused = choreo(&["topics", "apply"], &specs.dir);
    assert_eq!(
        refused.status.code(),
        Some(3),
        "{}{}",
        stdout(&refused),
        stderr(&refused)
    );
    assert!(
        stderr(&refused).contains(&format!(
            "refusing to shrink {topic} from 4 to 2 partitions"
        )),
        "{}",
        stderr(&refused)
    );

    specs.write(&topic, 4, 3, 3_600_000);
    let refused = choreo(&["topics", "apply"], &specs.dir);
    assert_eq!(refused.status.code(), Some(3));
    assert!(
        stderr(&refused).contains("refusing to change the replication factor"),
        "{}",
        stderr(&refused)
    );

    // The cluster still has what was applied first.
    specs.write(&topic, 4, 1, 3_600_000);
    let plan = choreo(&["topics", "plan"], &specs.dir);
    assert!(
        stdout(&plan).contains("0 to create, 0 to change, 1 up to date"),
        "{}",
        stdout(&plan)
    );
}

#[test]
fn a_bad_spec_file_is_named_with_its_field_before_the_cluster_is_asked() {
    let specs = SpecDir::new();
    let file = specs.dir.join("test.bad.yaml");
    std::fs::write(&file, "name: test.bad\ndescription: d\npartitions: -1\nreplication_factor: 1\nkey: {format: string, description: k}\nevents: [a.B]\nproducer: p\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_choreo"))
        .args(["topics", "plan", "--brokers", "127.0.0.1:1", "--dir"])
        .arg(&specs.dir)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains(&format!(
            "{}: field `partitions`: must be between 1 and 10000, got -1",
            file.display()
        )),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_unreachable_cluster_gives_a_clear_error() {
    let mut specs = SpecDir::new();
    specs.write(&unique_topic(), 1, 1, 3_600_000);
    let output = Command::new(env!("CARGO_BIN_EXE_choreo"))
        .args([
            "topics",
            "plan",
            "--brokers",
            "127.0.0.1:1",
            "--timeout",
            "2",
            "--dir",
        ])
        .arg(&specs.dir)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no Kafka broker answered at 127.0.0.1:1"),
        "{}",
        stderr(&output)
    );
}
