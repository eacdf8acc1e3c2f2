//! The deployment files hold together and match the code: compose services get the variables
//! their binaries read, Kubernetes objects select and probe each other correctly, KEDA scales the
//! right groups on the right topics, and the dashboard only asks for metrics that exist. Nothing
//! here runs Docker or a cluster; each test parses files and compares them.

use std::collections::{BTreeMap, BTreeSet};

use deploy_check::files::{self, keys, scalar, strings};
use deploy_check::source;
use serde_yaml_ng::Value;

// ---- shared readings -------------------------------------------------------------------------

const COMPOSE: &str = "compose/compose.yaml";
const BASE: &str = "deploy/base";
const OVERLAY: &str = "deploy/overlays/local";

/// A topic spec's name, partitions and consumer groups.
struct Topic {
    name: String,
    partitions: u64,
    consumers: Vec<String>,
}

fn topics() -> Vec<Topic> {
    let mut entries: Vec<_> = std::fs::read_dir(files::path("topics"))
        .expect("topics/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    entries.sort();
    entries
        .iter()
        .map(|file| {
            let spec = files::yaml(&format!("topics/{file}"));
            Topic {
                name: scalar(&spec["name"]).expect("a topic name"),
                partitions: spec["partitions"].as_u64().expect("partitions"),
                consumers: strings(&spec["consumers"]),
            }
        })
        .collect()
}

/// The consumer groups and the topics each reads, from topics/*.yaml.
fn consumer_groups() -> BTreeMap<String, BTreeSet<String>> {
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for topic in topics() {
        for group in topic.consumers {
            groups.entry(group).or_default().insert(topic.name.clone());
        }
    }
    groups
}

fn compose_services() -> BTreeMap<String, Value> {
    let compose = files::yaml(COMPOSE);
    let services = compose["services"].as_mapping().expect("compose services");
    services
        .iter()
        .map(|(name, spec)| (scalar(name).unwrap(), spec.clone()))
        .collect()
}

/// The shop binary a compose service runs (its image's build argument SERVICE).
fn binary_of(spec: &Value) -> Option<String> {
    scalar(&spec["build"]["args"]["SERVICE"])
}

fn compose_env(spec: &Value) -> BTreeMap<String, String> {
    spec["environment"]
        .as_mapping()
        .map(|env| {
            env.iter()
                .map(|(k, v)| (scalar(k).unwrap(), scalar(v).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// The Kafka client settings of a secured cluster (SASL_SSL, SCRAM-SHA-512, the CA).
const KAFKA_SECURITY: &[&str] = &[
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD_FILE",
    "KAFKA_SSL_CA_LOCATION",
];

/// The variables each binary must be given on Kubernetes (each is also checked to be read by
/// the code): the listen address, the addresses of what it calls, and its logins, every secret
/// as a `*_FILE` path (a mounted Secret), never a value.
fn needed_vars(binary: &str) -> BTreeSet<String> {
    let mut needed: BTreeSet<String> = BTreeSet::new();
    let registry_user = ["SCHEMA_REGISTRY_USERNAME", "SCHEMA_REGISTRY_PASSWORD_FILE"];
    if source::uses_service_settings(binary) {
        needed.extend(
            [
                "HTTP_ADDR",
                "KAFKA_BROKERS",
                "SCHEMA_REGISTRY_URL",
                "DATABASE_URL",
                "DATABASE_MIGRATION_URL",
                "SERVICE_TOKEN_FILE",
                "OPERATOR_TOKEN_FILE",
            ]
            .iter()
            .chain(KAFKA_SECURITY)
            .chain(&registry_user)
            .map(|s| (*s).to_owned()),
        );
    }
    let extra: &[&str] = match binary {
        "gateway" => &[
            "HTTP_ADDR",
            "METRICS_ADDR",
            "DATABASE_URL",
            "ORDER_URL",
            "PAYMENT_URL",
            "SHIPPING_URL",
            "GATEWAY_JWT_SECRET_FILE",
            "GATEWAY_JWT_ISSUER",
            "GATEWAY_JWT_AUDIENCE",
            "SERVICE_TOKEN_FILE",
        ],
        "payment" => &["PROVIDER_URL"],
        "provider-sim" => &["PROVIDER_ADDR"],
        "choreo" => &[
            "KAFKA_BROKERS",
            "SCHEMA_REGISTRY_URL",
            "KAFKA_SECURITY_PROTOCOL",
            "KAFKA_SASL_MECHANISM",
            "KAFKA_SASL_USERNAME",
            "KAFKA_SASL_PASSWORD_FILE",
            "KAFKA_SSL_CA_LOCATION",
            "SCHEMA_REGISTRY_USERNAME",
            "SCHEMA_REGISTRY_PASSWORD_FILE",
        ],
        _ => &[],
    };
    needed.extend(extra.iter().map(|s| (*s).to_owned()));
    needed
}

/// What compose must give each binary: the same, less the Kafka and PostgreSQL TLS settings
/// (compose's broker and database stay plaintext inside the compose network; see
/// compose/README.md) and the migration role.
fn compose_needed_vars(binary: &str) -> BTreeSet<String> {
    let mut needed = needed_vars(binary);
    for var in KAFKA_SECURITY.iter().chain(&["DATABASE_MIGRATION_URL"]) {
        needed.remove(*var);
    }
    needed
}

/// A variable that holds a secret by its name (a password, token or signing secret).
fn names_a_secret(var: &str) -> bool {
    ["PASSWORD", "TOKEN", "SECRET"]
        .iter()
        .any(|word| var.contains(word))
}

/// The port each binary listens on, from its listen address in compose.
fn listen_var(binary: &str) -> &'static str {
    if binary == "provider-sim" {
        "PROVIDER_ADDR"
    } else {
        "HTTP_ADDR"
    }
}

fn port_of_addr(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("`{addr}` has no port"))
}

/// `scheme://user:password@host:port/path` split into its parts.
struct Url {
    user: String,
    password: String,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Url {
    let (_, rest) = url.split_once("://").unwrap_or(("", url));
    let (auth, rest) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "80"));
    Url {
        user: user.to_owned(),
        password: password.to_owned(),
        host: host.to_owned(),
        port: port.parse().unwrap_or_else(|_| panic!("bad port in {url}")),
        path: path.to_owned(),
    }
}

/// The roles (= databases) the compose init script creates: the list its loop runs over.
fn init_databases() -> BTreeSet<String> {
    let script = files::text("compose/postgres/init.sh");
    script
        .lines()
        .find_map(|l| l.trim().strip_prefix("for db in "))
        .expect("compose/postgres/init.sh loops over the databases")
        .trim_end_matches("; do")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Every Kubernetes object of the base, by kind.
fn base_objects() -> Vec<Value> {
    let kustomization = files::yaml(&format!("{BASE}/kustomization.yaml"));
    strings(&kustomization["resources"])
        .iter()
        .flat_map(|file| files::yaml_docs(&format!("{BASE}/{file}")))
        .collect()
}

fn of_kind(objects: &[Value], kind: &str) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some(kind))
        .cloned()
        .collect()
}

fn name_of(object: &Value) -> String {
    scalar(&object["metadata"]["name"]).expect("metadata.name")
}

fn deployments() -> Vec<Value> {
    of_kind(&base_objects(), "Deployment")
}

fn first_container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

/// The binary a Deployment's (or Job's) container runs: its image `shop/<binary>`.
fn image_binary(container: &Value) -> String {
    let image = scalar(&container["image"]).expect("an image");
    image
        .strip_prefix("shop/")
        .unwrap_or_else(|| panic!("image {image} is not a shop image"))
        .split(':')
        .next()
        .unwrap()
        .to_owned()
}

fn container_ports(container: &Value) -> BTreeMap<String, u64> {
    container["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                scalar(&p["name"]).unwrap_or_default(),
                p["containerPort"].as_u64().expect("containerPort"),
            )
        })
        .collect()
}

