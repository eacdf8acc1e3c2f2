//! What the Rust sources say, found by scanning their text: the environment variables a binary
//! reads, the metric names registered on the backbone's registry, and the consumer's shutdown
//! grace. A renamed variable or metric changes what these return, so the checks follow the code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::files;

/// Every `.rs` file under `relative` (recursively), sorted.
pub fn rust_files(relative: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&files::path(relative), &mut out);
    out.sort();
    out
}

/// The concatenated text of every `.rs` file under `relative`.
pub fn rust_text(relative: &str) -> String {
    rust_files(relative)
        .iter()
        .map(|file| std::fs::read_to_string(file).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The string literal that follows each occurrence of `marker` (whitespace between them
/// allowed); occurrences not followed by a literal are skipped.
pub fn literals_after(text: &str, marker: &str) -> Vec<String> {
    text.match_indices(marker)
        .filter_map(|(at, _)| {
            let rest = text[at + marker.len()..].trim_start();
            let rest = rest.strip_prefix('"')?;
            rest.find('"').map(|end| rest[..end].to_owned())
        })
        .collect()
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Names read directly in `text`: clap `env = "..."`, `env::var("...")`, `try_from_env("...")`,
/// secrets read with `secret::read("X")` or `secret::required("X")` (`X` and `X_FILE`, see
/// `choreo::secret`), and `RUST_LOG` wherever tracing's default filter variable is used.
fn names_read_in(text: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ["env = ", "env::var(", "try_from_env("]
        .iter()
        .flat_map(|marker| literals_after(text, marker))
        .filter(|name| is_env_name(name))
        .collect();
    for secret in ["secret::read(", "secret::required("]
        .iter()
        .flat_map(|marker| literals_after(text, marker))
        .filter(|name| is_env_name(name))
    {
        names.insert(format!("{secret}_FILE"));
        names.insert(secret);
    }
    if text.contains("try_from_default_env") || text.contains("init_tracing") {
        names.insert("RUST_LOG".to_owned());
    }
    names
}

/// The backbone's variable-name constants (`pub const X_VAR: &str = "NAME"`, also inside an
/// `impl`) by identifier; a secret's (a name ending in PASSWORD, TOKEN or SECRET, read with
/// `choreo::secret`) comes with its `_FILE` twin.
pub fn backbone_var_consts() -> Vec<(String, Vec<String>)> {
    let text = rust_text("crates/choreo/src");
    let mut consts = Vec::new();
    for marker in [": &'static str =", ": &str ="] {
        for (at, _) in text.match_indices(marker) {
            let ident: String = text[..at]
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if !ident.ends_with("_VAR") {
                continue;
            }
            let Some(value) = literals_after(&text[at..], marker).into_iter().next() else {
                continue;
            };
            if !is_env_name(&value) {
                continue;
            }
            let mut values = vec![value.clone()];
            if ["PASSWORD", "TOKEN", "SECRET"]
                .iter()
                .any(|s| value.ends_with(s))
            {
                values.push(format!("{value}_FILE"));
            }
            consts.push((ident, values));
        }
    }
    consts
}

/// The names of the backbone constants `text` uses by identifier (`auth::SERVICE_TOKEN_VAR`).
fn backbone_names_used_in(text: &str) -> BTreeSet<String> {
    backbone_var_consts()
        .into_iter()
        .filter(|(ident, _)| {
            text.match_indices(ident.as_str()).any(|(at, _)| {
                let before = text[..at].chars().next_back();
                !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .flat_map(|(_, values)| values)
        .collect()
}

/// The value of the backbone's config constant `name` (e.g. `BROKERS_VAR` -> `KAFKA_BROKERS`).
pub fn backbone_const(name: &str) -> String {
    let config = files::text("crates/choreo/src/config.rs");
    literals_after(&config, &format!("{name}: &'static str ="))
        .into_iter()
        .chain(literals_after(&config, &format!("{name}: &str =")))
        .next()
        .unwrap_or_else(|| panic!("crates/choreo/src/config.rs defines no {name}"))
}

/// What `ServiceSettings::from_env` reads: everything the backbone's service frame, config and
/// database helpers read (the broker, its security settings, the registry and its user, the
/// database URLs, the HTTP tokens).
pub fn service_settings_vars() -> BTreeSet<String> {
    let mut text = files::text("crates/choreo/src/service.rs");
    text.push_str(&rust_text("crates/choreo/src/service"));
    let mut names = names_read_in(&text);
    names.remove("RUST_LOG");
    for (_, values) in backbone_var_consts() {
        names.extend(values);
    }
    names
}

/// Whether `binary`'s crate starts the backbone's service frame (and so reads
/// [`service_settings_vars`]).
pub fn uses_service_settings(binary: &str) -> bool {
    rust_text(&src_of(binary)).contains("ServiceSettings::from_env")
}

/// Whether `binary` serves `/metrics` (the backbone's ops router, directly or via `Service` or
/// `Frame`).
pub fn serves_metrics(binary: &str) -> bool {
    let text = rust_text(&src_of(binary));
    text.contains("ops::router")
        || text.contains("Service::connect")
        || text.contains("Frame::connect")
}

fn src_of(binary: &str) -> String {
    let dir = crate::crate_of(binary).unwrap_or_else(|| panic!("{binary} is no shop binary"));
    format!("{dir}/src")
}

/// Every environment variable `binary` reads: its own sources, the backbone's env file variable,
/// and the service settings when it uses them.
pub fn env_names_read(binary: &str) -> BTreeSet<String> {
    let text = rust_text(&src_of(binary));
    let mut names = names_read_in(&text);
    names.extend(backbone_names_used_in(&text));
    // The backbone's Kafka and registry configs, read whole (KafkaSecurity::from_env, ...).
    if [
        "KafkaSecurity",
        "KafkaConfig",
        "RegistryConfig",
        "registry_config(",
    ]
    .iter()
    .any(|used| text.contains(used))
    {
        for (_, values) in backbone_var_consts() {
            names.extend(values);
        }
    }
    names.insert(backbone_const("ENV_FILE_VAR"));
    if uses_service_settings(binary) {
        names.extend(service_settings_vars());
    }
    // The service frame migrates as the role of DATABASE_MIGRATION_URL when it is set
    // (choreo::db::connect_migrated), whoever builds the frame's settings.
    if text.contains("Frame::connect") {
        let db = files::text("crates/choreo/src/db.rs");
        names.extend(literals_after(&db, "MIGRATION_URL_VAR: &str ="));
    }
    // Every service's subscriber honours OpenTelemetry's standard variables
    // (choreo::telemetry::OTEL_VARS).
    if text.contains("init_tracing(") {
        names.extend(otel_vars());
    }
    // sqlx reads the password of a URL without one from PGPASSFILE (a pgpass file).
    if names.contains("DATABASE_URL") {
        names.insert("PGPASSFILE".to_owned());
    }
    names
}

/// The OpenTelemetry variables `choreo::telemetry::OTEL_VARS` lists.
pub fn otel_vars() -> BTreeSet<String> {
    let telemetry = files::text("crates/choreo/src/telemetry.rs");
    let at = telemetry
        .find("OTEL_VARS: &[&str] = &[")
        .expect("choreo::telemetry lists OTEL_VARS");
    let list = &telemetry[at..];
    let list = &list[..list.find("];").expect("the list ends")];
    list.split('"')
        .skip(1)
        .step_by(2)
        .filter(|name| is_env_name(name))
        .map(str::to_owned)
        .collect()
}

/// Every metric name served on `/metrics`: those the backbone's `Metrics` registers and those
/// the services register on its registry, with the registry's prefix (`choreo_`).
pub fn metric_names() -> BTreeSet<String> {
    let backbone = files::text("crates/choreo/src/metrics.rs");
    let at = backbone
        .find("Registry::new_custom(")
        .expect("the backbone builds its registry with Registry::new_custom");
    let prefix = literals_after(&backbone[at..], "Some(")
        .into_iter()
        .next()
        .expect("the backbone's registry has a prefix");
    let mut text = backbone;
    for (_, dir) in crate::BINARIES {
        text.push_str(&rust_text(&format!("{dir}/src")));
    }
    [
        "Gauge::new(",
        "IntCounter::new(",
        "Counter::new(",
        "Opts::new(",
        "HistogramOpts::new(",
    ]
    .iter()
    .flat_map(|marker| literals_after(&text, marker))
    .filter(|name| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    })
    .map(|name| format!("{prefix}_{name}"))
    .collect()
}

/// The consumer runner's default shutdown grace, in seconds (`ConsumerConfig::new`).
pub fn consumer_grace_secs() -> u64 {
    let consumer = files::text("crates/choreo/src/consumer/mod.rs");
    let at = consumer
        .find("grace: Duration::from_secs(")
        .expect("ConsumerConfig sets a grace in seconds");
    let rest = &consumer[at + "grace: Duration::from_secs(".len()..];
    rest[..rest.find(')').expect("a closing parenthesis")]
        .replace('_', "")
        .parse()
        .expect("the grace is a whole number of seconds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_literal_is_read_after_its_marker_across_whitespace() {
        let text = "#[arg(long, env = \"HTTP_ADDR\")]\n env =\n  \"X_Y\" env = none";
        assert_eq!(literals_after(text, "env ="), ["HTTP_ADDR", "X_Y"]);
    }

    #[test]
    fn a_secret_is_read_from_its_variable_or_its_file() {
        let names = names_read_in(r#"secret::required("GATEWAY_JWT_SECRET")"#);
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["GATEWAY_JWT_SECRET", "GATEWAY_JWT_SECRET_FILE"]
        );
    }

    #[test]
    fn only_upper_case_names_count_as_variables() {
        let names = names_read_in(r#"env = "lower" env::var("DATABASE_URL")"#);
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["DATABASE_URL"]);
    }
}
