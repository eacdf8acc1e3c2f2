//! ACLs as code against the secured stack: after `choreo topics apply`, the broker lets the
//! declared producer write a topic, refuses a service that only consumes it, and refuses a
//! client that cannot log in at all (a forged event from an unknown principal).
//!
//! Needs the stack with SASL and the StandardAuthorizer (`scripts/stack up`, the default) and its
//! per-service logins (`$STACK_DIR/secrets/kafka-<service>`). Against a plaintext broker, or one
//! without an authorizer, the test says why and passes without asserting anything.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use choreo::config::{KafkaSecurity, SaslLogin, SecurityProtocol};
use choreo::KafkaConfig;
use choreo_cli::topics::acl::{broker, desired_acls};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

/// The declared producer and the consumer of the test's topic: two of the stack's logins.
const PRODUCER: &str = "order";
const CONSUMER: &str = "inventory";

/// A fresh topic spec produced by [`PRODUCER`] and consumed by [`CONSUMER`]; dropping it deletes
/// the folder, the topic and the ACLs on the topic and its dead-letter topic (never the ACLs on
/// the groups and transactional ids it shares with the stack's own specs).
struct Fixture {
    dir: PathBuf,
    topic: String,
    admin: KafkaConfig,
}

impl Fixture {
    fn new(admin: KafkaConfig) -> Self {
        let topic = format!("test.acl.{}", uuid::Uuid::now_v7().simple());
        let dir =
            std::env::temp_dir().join(format!("choreo-acl-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "name: {topic}\ndescription: A topic of the ACL test.\npartitions: 1\n\
             replication_factor: 1\nkey:\n  format: string\n  description: Anything.\n\
             events: [test.acl.Probe]\nproducer: {PRODUCER}\nconsumers: [{CONSUMER}]\n"
        );
        std::fs::write(dir.join(format!("{topic}.yaml")), text).unwrap();
        Self { dir, topic, admin }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let specs = choreo_cli::topics::load_dir(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
        let Ok(admin) = choreo::kafka::admin_config(&self.admin, "acl-test")
            .create::<AdminClient<DefaultClientContext>>()
        else {
            return;
        };
        if let Ok(specs) = specs {
            let own: Vec<_> = desired_acls(&specs)
                .into_iter()
                .filter(|acl| acl.name.starts_with(&self.topic))
                .collect();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let _ = broker::delete(&admin, &own, Duration::from_secs(10));
                let dlq = choreo::consumer::dlq::topic(&self.topic, CONSUMER);
                let _ = admin
                    .delete_topics(&[&self.topic, &dlq], &AdminOptions::new())
                    .await;
            });
        }
    }
}

/// The stack's operator settings, or why the test cannot run.
fn secured_stack() -> Result<(KafkaConfig, PathBuf), String> {
    choreo::config::load_env_file();
    let kafka = KafkaConfig::from_env().map_err(|e| format!("no stack settings: {e}"))?;
    if !matches!(
        kafka.security.protocol,
        SecurityProtocol::SaslSsl | SecurityProtocol::SaslPlaintext
    ) {
        return Err(format!(
            "the stack's Kafka speaks {} (no SASL logins)",
            kafka.security.protocol.as_str()
        ));
    }
    let secrets = PathBuf::from(std::env::var("STACK_DIR").unwrap_or_else(|_| ".stack".into()))
        .join("secrets");
    for service in [PRODUCER, CONSUMER] {
        if !secrets.join(format!("kafka-{service}")).is_file() {
            return Err(format!("no login for {service} in {}", secrets.display()));
        }
    }
    Ok((kafka, secrets))
}

/// `kafka` logged in as `username` with `password`.
fn as_user(
    kafka: &KafkaConfig,
    username: &str,
    password: choreo::secret::SecretString,
) -> KafkaConfig {
    let mechanism = kafka
        .security
        .sasl
        .as_ref()
        .map_or_else(|| "SCRAM-SHA-512".to_owned(), |l| l.mechanism.clone());
    kafka.clone().with_security(KafkaSecurity {
        sasl: Some(SaslLogin {
            mechanism,
            username: username.to_owned(),
            password,
        }),
        ..kafka.security.clone()
    })
}

fn service(kafka: &KafkaConfig, secrets: &Path, name: &str) -> KafkaConfig {
    let password = choreo::secret::from_path(
        "KAFKA_SASL_PASSWORD_FILE",
        &secrets.join(format!("kafka-{name}")),
    )
    .unwrap();
    as_user(kafka, name, password)
}

/// What a producer saw: the delivery result and the client's errors (authentication fails there).
#[derive(Default)]
struct Recorder {
    delivery: Mutex<Option<Result<(), String>>>,
    errors: Mutex<Vec<String>>,
}

impl ClientContext for Recorder {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors
            .lock()
            .unwrap()
            .push(format!("{error}: {reason}"));
    }
}

impl ProducerContext for Recorder {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let outcome = result.as_ref().map(|_| ()).map_err(|(e, _)| e.to_string());
        *self.delivery.lock().unwrap() = Some(outcome);
    }
}

/// Sends one event to `topic` as `kafka`'s principal with the services' producer settings;
/// the delivery result and every client error seen until then.
fn produce(kafka: &KafkaConfig, topic: &str) -> (Result<(), String>, Vec<String>) {
    let producer: BaseProducer<Recorder> = choreo::kafka::producer_config(kafka, "acl-test")
        .set("message.timeout.ms", "8000")
        .create_with_context(Recorder::default())
        .expect("a producer");
    producer
        .send(BaseRecord::to(topic).key("k").payload("forged?"))
        .map_err(|(e, _)| e)
        .expect("queued");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        producer.poll(Duration::from_millis(100));
        if let Some(outcome) = producer.context().delivery.lock().unwrap().clone() {
            let errors = producer.context().errors.lock().unwrap().clone();
            return (outcome, errors);
        }
        assert!(Instant::now() < deadline, "no delivery report within 15 s");
    }
}

fn choreo(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_choreo"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("run choreo")
}

#[test]
fn only_the_declared_producer_may_write_and_an_unknown_principal_is_refused() {
    let (kafka, secrets) = match secured_stack() {
        Ok(found) => found,
        Err(why) => {
            println!("skipped: {why}; the ACL test needs the secured stack (scripts/stack up)");
            return;
        }
    };
    let fixture = Fixture::new(kafka.clone());
    let applied = choreo(&["topics", "apply"], &fixture.dir);
    let out = String::from_utf8_lossy(&applied.stdout);
    assert!(
        applied.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    if out.contains("the broker has no authorizer") {
        println!("skipped: the stack's broker has no authorizer");
        return;
    }
    let write = format!("allow User:{PRODUCER} Write topic {}", fixture.topic);
    assert!(out.contains(&format!("+ acl {write}")), "{out}");

    let (outcome, _) = produce(&service(&kafka, &secrets, CONSUMER), &fixture.topic);
    let refused = outcome.expect_err("a consumer-only service wrote the topic");
    assert!(refused.contains("TopicAuthorizationFailed"), "{refused}");

    let stranger = as_user(&kafka, "intruder", "not-a-password".to_owned().into());
    let (outcome, errors) = produce(&stranger, &fixture.topic);
    assert!(outcome.is_err(), "an unknown principal wrote the topic");
    assert!(
        errors.iter().any(|e| e.contains("Authentication")),
        "no authentication error: {errors:?}"
    );

    let (outcome, errors) = produce(&service(&kafka, &secrets, PRODUCER), &fixture.topic);
    assert_eq!(
        outcome,
        Ok(()),
        "the declared producer could not write: {errors:?}"
    );
}
