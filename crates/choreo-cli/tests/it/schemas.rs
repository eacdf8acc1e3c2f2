//! `choreo schemas register|check` driven through the binary as a user would: against the real
//! schema registry for `register` and `check`, and against a throwaway git repository for
//! `check --against`.
//!
//! Each test has its own folder of schemas and topic specs, in a git repository of its own, with
//! a topic named `test.schemas.<uuid>`, so its subjects are its own; they are deleted afterwards.
//! Needs the stack: `scripts/stack up` (scripts/test brings it up).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RECORD: &str = "test.schemas.Probe";

/// A temporary repository holding `schemas/` and `topics/` for one topic with one event,
/// `test.schemas.Probe`; deletes the folder and the event's subject when dropped.
struct Workspace {
    root: PathBuf,
    topic: String,
}

impl Workspace {
    fn new() -> Self {
        let id = uuid::Uuid::now_v7().simple();
        let root = std::env::temp_dir().join(format!("choreo-schemas-{id}"));
        std::fs::create_dir_all(root.join("schemas/probe")).unwrap();
        std::fs::create_dir_all(root.join("topics")).unwrap();
        let workspace = Self {
            root,
            topic: format!("test.schemas.{id}"),
        };
        let spec = format!(
            "name: {topic}\ndescription: A topic of the schemas test.\npartitions: 1\n\
             replication_factor: 1\nkey:\n  format: string\n  description: The order id.\n\
             events: [{RECORD}]\nproducer: tester\n",
            topic = workspace.topic
        );
        std::fs::write(
            workspace
                .topics_dir()
                .join(format!("{}.yaml", workspace.topic)),
            spec,
        )
        .unwrap();
        workspace.git(&["init", "--quiet"]);
        workspace
    }

    fn schemas_dir(&self) -> PathBuf {
        self.root.join("schemas")
    }

    fn topics_dir(&self) -> PathBuf {
        self.root.join("topics")
    }

    fn schema_file(&self) -> PathBuf {
        self.schemas_dir().join("probe/Probe.avsc")
    }

    fn subject(&self) -> String {
        format!("{}-{RECORD}", self.topic)
    }

    /// Writes (or rewrites) the Probe record with `order_id` and the given extra fields.
    fn write_schema(&self, extra_fields: &str) {
        let text = format!(
            r#"{{
  "type": "record",
  "name": "Probe",
  "namespace": "test.schemas",
  "doc": "A record of the schemas test.",
  "fields": [
    {{"name": "order_id", "type": "string", "doc": "The order."}}{extra_fields}
  ]
}}
"#
        );
        std::fs::write(self.schema_file(), text).unwrap();
    }

    fn commit(&self, message: &str) {
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--message", message]);
    }

    fn git(&self, args: &[&str]) {
        let output = Command::new("git")
            .current_dir(&self.root)
            .args([
                "-c",
                "user.name=Schemas Test",
                "-c",
                "user.email=schemas-test@example.com",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .output()
            .expect("run git");
        assert!(output.status.success(), "git {args:?}: {}", stderr(&output));
    }

    /// Runs `choreo schemas <args>` on this workspace against `registry`.
    fn choreo_with(&self, registry: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_choreo"))
            .arg("schemas")
            .args(args)
            .arg("--schemas-dir")
            .arg(self.schemas_dir())
            .arg("--topics-dir")
            .arg(self.topics_dir())
            .env("SCHEMA_REGISTRY_URL", registry)
            .output()
            .expect("run choreo")
    }

    /// Runs `choreo schemas <args>` on this workspace against the stack's registry.
    fn choreo(&self, args: &[&str]) -> Output {
        self.choreo_with(&registry().url, args)
    }

    /// Runs `choreo schemas <args>` against the stack's registry as `user` (its password in
    /// `password_file`), or with no credentials at all when `user` is `None`. Empty variables
    /// are set rather than removed, so the env file cannot fill them back in.
    fn choreo_as(&self, user: Option<(&str, &Path)>, args: &[&str]) -> Output {
        let (name, file) = user
            .map(|(name, file)| (name.to_owned(), file.display().to_string()))
            .unwrap_or_default();
        Command::new(env!("CARGO_BIN_EXE_choreo"))
            .arg("schemas")
            .args(args)
            .arg("--schemas-dir")
            .arg(self.schemas_dir())
            .arg("--topics-dir")
            .arg(self.topics_dir())
            .env("SCHEMA_REGISTRY_URL", registry().url)
            .env("SCHEMA_REGISTRY_USERNAME", name)
            .env("SCHEMA_REGISTRY_PASSWORD_FILE", file)
            .env("SCHEMA_REGISTRY_PASSWORD", "")
            .output()
            .expect("run choreo")
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
        delete_subject(&self.subject());
    }
}

/// Removes a subject for good (Apicurio, like Confluent, wants a soft delete first).
fn delete_subject(subject: &str) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        let registry = registry();
        let client = reqwest::Client::new();
        let url = format!("{}/subjects/{subject}", registry.url);
        for url in [url.clone(), format!("{url}?permanent=true")] {
            let mut request = client.delete(url);
            if let Some(operator) = &registry.credentials {
                use choreo::secret::ExposeSecret as _;
                request =
                    request.basic_auth(&operator.username, Some(operator.password.expose_secret()));
            }
            let _ = request.send().await;
        }
    });
}

