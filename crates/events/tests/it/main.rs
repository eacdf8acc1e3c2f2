//! Integration tests of the shop's events, one binary with a module per concern: [`schemas`]
//! checks the generated types against their own .avsc files (no stack needed); [`interop`] sends
//! them through the real broker and registry to and from another Avro implementation, Confluent's
//! Python client, driven through [`python`] (needs `scripts/stack up`, which also installs that
//! client; addresses and the interpreter come from .stack/env).

mod interop;
mod python;
mod schemas;

use std::time::Duration;

use choreo::kafka::admin_config;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// How long any one step against the stack may take.
const WAIT: Duration = Duration::from_secs(30);

fn kafka() -> choreo::KafkaConfig {
    choreo::config::load_env_file();
    choreo::KafkaConfig::from_env().expect("the stack's addresses (run scripts/stack up)")
}

fn registry() -> choreo::RegistryConfig {
    choreo::config::load_env_file();
    choreo::RegistryConfig::from_env().expect("the stack's addresses (run scripts/stack up)")
}

/// A name no other test run uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}.{}", uuid::Uuid::now_v7().simple())
}

/// A fresh topic for one test, deleted when dropped.
struct TestTopic {
    name: String,
    admin: AdminClient<DefaultClientContext>,
}

impl TestTopic {
    async fn create(prefix: &str, partitions: i32) -> Self {
        let name = unique(prefix);
        let admin: AdminClient<DefaultClientContext> = admin_config(&kafka(), "events-test")
            .create()
            .expect("admin client");
        let options = AdminOptions::new().operation_timeout(Some(WAIT));
        let results = admin
            .create_topics(
                &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
                &options,
            )
            .await
            .expect("create topic");
        for result in results {
            result.expect("topic created");
        }
        Self { name, admin }
    }
}

impl Drop for TestTopic {
    fn drop(&mut self) {
        // Best effort: the request is sent even if nobody awaits the answer.
        drop(
            self.admin
                .delete_topics(&[&self.name], &AdminOptions::new()),
        );
    }
}