/// A port given by number or by the name of a container port.
fn resolve_port(port: &Value, container: &Value) -> u64 {
    port.as_u64().unwrap_or_else(|| {
        let name = scalar(port).expect("a port");
        *container_ports(container)
            .get(&name)
            .unwrap_or_else(|| panic!("no container port named {name}"))
    })
}

fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_mapping().expect("a selector");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn overlay_secret_keys() -> BTreeMap<String, BTreeSet<String>> {
    let overlay = files::yaml(&format!("{OVERLAY}/kustomization.yaml"));
    overlay["secretGenerator"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|secret| {
            let keys = strings(&secret["files"])
                .iter()
                .map(|file| match file.split_once('=') {
                    Some((key, _)) => key.to_owned(),
                    None => file.rsplit('/').next().unwrap_or(file).to_owned(),
                })
                .collect();
            (scalar(&secret["name"]).unwrap(), keys)
        })
        .collect()
}

// ---- images ----------------------------------------------------------------------------------

#[test]
fn the_dockerfile_has_a_stage_with_port_and_entrypoint_for_every_binary() {
    let dockerfile = files::text("Dockerfile");
    assert!(
        dockerfile.contains("ARG SERVICE"),
        "the Dockerfile takes SERVICE"
    );
    assert!(
        dockerfile.contains("cargo chef cook"),
        "dependencies are cached"
    );
    assert!(dockerfile.contains("--locked --bin \"${SERVICE}\""));
    assert!(dockerfile.contains("FROM svc-${SERVICE}"));
    let services = compose_services();
    for (binary, _) in deploy_check::BINARIES {
        let stage_start = dockerfile
            .find(&format!("AS svc-{binary}\n"))
            .unwrap_or_else(|| panic!("no stage svc-{binary}"));
        let stage = &dockerfile[stage_start..];
        let stage = &stage[..stage[1..].find("\nFROM ").map_or(stage.len(), |i| i + 1)];
        assert!(
            stage.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{binary}\"]")),
            "svc-{binary} runs its binary"
        );
        if let Some(spec) = services
            .values()
            .find(|s| binary_of(s).as_deref() == Some(binary))
        {
            if let Some(addr) = compose_env(spec).get(listen_var(binary)) {
                let port = port_of_addr(addr);
                assert!(
                    stage.contains(&format!("EXPOSE {port}")),
                    "svc-{binary} exposes {port}"
                );
            }
        }
    }
    let choreo = &dockerfile[dockerfile.find("AS svc-choreo").unwrap()..];
    for dir in ["topics/", "schemas/", "sagas/"] {
        assert!(choreo.contains(dir), "the choreo image carries {dir}");
    }
}