fn registry() -> choreo::RegistryConfig {
    choreo::config::load_env_file();
    choreo::RegistryConfig::from_env().expect("the stack's addresses (run scripts/stack up)")
}

/// An address where no registry answers, for commands that must not need one.
const NO_REGISTRY: &str = "http://127.0.0.1:1";

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that the command succeeded and that its report says each of `says`.
#[track_caller]
fn assert_done(output: &Output, says: &[&str]) {
    let (out, err) = (stdout(output), stderr(output));
    assert!(output.status.success(), "{out}{err}");
    for text in says {
        assert!(out.contains(text), "expected `{text}` in:\n{out}");
    }
}

/// Asserts that the command exited with `code` and that its error says each of `says`.
#[track_caller]
fn assert_failed(output: &Output, code: i32, says: &[&str]) {
    let (out, err) = (stdout(output), stderr(output));
    assert_eq!(output.status.code(), Some(code), "{out}{err}");
    for text in says {
        assert!(err.contains(text), "expected `{text}` in:\n{err}");
    }
}

/// The id in `... as id N ...` on the line of `subject`.
fn id_of(output: &Output, subject: &str) -> u32 {
    let text = stdout(output);
    let line = text
        .lines()
        .find(|l| l.contains(subject))
        .unwrap_or_else(|| panic!("no line for {subject} in:\n{text}"));
    let (_, after) = line.split_once("as id ").expect("an id");
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no id in {line}"))
}

const TOTAL_AS_LONG: &str = r#", {"name": "total_minor", "type": "long", "doc": "The total."}"#;
const TOTAL_AS_STRING: &str = r#", {"name": "total_minor", "type": "string", "doc": "The total."}"#;
const NOTE_WITH_DEFAULT: &str =
    r#", {"name": "note", "type": ["null", "string"], "default": null, "doc": "A note."}"#;
const GIFT_NOTE_REQUIRED: &str =
    r#", {"name": "gift_note", "type": "string", "doc": "A required note."}"#;

#[test]
fn registering_twice_keeps_the_same_id_and_adds_no_version() {
    let workspace = Workspace::new();
    workspace.write_schema(TOTAL_AS_LONG);
    let subject = workspace.subject();

    let first = workspace.choreo(&["register"]);
    assert_done(
        &first,
        &[
            &format!("+ {subject} ("),
            "Registered: 1 new, 0 already there, 0 refused",
        ],
    );

    let second = workspace.choreo(&["register"]);
    assert_done(
        &second,
        &[
            &format!("= {subject} ("),
            "(version 1)",
            "Registered: 0 new, 1 already there, 0 refused",
        ],
    );
    assert_eq!(id_of(&first, &subject), id_of(&second, &subject));

    let check = workspace.choreo(&["check"]);
    assert_done(&check, &[&format!("= {subject} ("), "unchanged"]);
}

