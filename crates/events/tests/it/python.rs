//! The Python side of the interop tests: scripts/interop/avro_interop.py, run with the venv that
//! `scripts/stack up` installs (its interpreter is INTEROP_PYTHON in .stack/env), and the shape
//! of the JSON lines its `consume` prints.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use crate::{kafka, registry, WAIT};

/// One line of `avro_interop.py consume`: a record as Python's AvroDeserializer read it, with
/// timestamps as epoch milliseconds.
#[derive(Debug, PartialEq, Eq, Deserialize)]
pub struct Record {
    /// The writer schema's full name, e.g. `shop.order.OrderPlaced`.
    pub record: String,
    /// The Kafka key, as UTF-8.
    pub key: String,
    /// The schema id in the value's wire-format header.
    pub schema_id: u32,
    pub value: Value,
}

/// avro_interop.py and the interpreter that runs it.
pub struct Python {
    interpreter: PathBuf,
    script: PathBuf,
}

impl Python {
    /// The interpreter named by INTEROP_PYTHON; panics, saying what to run, when there is none.
    pub fn find() -> Self {
        choreo::config::load_env_file();
        let hint = "run scripts/stack up, which installs the Python interop client and writes \
                    INTEROP_PYTHON to .stack/env";
        let interpreter = std::env::var_os("INTEROP_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("INTEROP_PYTHON is not set: {hint}"));
        assert!(
            interpreter.is_file(),
            "INTEROP_PYTHON={} does not exist: {hint}",
            interpreter.display()
        );
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/interop/avro_interop.py");
        Self {
            interpreter,
            script,
        }
    }

    /// `produce`: `count` deterministic events of type `event` on `topic`.
    pub async fn produce(&self, topic: &str, event: &str, count: i64) {
        let count = count.to_string();
        let args = ["--topic", topic, "--event", event, "--count", &count];
        self.run("produce", &args).await;
    }

    /// `consume`: the first `count` records of `topic`, as Python read them.
    pub async fn consume(&self, topic: &str, count: usize) -> Vec<Record> {
        let count = count.to_string();
        let output = self
            .run("consume", &["--topic", topic, "--count", &count])
            .await;
        output
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// Runs one command against the stack; its stdout, or a panic showing its stderr. The tool
    /// gives up on its own after WAIT; the test waits twice that at most.
    async fn run(&self, command: &str, args: &[&str]) -> String {
        let mut process = Command::new(&self.interpreter);
        process
            .arg(&self.script)
            .arg(command)
            .args(args)
            .args(["--brokers", &kafka().brokers])
            .args(["--registry", &registry().url])
            .args(["--timeout", &WAIT.as_secs().to_string()]);
        let output = tokio::time::timeout(
            2 * WAIT,
            tokio::task::spawn_blocking(move || process.output()),
        )
        .await
        .expect("avro_interop.py exits within its own deadline")
        .expect("the waiting task")
        .unwrap_or_else(|e| panic!("{} does not run: {e}", self.interpreter.display()));
        assert!(
            output.status.success(),
            "avro_interop.py {command} {} failed ({}):\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }
}