/// sagas/order.yaml states the deadline the order service starts with: the variable it names
/// is one the order binary reads, and its default (in seconds) is that setting's default.
#[test]
fn the_order_sagas_deadline_is_the_order_services_setting_and_its_default() {
    let deadline = &files::yaml("sagas/order.yaml")["deadline"];
    let var = scalar(&deadline["config"]).expect("sagas/order.yaml: deadline.config");
    assert!(
        source::env_names_read("order").contains(&var),
        "sagas/order.yaml names {var}, which the order service does not read"
    );
    let order = source::rust_text("services/order/src");
    let marker = format!("env = \"{var}\", default_value_t = ");
    let at = order
        .find(&marker)
        .expect("the order service's setting with a default")
        + marker.len();
    let default: String = order[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(var.ends_with("_SECS"), "{var} is in seconds");
    assert_eq!(
        scalar(&deadline["default"]),
        Some(format!("{default}s")),
        "sagas/order.yaml: deadline.default is the order service's default for {var}"
    );
}

#[test]
fn the_docker_context_leaves_out_build_output_and_local_state() {
    let ignore = files::text(".dockerignore");
    for entry in ["target/", ".stack/", ".git/"] {
        assert!(ignore.lines().any(|l| l.trim() == entry), "{entry} ignored");
    }
}

// ---- compose -----------------------------------------------------------------------------------

#[test]
fn every_compose_service_sets_only_variables_its_binary_reads() {
    for (name, spec) in compose_services() {
        let Some(binary) = binary_of(&spec) else {
            continue;
        };
        let read = source::env_names_read(&binary);
        for var in compose_env(&spec).keys() {
            assert!(
                read.contains(var),
                "compose service {name} sets {var}, which {binary} does not read (it reads {read:?})"
            );
        }
    }
}

#[test]
fn every_compose_service_exports_its_spans_to_the_compose_jaeger_under_its_own_name() {
    let services = compose_services();
    assert!(
        services.contains_key("jaeger"),
        "compose runs a trace viewer"
    );
    for (name, spec) in &services {
        let Some(binary) = binary_of(spec) else {
            continue;
        };
        // The services (the operator tool in `init` exports nothing).
        if !source::env_names_read(&binary).contains("OTEL_SERVICE_NAME") {
            continue;
        }
        let env = compose_env(spec);
        assert_eq!(
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT").map(String::as_str),
            Some("http://jaeger:4318"),
            "compose service {name}"
        );
        assert_eq!(
            env.get("OTEL_SERVICE_NAME"),
            Some(&binary),
            "compose service {name}"
        );
    }
}

#[test]
fn every_compose_service_sets_the_variables_its_binary_needs() {
    let services = compose_services();
    let binaries: BTreeSet<String> = services.values().filter_map(binary_of).collect();
    for (binary, _) in deploy_check::BINARIES {
        assert!(binaries.contains(*binary), "compose runs {binary}");
    }
    for (name, spec) in &services {
        let Some(binary) = binary_of(spec) else {
            continue;
        };
        let read = source::env_names_read(&binary);
        let env = compose_env(spec);
        for var in compose_needed_vars(&binary) {
            assert!(read.contains(&var), "{binary} no longer reads {var}");
            assert!(env.contains_key(&var), "compose service {name} lacks {var}");
        }
    }
}

#[test]
fn compose_database_urls_point_at_the_compose_postgres_and_a_database_the_init_script_creates() {
    let services = compose_services();
    let databases = init_databases();
    let stack = files::text("scripts/lib/stack-postgres.sh");
    for db in stack
        .lines()
        .find_map(|l| l.strip_prefix("PG_SERVICE_DBS=("))
        .expect("PG_SERVICE_DBS in stack-postgres.sh")
        .trim_end_matches(')')
        .split_whitespace()
        .chain(["registry"])
    {
        assert!(databases.contains(db), "init.sh creates {db}");
    }
    let init = files::text("compose/postgres/init.sh");
    assert!(
        init.contains("$(cat \"/run/secrets/shop/$db\")"),
        "init.sh reads each role's password from the secrets volume"
    );
    let postgres = &services["postgres"];
    assert!(scalar(&postgres["image"])
        .unwrap()
        .starts_with("postgres:15"));
    let mounts = strings(&postgres["volumes"]);
    assert!(mounts
        .iter()
        .any(|m| m.starts_with("./postgres/init.sh:/docker-entrypoint-initdb.d/")));
    for (name, spec) in &services {
        let env = compose_env(spec);
        let Some(url) = env.get("DATABASE_URL").cloned() else {
            continue;
        };
        let url = parse_url(&url);
        assert_eq!((url.host.as_str(), url.port), ("postgres", 5432), "{name}");
        assert!(
            databases.contains(&url.path),
            "{name}: no database {}",
            url.path
        );
        assert_eq!(url.user, url.path, "{name}: the database's own role");
        assert!(
            url.password.is_empty(),
            "{name}: a password in DATABASE_URL"
        );
        assert!(
            env.contains_key("PGPASSFILE"),
            "{name}: the password comes from a pgpass file"
        );
        assert_eq!(
            url.path,
            format!("shop_{name}"),
            "{name} uses its own database"
        );
    }
}

/// Where a compose service mounts the `secrets` volume (its own subpath of it).
fn compose_secret_mount(spec: &Value) -> Option<(String, String)> {
    spec["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|v| scalar(&v["source"]).as_deref() == Some("secrets"))
        .map(|v| {
            (
                scalar(&v["target"]).expect("a target"),
                scalar(&v["volume"]["subpath"]).unwrap_or_default(),
            )
        })
}

#[test]
fn compose_commits_no_secret_and_hands_each_part_its_own_generated_files() {
    let services = compose_services();
    let secrets = &services["secrets"];
    assert_eq!(
        strings(&secrets["entrypoint"]).join(" "),
        "bash /make-secrets.sh"
    );
    let script = files::text("compose/secrets/make-secrets.sh");
    assert!(script.contains("/dev/urandom"), "random secrets");
    assert!(script.contains("if [[ ! -s $f ]]"), "kept once made");
    assert_eq!(
        scalar(&services["postgres"]["depends_on"]["secrets"]["condition"]).as_deref(),
        Some("service_completed_successfully")
    );
    let mut subpaths = BTreeSet::new();
    for (name, spec) in &services {
        let mount = compose_secret_mount(spec);
        for (var, value) in compose_env(spec) {
            assert!(
                !value.contains("${"),
                "{name}: {var} comes from the shell, not the secrets volume"
            );
            if names_a_secret(&var) || var == "PGPASSFILE" || var == "QUARKUS_CONFIG_LOCATIONS" {
                assert!(
                    var.ends_with("_FILE") || !names_a_secret(&var),
                    "{name}: {var} is a secret's value; give {var}_FILE"
                );
                let (target, subpath) = mount
                    .clone()
                    .unwrap_or_else(|| panic!("{name} mounts no secrets"));
                assert!(
                    value
                        .trim_start_matches("file:")
                        .starts_with(&format!("{target}/")),
                    "{name}: {var}={value} is not in its secrets mount {target}"
                );
                assert!(
                    script.contains(subpath.as_str()),
                    "{name}: make-secrets.sh fills no {subpath}/"
                );
            }
        }
        if let Some((_, subpath)) = mount {
            if name != "secrets" {
                assert!(subpaths.insert(subpath.clone()), "{name} shares {subpath}/");
            }
        }
    }
    for forbidden in ["change-me", "local-only", "PASSWORD '"] {
        for file in ["compose/compose.yaml", "compose/postgres/init.sh"] {
            assert!(
                !files::text(file).contains(forbidden),
                "{file}: {forbidden}"
            );
        }
    }
}

#[test]
fn compose_services_listen_on_all_interfaces_at_the_port_they_publish_and_probe() {
    for (name, spec) in compose_services() {
        let Some(binary) = binary_of(&spec) else {
            continue;
        };
        let Some(addr) = compose_env(&spec).get(listen_var(&binary)).cloned() else {
            continue;
        };
        assert!(addr.starts_with("0.0.0.0:"), "{name} listens on {addr}");
        let port = port_of_addr(&addr);
        let published: Vec<u16> = strings(&spec["ports"])
            .iter()
            .map(|p| port_of_addr(p))
            .collect();
        assert_eq!(published, [port], "{name} publishes its listen port");
        let check = strings(&spec["healthcheck"]["test"]).join(" ");
        assert!(
            check.contains(&format!("http://localhost:{port}/")),
            "{name}'s health check calls its own port: {check}"
        );
        let stop = scalar(&spec["stop_grace_period"]);
        if source::uses_service_settings(&binary) {
            let secs: u64 = stop
                .as_deref()
                .and_then(|s| s.strip_suffix('s'))
                .and_then(|s| s.parse().ok())
                .unwrap_or(10);
            assert!(
                secs > source::consumer_grace_secs(),
                "{name} is stopped after the consumer's grace"
            );
        }
    }
}

#[test]
fn compose_host_ports_are_unique() {
    let mut seen = BTreeMap::new();
    for (name, spec) in compose_services() {
        for mapping in strings(&spec["ports"]) {
            let host = mapping.split(':').rev().nth(1).expect("host:container");
            if let Some(other) = seen.insert(host.to_owned(), name.clone()) {
                panic!("host port {host} is published by {other} and {name}");
            }
        }
    }
}

#[test]
fn compose_depends_on_names_existing_services_with_a_start_condition() {
    let services = compose_services();
    for (name, spec) in &services {
        for target in keys(&spec["depends_on"]) {
            assert!(services.contains_key(&target), "{name} depends on {target}");
            let condition = scalar(&spec["depends_on"][target.as_str()]["condition"]);
            let condition = condition.as_deref().unwrap_or("");
            assert!(
                [
                    "service_healthy",
                    "service_completed_successfully",
                    "service_started"
                ]
                .contains(&condition),
                "{name} -> {target}: {condition}"
            );
            if condition == "service_healthy" {
                assert!(
                    !services[&target]["healthcheck"].is_null(),
                    "{name} waits for {target} to be healthy, which has no health check"
                );
            }
        }
        if binary_of(spec).is_some_and(|b| source::uses_service_settings(&b)) {
            assert_eq!(
                scalar(&spec["depends_on"]["init"]["condition"]).as_deref(),
                Some("service_completed_successfully"),
                "{name} starts after the topics and schemas exist"
            );
        }
    }
}

#[test]
fn compose_addresses_name_existing_services_and_their_ports() {
    let services = compose_services();
    let port_of = |host: &str| -> Vec<u16> {
        let spec = &services[host];
        let mut ports: Vec<u16> = strings(&spec["ports"])
            .iter()
            .map(|p| port_of_addr(p))
            .collect();
        if let Some(binary) = binary_of(spec) {
            if let Some(addr) = compose_env(spec).get(listen_var(&binary)) {
                ports.push(port_of_addr(addr));
            }
        }
        ports
    };
    for (name, spec) in &services {
        for (var, value) in compose_env(spec) {
            let is_address =
                var == "KAFKA_BROKERS" || (var.ends_with("_URL") && var != "DATABASE_URL");
            if !is_address {
                continue;
            }
            let url = parse_url(&value);
            assert!(
                services.contains_key(&url.host),
                "{name}: {var} names {}, no compose service",
                url.host
            );
            if url.host != "kafka" && url.host != "registry" {
                assert!(
                    port_of(&url.host).contains(&url.port),
                    "{name}: {var}={value}"
                );
            }
        }
    }
    let kafka = compose_env(&services["kafka"]);
    assert!(kafka["KAFKA_ADVERTISED_LISTENERS"].contains("//kafka:9092"));
    let registry = compose_env(&services["registry"]);
    assert_eq!(registry["APICURIO_STORAGE_KIND"], "sql");
    assert!(registry["APICURIO_DATASOURCE_URL"].ends_with("//postgres:5432/registry"));
}

#[test]
fn compose_init_applies_the_topics_then_registers_the_schemas_with_the_choreo_image() {
    let services = compose_services();
    let init = &services["init"];
    assert_eq!(binary_of(init).as_deref(), Some("choreo"));
    let command = strings(&init["command"]).join(" ");
    assert!(
        command.contains("choreo topics apply --dir topics"),
        "{command}"
    );
    assert!(command.contains("choreo schemas register"), "{command}");
}

#[test]
fn compose_prometheus_scrapes_every_service_that_serves_metrics() {
    let config = files::yaml("compose/prometheus.yml");
    let targets: BTreeSet<String> = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .flat_map(|job| {
            job["static_configs"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|c| strings(&c["targets"]))
        .collect();
    for (name, spec) in compose_services() {
        let Some(binary) = binary_of(&spec) else {
            continue;
        };
        if binary == "choreo" || !source::serves_metrics(&binary) {
            continue;
        }
        let env = compose_env(&spec);
        let addr = env
            .get("METRICS_ADDR")
            .unwrap_or_else(|| &env[listen_var(&binary)]);
        let port = port_of_addr(addr);
        assert!(
            targets.contains(&format!("{name}:{port}")),
            "{name} scraped on {port}"
        );
    }
    let compose = files::text(COMPOSE);
    assert!(compose.contains("./prometheus.yml:/etc/prometheus/prometheus.yml"));
    assert!(compose.contains("../deploy/dashboards:/var/lib/grafana/dashboards"));
    let provider = files::yaml("compose/grafana/provisioning/dashboards/shop.yml");
    assert_eq!(
        scalar(&provider["providers"][0]["options"]["path"]).as_deref(),
        Some("/var/lib/grafana/dashboards")
    );
    let datasource = files::yaml("compose/grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(
        scalar(&datasource["datasources"][0]["uid"]).as_deref(),
        Some("prometheus")
    );
}

// ---- kubernetes ------------------------------------------------------------------------------

#[test]
fn every_kustomization_resource_and_patch_exists() {
    for dir in [BASE, OVERLAY] {
        let kustomization = files::yaml(&format!("{dir}/kustomization.yaml"));
        let mut paths = strings(&kustomization["resources"]);
        paths.extend(
            kustomization["patches"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|p| scalar(&p["path"])),
        );
        for path in paths {
            let full = files::path(&format!("{dir}/{path}"));
            assert!(full.exists(), "{dir}: {path} does not exist");
            if full.is_dir() {
                assert!(
                    full.join("kustomization.yaml").exists(),
                    "{path} is no kustomization"
                );
            }
        }
    }
}

#[test]
fn every_deployment_selector_matches_its_template_labels() {
    for deployment in deployments() {
        let spec = &deployment["spec"];
        assert!(
            selects(
                &spec["selector"]["matchLabels"],
                &spec["template"]["metadata"]["labels"]
            ),
            "{} selects its own pods",
            name_of(&deployment)
        );
    }
}

#[test]
fn every_deployment_is_selected_by_a_service_whose_target_port_is_its_container_port() {
    let objects = base_objects();
    let services = of_kind(&objects, "Service");
    for deployment in of_kind(&objects, "Deployment") {
        let name = name_of(&deployment);
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let service = services
            .iter()
            .find(|s| selects(&s["spec"]["selector"], labels))
            .unwrap_or_else(|| panic!("no Service selects {name}"));
        let container = first_container(&deployment);
        let ports: BTreeSet<u64> = container_ports(container).into_values().collect();
        for port in service["spec"]["ports"].as_sequence().expect("ports") {
            let target = resolve_port(&port["targetPort"], container);
            assert!(ports.contains(&target), "{name}: targetPort {target}");
        }
        let addr_var = listen_var(&image_binary(container));
        let listen = env_entries(container)
            .into_iter()
            .find(|(var, _)| var == addr_var)
            .and_then(|(_, value)| scalar(&value["value"]))
            .unwrap_or_else(|| panic!("{name} sets {addr_var}"));
        assert!(listen.starts_with("0.0.0.0:"), "{name} listens on {listen}");
        assert!(ports.contains(&u64::from(port_of_addr(&listen))), "{name}");
    }
}

#[test]
fn probes_check_healthz_and_readyz_on_the_container_port() {
    for deployment in deployments() {
        let name = name_of(&deployment);
        let container = first_container(&deployment);
        let ports: BTreeSet<u64> = container_ports(container).into_values().collect();
        let live = &container["livenessProbe"]["httpGet"];
        let ready = &container["readinessProbe"]["httpGet"];
        assert_eq!(scalar(&live["path"]).as_deref(), Some("/healthz"), "{name}");
        let ready_path = scalar(&ready["path"]).unwrap_or_default();
        let binary = image_binary(container);
        let expected = if source::serves_metrics(&binary) {
            "/readyz"
        } else {
            "/healthz"
        };
        assert_eq!(ready_path, expected, "{name}'s readiness");
        for probe in [live, ready] {
            assert!(
                ports.contains(&resolve_port(&probe["port"], container)),
                "{name}"
            );
        }
    }
}

#[test]
fn termination_grace_outlasts_the_consumer_shutdown_grace_and_the_pre_stop_drain() {
    let grace = source::consumer_grace_secs();
    for deployment in deployments() {
        let name = name_of(&deployment);
        let pod = &deployment["spec"]["template"]["spec"];
        let container = first_container(&deployment);
        let sleep = strings(&container["lifecycle"]["preStop"]["exec"]["command"]);
        assert_eq!(
            sleep.first().map(String::as_str),
            Some("sleep"),
            "{name} drains"
        );
        let sleep: u64 = sleep[1].parse().expect("seconds");
        let termination = pod["terminationGracePeriodSeconds"].as_u64().expect("set");
        assert!(termination > grace, "{name}: {termination} s <= {grace} s");
        assert!(termination > grace + sleep, "{name}: no room for the drain");
    }
}

#[test]
fn every_container_requests_and_limits_cpu_and_memory() {
    let objects = base_objects();
    for object in of_kind(&objects, "Deployment")
        .iter()
        .chain(&of_kind(&objects, "Job"))
    {
        let resources = &first_container(object)["resources"];
        for kind in ["requests", "limits"] {
            for what in ["cpu", "memory"] {
                assert!(
                    scalar(&resources[kind][what]).is_some(),
                    "{}: {kind}.{what}",
                    name_of(object)
                );
            }
        }
    }
}

#[test]
fn every_deployment_has_a_pod_disruption_budget() {
    let objects = base_objects();
    let budgets = of_kind(&objects, "PodDisruptionBudget");
    for deployment in of_kind(&objects, "Deployment") {
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert!(
            budgets
                .iter()
                .any(|b| selects(&b["spec"]["selector"]["matchLabels"], labels)),
            "no PodDisruptionBudget for {}",
            name_of(&deployment)
        );
    }
}

/// The directories where a pod's first container mounts Secret volumes.
fn secret_mounts(object: &Value) -> Vec<String> {
    let pod = &object["spec"]["template"]["spec"];
    let secrets: BTreeSet<String> = pod["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter(|v| !v["secret"]["secretName"].is_null())
        .filter_map(|v| scalar(&v["name"]))
        .collect();
    first_container(object)["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter(|m| scalar(&m["name"]).is_some_and(|n| secrets.contains(&n)))
        .filter_map(|m| scalar(&m["mountPath"]))
        .collect()
}

fn env_entries(container: &Value) -> Vec<(String, Value)> {
    container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|e| (scalar(&e["name"]).expect("env name"), e.clone()))
        .collect()
}

#[test]
fn kubernetes_containers_get_what_their_binary_reads_from_the_config_map_and_secret_refs() {
    let objects = base_objects();
    assert!(
        of_kind(&objects, "Secret").is_empty(),
        "no secret values in base"
    );
    let config = of_kind(&objects, "ConfigMap")
        .into_iter()
        .find(|c| name_of(c) == "shop-config")
        .expect("ConfigMap shop-config");
    let config_keys = keys(&config["data"]);
    for key in [
        "KAFKA_BROKERS",
        "SCHEMA_REGISTRY_URL",
        "ORDER_URL",
        "PAYMENT_URL",
    ] {
        assert!(
            config_keys.contains(&key.to_owned()),
            "shop-config has {key}"
        );
    }
    let secrets = overlay_secret_keys();
    for object in of_kind(&objects, "Deployment")
        .iter()
        .chain(&of_kind(&objects, "Job"))
    {
        let name = name_of(object);
        let container = first_container(object);
        let binary = image_binary(container);
        let read = source::env_names_read(&binary);
        let env = env_entries(container);
        let set: BTreeSet<String> = env.iter().map(|(var, _)| var.clone()).collect();
        for var in needed_vars(&binary) {
            assert!(set.contains(&var), "{name} lacks {var}");
        }
        for (var, entry) in env {
            assert!(
                read.contains(&var),
                "{name} sets {var}, which {binary} does not read"
            );
            let from = &entry["valueFrom"];
            if let Some(key) = scalar(&from["configMapKeyRef"]["key"]) {
                assert!(
                    config_keys.contains(&key),
                    "{name}: shop-config has no {key}"
                );
            }
            if !from["secretKeyRef"].is_null() {
                let secret = scalar(&from["secretKeyRef"]["name"]).unwrap();
                let key = scalar(&from["secretKeyRef"]["key"]).unwrap();
                assert!(
                    secrets.get(&secret).is_some_and(|keys| keys.contains(&key)),
                    "{name}: the local overlay generates no {secret}/{key}"
                );
            }
            if var.starts_with("DATABASE_") && var.ends_with("_URL") {
                assert!(
                    !from["secretKeyRef"].is_null(),
                    "{name}: {var} (it holds a password) from a Secret"
                );
            }
            if names_a_secret(&var) {
                assert!(
                    var.ends_with("_FILE"),
                    "{name}: {var} is a secret's value; give {var}_FILE, a mounted Secret's file"
                );
                let path = scalar(&entry["value"]).unwrap_or_default();
                assert!(
                    secret_mounts(object)
                        .iter()
                        .any(|dir| path.starts_with(&format!("{dir}/"))),
                    "{name}: {var}={path} is not a file of a mounted Secret"
                );
            }
        }
    }
}

#[test]
fn every_consumer_service_is_scaled_by_keda_on_its_group_and_the_topics_it_consumes() {
    let objects = base_objects();
    let deployments: BTreeSet<String> = of_kind(&objects, "Deployment")
        .iter()
        .map(name_of)
        .collect();
    let scaled = of_kind(&objects, "ScaledObject");
    let partitions: BTreeMap<String, u64> = topics()
        .into_iter()
        .map(|t| (t.name, t.partitions))
        .collect();
    let groups = consumer_groups();
    assert_eq!(
        scaled.len(),
        groups.len(),
        "one ScaledObject per consumer group"
    );
    for (group, expected_topics) in groups {
        let object = scaled
            .iter()
            .find(|s| scalar(&s["spec"]["scaleTargetRef"]["name"]).as_deref() == Some(&group))
            .unwrap_or_else(|| panic!("no ScaledObject targets {group}"));
        assert_eq!(
            scalar(&object["apiVersion"]).as_deref(),
            Some("keda.sh/v1alpha1")
        );
        assert!(deployments.contains(&group), "Deployment {group} exists");
        let mut seen_topics = BTreeSet::new();
        for trigger in object["spec"]["triggers"].as_sequence().expect("triggers") {
            assert_eq!(scalar(&trigger["type"]).as_deref(), Some("kafka"));
            let meta = &trigger["metadata"];
            assert_eq!(
                scalar(&meta["consumerGroup"]).as_deref(),
                Some(group.as_str())
            );
            assert!(
                scalar(&meta["lagThreshold"]).is_some(),
                "{group}: lagThreshold"
            );
            assert!(
                scalar(&meta["bootstrapServers"]).is_some(),
                "{group}: brokers"
            );
            seen_topics.insert(scalar(&meta["topic"]).expect("topic"));
        }
        assert_eq!(seen_topics, expected_topics, "{group}'s topics");
        let most = expected_topics.iter().map(|t| partitions[t]).max().unwrap();
        assert_eq!(
            object["spec"]["minReplicaCount"].as_u64(),
            Some(1),
            "{group}"
        );
        assert_eq!(
            object["spec"]["maxReplicaCount"].as_u64(),
            Some(most),
            "{group}"
        );
        let deployment = of_kind(&objects, "Deployment")
            .into_iter()
            .find(|d| name_of(d) == group)
            .unwrap();
        assert!(
            deployment["spec"]["replicas"].is_null(),
            "{group}: KEDA owns the replica count"
        );
    }
}

#[test]
fn the_init_job_applies_topics_and_registers_schemas_with_the_choreo_image() {
    let jobs = of_kind(&base_objects(), "Job");
    assert_eq!(jobs.len(), 1, "one init Job");
    let container = first_container(&jobs[0]);
    assert_eq!(image_binary(container), "choreo");
    let script = [strings(&container["command"]), strings(&container["args"])]
        .concat()
        .join(" ");
    assert!(
        script.contains("choreo topics apply --dir topics"),
        "{script}"
    );
    assert!(script.contains("choreo schemas register"), "{script}");
}

#[test]
fn the_local_overlay_sets_a_namespace_and_tags_every_shop_image() {
    let overlay = files::yaml(&format!("{OVERLAY}/kustomization.yaml"));
    assert!(scalar(&overlay["namespace"]).is_some());
    let tagged: BTreeSet<String> = overlay["images"]
        .as_sequence()
        .expect("images")
        .iter()
        .filter_map(|i| scalar(&i["name"]))
        .collect();
    for (binary, _) in deploy_check::BINARIES {
        assert!(
            tagged.contains(&format!("shop/{binary}")),
            "{binary} tagged"
        );
    }
}

#[test]
fn kafka_clients_log_in_with_scram_over_tls_as_themselves_and_the_registry_user_too() {
    let objects = base_objects();
    for object in of_kind(&objects, "Deployment")
        .iter()
        .chain(&of_kind(&objects, "Job"))
    {
        let name = name_of(object);
        let env: BTreeMap<String, String> = env_entries(first_container(object))
            .into_iter()
            .filter_map(|(var, entry)| scalar(&entry["value"]).map(|v| (var, v)))
            .collect();
        let Some(protocol) = env.get("KAFKA_SECURITY_PROTOCOL") else {
            continue;
        };
        assert_eq!(protocol, "SASL_SSL", "{name}");
        assert_eq!(env["KAFKA_SASL_MECHANISM"], "SCRAM-SHA-512", "{name}");
        let user = &env["KAFKA_SASL_USERNAME"];
        if object["kind"].as_str() == Some("Deployment") {
            assert_eq!(user, &name, "{name} logs in to Kafka as itself");
            assert_eq!(
                env["SCHEMA_REGISTRY_USERNAME"], name,
                "{name} reads the registry as its own (read-only) user"
            );
        } else {
            assert_eq!(user, "admin", "the init Job creates topics and ACLs");
            assert_eq!(env["SCHEMA_REGISTRY_USERNAME"], "operator", "it registers");
        }
        let ca = &env["KAFKA_SSL_CA_LOCATION"];
        assert!(
            secret_mounts(object)
                .iter()
                .any(|dir| ca.starts_with(&format!("{dir}/"))),
            "{name}: the CA {ca} is a mounted file"
        );
    }
    let keda = of_kind(&objects, "TriggerAuthentication");
    assert_eq!(keda.len(), 1, "one TriggerAuthentication for KEDA");
    let params: BTreeSet<String> = keda[0]["spec"]["secretTargetRef"]
        .as_sequence()
        .expect("secretTargetRef")
        .iter()
        .filter_map(|r| scalar(&r["parameter"]))
        .collect();
    for param in ["sasl", "username", "password", "tls", "ca"] {
        assert!(params.contains(param), "KEDA's login has {param}");
    }
    let auth = name_of(&keda[0]);
    for scaled in of_kind(&objects, "ScaledObject") {
        for trigger in scaled["spec"]["triggers"].as_sequence().expect("triggers") {
            assert_eq!(
                scalar(&trigger["authenticationRef"]["name"]).as_deref(),
                Some(auth.as_str()),
                "{}: the trigger logs in",
                name_of(&scaled)
            );
        }
    }
}

#[test]
fn the_local_overlay_generates_secrets_from_files_a_script_makes_never_from_literals() {
    let overlay = files::yaml(&format!("{OVERLAY}/kustomization.yaml"));
    for secret in overlay["secretGenerator"]
        .as_sequence()
        .expect("secretGenerator")
    {
        let name = scalar(&secret["name"]).unwrap();
        assert!(
            secret["literals"].is_null() && secret["envs"].is_null(),
            "{name}: a value in git"
        );
        for file in strings(&secret["files"]) {
            let path = file.split_once('=').map_or(file.as_str(), |(_, p)| p);
            assert!(path.starts_with("secrets/"), "{name}: {path}");
        }
    }
    let ignore = files::text(&format!("{OVERLAY}/.gitignore"));
    assert!(
        ignore.lines().any(|l| l.trim() == "secrets/"),
        "secrets/ is not committed"
    );
    let script = files::text(&format!("{OVERLAY}/make-secrets.sh"));
    assert!(
        script.contains("/dev/urandom"),
        "the script makes random secrets"
    );
    assert!(
        script.contains("sslmode=verify-full"),
        "database URLs verify the server"
    );
}

/// Every NetworkPolicy of the base, and the ingress rules that let `from` reach `port` on the
/// pods labelled `labels` (`from` = the peer pod's labels; `None` = anyone).
fn allowed(objects: &[Value], labels: &Value, port: u64, from: Option<&Value>) -> bool {
    of_kind(objects, "NetworkPolicy")
        .iter()
        .filter(|p| {
            let selector = &p["spec"]["podSelector"]["matchLabels"];
            !selector.is_null() && selects(selector, labels)
        })
        .flat_map(|p| {
            p["spec"]["ingress"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .any(|rule| {
            let ports = rule["ports"].as_sequence().cloned().unwrap_or_default();
            let port_ok =
                ports.is_empty() || ports.iter().any(|p| p["port"].as_u64() == Some(port));
            let peers = rule["from"].as_sequence().cloned().unwrap_or_default();
            let peer_ok = peers.is_empty()
                || from.is_some_and(|from| {
                    peers.iter().any(|peer| {
                        let selector = &peer["podSelector"]["matchLabels"];
                        !selector.is_null() && selects(selector, from)
                    })
                });
            port_ok && peer_ok
        })
}

fn pod_labels(name: &str) -> Value {
    serde_yaml_ng::from_str(&format!("app.kubernetes.io/name: {name}")).unwrap()
}

#[test]
fn network_policies_deny_by_default_and_open_only_the_gateway_and_prometheus_paths() {
    let objects = base_objects();
    let policies = of_kind(&objects, "NetworkPolicy");
    assert!(
        policies.iter().any(|p| {
            p["spec"]["podSelector"]
                .as_mapping()
                .is_some_and(|m| m.is_empty())
                && strings(&p["spec"]["policyTypes"]).contains(&"Ingress".to_owned())
                && p["spec"]["ingress"].is_null()
        }),
        "a default deny of ingress for every pod of the namespace"
    );
    let gateway = pod_labels("gateway");
    let prometheus = pod_labels("prometheus");
    let stranger = pod_labels("stranger");
    let config = of_kind(&objects, "ConfigMap")
        .into_iter()
        .find(|c| name_of(c) == "shop-config")
        .expect("shop-config");
    let called_by_gateway: BTreeSet<String> = ["ORDER_URL", "PAYMENT_URL", "SHIPPING_URL"]
        .iter()
        .map(|var| parse_url(&scalar(&config["data"][*var]).unwrap()).host)
        .collect();
    for deployment in of_kind(&objects, "Deployment") {
        let name = name_of(&deployment);
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let container = first_container(&deployment);
        let binary = image_binary(container);
        let http = container_ports(container)["http"];
        assert!(
            !allowed(&objects, labels, http, Some(&stranger)) || name == "gateway",
            "{name}: a stranger reaches port {http}"
        );
        if name == "gateway" {
            assert!(
                allowed(&objects, labels, http, None),
                "the public port is open"
            );
            let metrics = container_ports(container)["metrics"];
            let annotated = scalar(
                &deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"],
            );
            assert_eq!(
                annotated,
                Some(metrics.to_string()),
                "scraped on its metrics port"
            );
            let env: BTreeMap<String, String> = env_entries(container)
                .into_iter()
                .filter_map(|(var, entry)| scalar(&entry["value"]).map(|v| (var, v)))
                .collect();
            assert_eq!(port_of_addr(&env["METRICS_ADDR"]) as u64, metrics);
            assert!(allowed(&objects, labels, metrics, Some(&prometheus)));
            assert!(!allowed(&objects, labels, metrics, Some(&stranger)));
            assert!(
                !allowed(&objects, labels, metrics, None),
                "metrics are not public"
            );
            continue;
        }
        assert!(
            !allowed(&objects, labels, http, None),
            "{name}'s port {http} is open to all"
        );
        if source::serves_metrics(&binary) {
            assert!(
                allowed(&objects, labels, http, Some(&prometheus)),
                "Prometheus scrapes {name}"
            );
        }
        assert_eq!(
            allowed(&objects, labels, http, Some(&gateway)),
            called_by_gateway.contains(&name),
            "{name}: the gateway reaches exactly the services it calls"
        );
    }
}

// ---- dashboard -------------------------------------------------------------------------------

/// The `choreo_…` metric names a PromQL expression uses, without histogram suffixes.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let known = source::metric_names();
    let mut found = BTreeSet::new();
    for (at, _) in expr.match_indices("choreo_") {
        if at > 0 && expr[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = expr[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| known.contains(*base))
            })
            .map_or(name.clone(), str::to_owned);
        found.insert(base);
    }
    found
}

fn dashboard_exprs() -> Vec<(String, Vec<String>)> {
    let dashboard = files::json("deploy/dashboards/shop.json");
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .map(|panel| {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            let exprs = panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["expr"].as_str().map(str::to_owned))
                .collect();
            (title, exprs)
        })
        .collect()
}

#[test]
fn every_dashboard_panel_queries_metrics_the_code_registers() {
    let known = source::metric_names();
    for (title, exprs) in dashboard_exprs() {
        assert!(!exprs.is_empty(), "panel {title} has no query");
        for expr in exprs {
            let used = metrics_in(&expr);
            assert!(
                !used.is_empty(),
                "panel {title}: {expr} uses no shop metric"
            );
            for metric in used {
                assert!(
                    known.contains(&metric),
                    "panel {title}: {metric} is not registered"
                );
            }
        }
    }
}

#[test]
fn the_dashboard_shows_outcomes_saga_latency_by_step_outbox_lag_dead_letters_handlers_and_the_leader(
) {
    let used: BTreeSet<String> = dashboard_exprs()
        .into_iter()
        .flat_map(|(_, exprs)| exprs)
        .flat_map(|expr| metrics_in(&expr))
        .collect();
    for metric in [
        "choreo_shop_orders_total",
        "choreo_shop_saga_seconds",
        "choreo_saga_step_seconds",
        "choreo_outbox_backlog",
        "choreo_outbox_oldest_age_seconds",
        "choreo_consumer_lag",
        "choreo_dead_letters_total",
        "choreo_handler_seconds",
        "choreo_relay_leader",
    ] {
        assert!(used.contains(metric), "the dashboard shows {metric}");
    }
    let leader = dashboard_exprs()
        .into_iter()
        .flat_map(|(_, exprs)| exprs)
        .find(|e| e.contains("choreo_relay_leader"))
        .unwrap();
    assert!(
        leader.contains("instance"),
        "the leader is shown by instance"
    );
}

#[test]
fn kubernetes_prometheus_keeps_the_pods_the_deployments_annotate() {
    let config = files::text("deploy/prometheus/prometheus.yml");
    assert!(config.contains("__meta_kubernetes_pod_annotation_prometheus_io_scrape"));
    for deployment in deployments() {
        let container = first_container(&deployment);
        let binary = image_binary(container);
        if !source::serves_metrics(&binary) {
            continue;
        }
        let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(
            scalar(&annotations["prometheus.io/scrape"]).as_deref(),
            Some("true")
        );
        let port: u64 = scalar(&annotations["prometheus.io/port"])
            .and_then(|p| p.parse().ok())
            .expect("a metrics port");
        assert!(container_ports(container).values().any(|p| *p == port));
    }
}

#[test]
fn postgres_is_tuned_alike_by_the_stack_compose_and_deploy_without_giving_up_durability() {
    let source = files::text("scripts/lib/postgres-tuning.conf");
    assert_eq!(
        files::text(&format!("{BASE}/postgres-tuning.conf")),
        source,
        "deploy/base/postgres-tuning.conf is a copy of scripts/lib/postgres-tuning.conf"
    );
    let settings: BTreeMap<String, String> = source
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    assert_eq!(settings.get("fsync").map(String::as_str), Some("on"));
    assert_eq!(
        settings.get("synchronous_commit").map(String::as_str),
        Some("on")
    );
    assert!(files::text("scripts/lib/stack-postgres.sh").contains("postgres-tuning.conf"));

    let postgres = &compose_services()["postgres"];
    let volumes = strings(&postgres["volumes"]);
    assert!(
        volumes
            .iter()
            .any(|v| v
                .starts_with("../scripts/lib/postgres-tuning.conf:/etc/postgresql/tuning.conf")),
        "compose mounts the tuning file: {volumes:?}"
    );
    let init = volumes
        .iter()
        .find_map(|v| v.strip_prefix("./postgres/tuning.sh:"))
        .expect("compose runs the script that includes the tuning");
    assert!(init.starts_with("/docker-entrypoint-initdb.d/"));
    assert!(
        files::text("compose/postgres/tuning.sh").contains("include '/etc/postgresql/tuning.conf'")
    );

    let kustomization = files::yaml(&format!("{BASE}/kustomization.yaml"));
    let generators = kustomization["configMapGenerator"]
        .as_sequence()
        .expect("a configMapGenerator");
    assert!(generators.iter().any(|g| {
        scalar(&g["name"]).as_deref() == Some("postgres-tuning")
            && strings(&g["files"]).contains(&"postgres-tuning.conf".to_owned())
    }));
}