#[test]
fn a_field_added_with_a_default_passes_both_checks_and_registers_a_new_version() {
    let workspace = Workspace::new();
    workspace.write_schema(TOTAL_AS_LONG);
    workspace.commit("v1");
    let first = workspace.choreo(&["register"]);
    assert_done(&first, &["Registered: 1 new"]);

    workspace.write_schema(&format!("{TOTAL_AS_LONG}{NOTE_WITH_DEFAULT}"));

    let online = workspace.choreo(&["check"]);
    assert_done(&online, &["compatible with 1 earlier version(s)"]);

    let offline = workspace.choreo_with(NO_REGISTRY, &["check", "--against", "HEAD"]);
    let file = workspace.schema_file();
    assert_done(
        &offline,
        &[&format!(
            "~ {} ({RECORD}): compatible with 1 earlier version(s)",
            file.display()
        )],
    );

    let second = workspace.choreo(&["register"]);
    assert_done(&second, &["Registered: 1 new"]);
    let subject = workspace.subject();
    assert_ne!(id_of(&first, &subject), id_of(&second, &subject));
}

#[test]
fn a_field_added_without_a_default_is_caught_online_offline_and_by_the_registry() {
    let workspace = Workspace::new();
    workspace.write_schema(TOTAL_AS_LONG);
    workspace.commit("v1");
    assert_done(&workspace.choreo(&["register"]), &[]);

    workspace.write_schema(&format!("{TOTAL_AS_LONG}{GIFT_NOTE_REQUIRED}"));
    let reason = "field `gift_note` was added without a default: a reader of the new schema \
                  cannot read old events that lack it";
    let (subject, file) = (workspace.subject(), workspace.schema_file());
    let (subject, file) = (subject.as_str(), file.display());

    let online = workspace.choreo(&["check"]);
    assert_failed(
        &online,
        3,
        &[&format!("{subject} ({file}): {reason} (against version 1)")],
    );

    let offline = workspace.choreo_with(NO_REGISTRY, &["check", "--against", "HEAD"]);
    assert_failed(
        &offline,
        3,
        &[&format!("{file} ({RECORD}): {reason} (against commit ")],
    );

    let refused = workspace.choreo(&["register"]);
    assert_failed(
        &refused,
        3,
        &[
            &format!("the registry refused:\n  {subject} ({file}): {reason}"),
            &format!("{subject} ({file}): the registry says: "),
        ],
    );
}

#[test]
fn a_type_changed_from_long_to_string_is_caught_online_and_offline() {
    let workspace = Workspace::new();
    workspace.write_schema(TOTAL_AS_LONG);
    workspace.commit("v1");
    assert_done(&workspace.choreo(&["register"]), &[]);

    workspace.write_schema(TOTAL_AS_STRING);
    let reason = "field `total_minor` changed type from long to string: a reader of the new \
                  schema cannot read old events that hold a long";
    let (subject, file) = (workspace.subject(), workspace.schema_file());
    let (subject, file) = (subject.as_str(), file.display());

    let online = workspace.choreo(&["check"]);
    assert_failed(&online, 3, &[&format!("{subject} ({file}): {reason}")]);

    let offline = workspace.choreo_with(NO_REGISTRY, &["check", "--against", "HEAD"]);
    assert_failed(&offline, 3, &[&format!("{file} ({RECORD}): {reason}")]);
}

#[test]
fn a_required_field_removed_is_caught_online_and_offline_though_the_registry_allows_it() {
    let workspace = Workspace::new();
    workspace.write_schema(&format!("{TOTAL_AS_LONG}{GIFT_NOTE_REQUIRED}"));
    workspace.commit("v1");
    assert_done(&workspace.choreo(&["register"]), &[]);

    workspace.write_schema(TOTAL_AS_LONG);
    let reason = "field `gift_note` was removed but has no default in the old schema: consumers \
                  still on the old schema cannot read new events that lack it";
    let (subject, file) = (workspace.subject(), workspace.schema_file());
    let (subject, file) = (subject.as_str(), file.display());

    let online = workspace.choreo(&["check"]);
    assert_failed(&online, 3, &[&format!("{subject} ({file}): {reason}")]);

    let offline = workspace.choreo_with(NO_REGISTRY, &["check", "--against", "HEAD"]);
    assert_failed(&offline, 3, &[&format!("{file} ({RECORD}): {reason}")]);
}

#[test]
fn a_schema_that_reads_the_latest_version_but_not_an_older_one_breaks_transitively() {
    let workspace = Workspace::new();
    workspace.write_schema("");
    workspace.commit("v1");
    assert_done(&workspace.choreo(&["register"]), &[]);
    workspace
        .write_schema(r#", {"name": "note", "type": "string", "default": "", "doc": "A note."}"#);
    workspace.commit("v2: note with a default");
    assert_done(&workspace.choreo(&["register"]), &["Registered: 1 new"]);

    // v3 drops the default: it reads v2's events, which all carry `note`, but not v1's.
    workspace.write_schema(r#", {"name": "note", "type": "string", "doc": "A note."}"#);
    let reason = "field `note` was added without a default";

    let online = workspace.choreo(&["check"]);
    assert_failed(&online, 3, &[reason, "(against version 1)"]);

    let offline = workspace.choreo_with(NO_REGISTRY, &["check", "--against", "HEAD"]);
    assert_failed(&offline, 3, &[reason]);
    assert_eq!(
        stderr(&offline).matches("(against commit ").count(),
        1,
        "only v1 breaks: {}",
        stderr(&offline)
    );
}

#[test]
fn a_schema_that_did_not_exist_at_the_ref_is_new_offline() {
    let workspace = Workspace::new();
    std::fs::write(workspace.root.join("README"), "before the schema\n").unwrap();
    workspace.commit("no schema yet");
    workspace.write_schema(GIFT_NOTE_REQUIRED);

    let offline = workspace.choreo_with(NO_REGISTRY, &["check", "--against", "HEAD"]);
    assert_done(
        &offline,
        &["Check: 1 new, 0 unchanged, 0 compatible, 0 breaking."],
    );
}

#[test]
fn an_unknown_git_ref_is_bad_input_with_a_clear_message() {
    let workspace = Workspace::new();
    workspace.write_schema("");
    workspace.commit("v1");

    let output = workspace.choreo_with(NO_REGISTRY, &["check", "--against", "no-such-branch"]);
    assert_failed(
        &output,
        2,
        &["`no-such-branch` is not a commit in the git repository at"],
    );
}

#[test]
fn a_schema_file_on_no_topic_is_bad_input_before_the_registry_is_asked() {
    let workspace = Workspace::new();
    workspace.write_schema("");
    let stray = workspace.schemas_dir().join("probe/Stray.avsc");
    std::fs::write(
        &stray,
        r#"{"type":"record","name":"Stray","namespace":"test.schemas","fields":[]}"#,
    )
    .unwrap();

    let output = workspace.choreo_with(NO_REGISTRY, &["register"]);
    assert_failed(
        &output,
        2,
        &[&format!(
            "{}: `test.schemas.Stray` is on no topic",
            stray.display()
        )],
    );
}

#[test]
fn a_register_without_credentials_or_by_a_service_is_refused_and_the_operators_works() {
    let workspace = Workspace::new();
    workspace.write_schema(TOTAL_AS_LONG);
    let subject = workspace.subject();

    let anonymous = workspace.choreo_as(None, &["register"]);
    assert_failed(&anonymous, 1, &[&subject, "401"]);

    let stack_dir = std::env::var("STACK_DIR").expect("STACK_DIR in the stack's env file");
    let order_password = Path::new(&stack_dir).join("secrets/registry-order");
    let service = workspace.choreo_as(Some(("order", &order_password)), &["register"]);
    assert_failed(&service, 1, &[&subject, "403"]);
    let check = workspace.choreo_as(Some(("order", &order_password)), &["check"]);
    assert_done(&check, &[&format!("+ {subject} (")]);

    let operator = registry()
        .credentials
        .expect("the operator's credentials in the env file");
    let password_file =
        std::env::var("SCHEMA_REGISTRY_PASSWORD_FILE").expect("the operator's password file");
    let registered = workspace.choreo_as(
        Some((&operator.username, Path::new(&password_file))),
        &["register"],
    );
    assert_done(
        &registered,
        &["Registered: 1 new, 0 already there, 0 refused"],
    );
}

#[test]
fn an_unreachable_registry_is_an_error_that_names_it() {
    let workspace = Workspace::new();
    workspace.write_schema("");

    let output = workspace.choreo_with(NO_REGISTRY, &["check", "--timeout", "2"]);
    assert_failed(
        &output,
        1,
        &["the schema registry at http://127.0.0.1:1 is unreachable"],
    );
}

#[test]
fn the_shop_schemas_make_a_catalog_with_a_subject_per_event() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let catalog = choreo_cli::schemas::load(&root.join("schemas"), &root.join("topics"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(catalog
        .subjects
        .iter()
        .any(|s| s.name == "shop.orders.v1-shop.order.OrderPlaced"));
}
