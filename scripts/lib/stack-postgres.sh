# shellcheck shell=bash
# The stack's own PostgreSQL cluster in $STACK_DIR/pg (never the system cluster): initdb, config,
# start/stop with pg_ctl, and two roles + a database per service. Sourced by scripts/stack.
#
# TCP connections are TLS only (pg_hba `hostssl`; clients use sslmode=verify-full against the
# stack's CA, $STACK_DIR/tls/ca.crt); the Unix socket, for scripts/stack itself, stays trusted
# and reachable by the cluster's OS user only. Every service database has a migration role
# (the database's name: it owns the database and its schema `public`, and runs the migrations)
# and a runtime role (<name>_app: SELECT/INSERT/UPDATE/DELETE on the tables and USAGE/SELECT on
# the sequences the migration role creates, through its default privileges; no DDL). Passwords
# are random, kept in $STACK_DIR/secrets/pg-<role> (secret_file). `pg_provision` applies all of
# it on every `up`, so a stack made before TLS and the two roles is brought up to date.
#
# PostgreSQL refuses to run as root, so as root the pg dirs belong to the `postgres` OS user and
# initdb/pg_ctl run through runuser; as any other user they run as that user. When that user
# cannot even reach $STACK_DIR (a clone under a 0700 folder, such as `mktemp -d` makes), the
# cluster lives in /var/tmp/choreo-stack-pg-<hash of $STACK_DIR> instead, with its log there too
# and $LOG_DIR/postgres.log a link to it.

PG_ROOT="" # set by pg_paths
PG_DATA=""
PG_SOCK=""
PG_LOG=""
pg_paths() {
  PG_ROOT=$STACK_DIR/pg
  PG_LOG=$LOG_DIR/postgres.log
  if is_root && id postgres >/dev/null 2>&1 && ! runuser -u postgres -- test -x "$STACK_DIR" 2>/dev/null; then
    PG_ROOT=/var/tmp/choreo-stack-pg-$(printf '%s' "$STACK_DIR" | sha256sum | cut -c1-12)
    PG_LOG=$PG_ROOT/postgres.log
  fi
  PG_DATA=$PG_ROOT/data
  PG_SOCK=$PG_ROOT/sock
}

# Service databases, each owned by the migration role of the same name. "order" is a reserved
# word, hence the prefix.
PG_SERVICE_DBS=(shop_order shop_inventory shop_payment shop_shipping shop_gateway)
PG_REGISTRY_DB=registry

# The runtime role of service database $1.
pg_app_role() { printf '%s_app' "$1"; }

# The password of role $1, made on first use.
pg_password() { cat "$(secret_file "pg-$1")"; }

as_pg() {
  local bin
  bin=$(pg_bin_dir) || die "PostgreSQL server binaries not found (apt-get install postgresql)"
  local cmd=$1
  shift
  if is_root; then
    runuser -u postgres -- "$bin/$cmd" "$@"
  else
    "$bin/$cmd" "$@"
  fi
}

# As root: hand the pg dirs and log to the postgres user, and check it can reach them.
pg_prepare_dirs() {
  pg_paths # the postgres OS user may have appeared since (installed by this run)
  mkdir -p "$PG_DATA" "$PG_SOCK"
  touch "$PG_LOG"
  chmod 700 "$PG_DATA"
  if [[ $PG_LOG != "$LOG_DIR/postgres.log" ]]; then
    ln -sfn "$PG_LOG" "$LOG_DIR/postgres.log"
    say "postgres: user postgres cannot reach $(show_path "$STACK_DIR"); cluster in $PG_ROOT"
  fi
  is_root || return 0
  chmod go+x "$STACK_DIR" "$LOG_DIR"
  id postgres >/dev/null 2>&1 || die "no 'postgres' OS user (is the postgresql package installed?)"
  chown postgres: "$PG_ROOT" "$PG_DATA" "$PG_SOCK" "$PG_LOG"
  runuser -u postgres -- test -w "$PG_DATA" ||
    die "user postgres cannot reach $PG_DATA (a parent dir is not world-searchable); set STACK_DIR elsewhere, e.g. STACK_DIR=/var/tmp/shop-stack"
}

pg_initdb() {
  [[ -f $PG_DATA/PG_VERSION ]] && return 0
  say "postgres: initdb in $(show_path "$PG_DATA")"
  local pwfile=$PG_ROOT/pwfile
  printf 'postgres\n' >"$pwfile"
  is_root && chown postgres: "$pwfile"
  as_pg initdb -D "$PG_DATA" -U postgres --pwfile="$pwfile" -E UTF8 --no-locale \
    --auth-local=trust --auth-host=scram-sha-256 >>"$PG_LOG" 2>&1 ||
    {
      rm -f "$pwfile"
      show_log_tail "$PG_LOG"
      die "initdb failed"
    }
  rm -f "$pwfile"
  printf "\ninclude 'stack.conf'\n" >>"$PG_DATA/postgresql.conf"
}

# Settings rewritten on every start, so port changes apply. Modest for 2 cores.
pg_write_conf() {
  cat >"$PG_DATA/stack.conf" <<EOF
# written by scripts/stack on every start
listen_addresses = '127.0.0.1'
port = $STACK_PG_PORT
unix_socket_directories = '$PG_SOCK'
unix_socket_permissions = 0700
password_encryption = scram-sha-256
max_connections = 300
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_min_protocol_version = 'TLSv1.2'
EOF
  # The workload's tuning, shared with compose/ and deploy/.
  cat "$LIB/postgres-tuning.conf" >>"$PG_DATA/stack.conf"
  is_root && chown postgres: "$PG_DATA/stack.conf"
  pg_write_tls
  pg_write_hba
  return 0
}

# The server's certificate and key (signed by the stack CA) copied into the data dir, where the
# server's OS user can read them (it may not reach $STACK_DIR) and the key is its own, mode 600.
pg_write_tls() {
  tls_server_cert postgres
  local f
  for f in crt key; do
    install -m 600 "$TLS_DIR/postgres.$f" "$PG_DATA/server.$f"
    is_root && chown postgres: "$PG_DATA/server.$f"
  done
  return 0
}

# Over TCP only TLS with a password (scram); plaintext TCP has no line, so it is refused. The
# data dir's own pg_hba.conf (hba_file cannot change without a restart).
pg_write_hba() {
  cat >"$PG_DATA/pg_hba.conf" <<EOF
# written by scripts/stack on every start and up
local   all  all                 trust
hostssl all  all  127.0.0.1/32   scram-sha-256
hostssl all  all  ::1/128        scram-sha-256
EOF
  is_root && chown postgres: "$PG_DATA/pg_hba.conf"
  return 0
}

pg_ready() { "$(pg_bin_dir)/pg_isready" -q -h 127.0.0.1 -p "$STACK_PG_PORT"; }

# The postmaster pid: from run/postgres.pid, else from our own data dir's postmaster.pid.
pg_pid() {
  local pid
  if pid=$(live_pid postgres postgres); then
    printf '%s' "$pid"
    return 0
  fi
  pid=$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null) || return 1
  pid_is "$pid" postgres || return 1
  printf '%s' "$pid" >"$(pid_file postgres)"
  printf '%s' "$pid"
}

pg_start() {
  pg_prepare_dirs
  pg_initdb
  pg_write_conf
  ensure_port_free "$STACK_PG_PORT" postgres STACK_PG_PORT
  printf '\n=== stack: postgres starting at %s ===\n' "$(date -Is)" >>"$PG_LOG"
  # shellcheck disable=SC2094 # pg_ctl's messages and the server both append to the log.
  as_pg pg_ctl -D "$PG_DATA" -l "$PG_LOG" -w -t "$STACK_START_TIMEOUT" start >>"$PG_LOG" 2>&1 9>&- ||
    {
      show_log_tail "$PG_LOG"
      die "postgres did not start; log: $(show_path "$PG_LOG")"
    }
  head -n 1 "$PG_DATA/postmaster.pid" >"$(pid_file postgres)"
}

pg_psql() {
  "$(pg_bin_dir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$STACK_PG_PORT" -U postgres "$@"
}

# Everything that makes the cluster the stack's, applied on every `up` (idempotent, so a stack
# made before TLS and the two roles per service is brought up to date): the configuration,
# certificate and pg_hba (reloaded when the server already ran), the superuser's password, the
# roles and databases, and the runtime roles' privileges. Runs as the postgres superuser over the
# socket; the SQL, passwords included, goes in on stdin, never on a command line.
pg_provision() {
  pg_write_conf
  pg_psql -d postgres -c 'select pg_reload_conf()' >/dev/null || die "could not reload postgres"
  pg_ssl_on || die "postgres did not turn TLS on; log: $(show_path "$PG_LOG")"
  local sql db app
  sql="ALTER ROLE postgres PASSWORD '$(pg_password postgres)';
SELECT format('CREATE ROLE %I LOGIN', '$PG_REGISTRY_DB')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_REGISTRY_DB') \\gexec
ALTER ROLE $PG_REGISTRY_DB NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '$(pg_password "$PG_REGISTRY_DB")';
SELECT format('CREATE DATABASE %I OWNER %I', '$PG_REGISTRY_DB', '$PG_REGISTRY_DB')
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_REGISTRY_DB') \\gexec
"
  for db in "${PG_SERVICE_DBS[@]}"; do
    app=$(pg_app_role "$db")
    sql+="SELECT format('CREATE ROLE %I LOGIN', r) FROM unnest(array['$db', '$app']) r
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \\gexec
ALTER ROLE $db NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '$(pg_password "$db")';
ALTER ROLE $app NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '$(pg_password "$app")';
SELECT format('CREATE DATABASE %I OWNER %I', '$db', '$db')
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$db') \\gexec
ALTER DATABASE $db OWNER TO $db;
REVOKE ALL ON DATABASE $db FROM PUBLIC;
GRANT CONNECT ON DATABASE $db TO $app;
"
  done
  pg_psql -d postgres >/dev/null <<<"$sql" || die "could not create the service roles and databases"
  for db in "${PG_SERVICE_DBS[@]}"; do
    app=$(pg_app_role "$db")
    pg_psql -d "$db" >/dev/null <<SQL || die "could not grant $app its privileges in $db"
ALTER SCHEMA public OWNER TO $db;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO $app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO $app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO $app;
ALTER DEFAULT PRIVILEGES FOR ROLE $db IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO $app;
ALTER DEFAULT PRIVILEGES FOR ROLE $db IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO $app;
SQL
  done
}

# A TLS URL (verify-full against the stack CA) for role $1 on database $2.
pg_url() {
  printf 'postgres://%s:%s@127.0.0.1:%s/%s?sslmode=verify-full&sslrootcert=%s' \
    "$1" "$(pg_password "$1")" "$STACK_PG_PORT" "$2" "$TLS_DIR/ca.crt"
}

# The env file's PostgreSQL lines: PG_ADMIN_URL (the superuser, for tests that create databases),
# and per service DATABASE_URL_<SVC> (its runtime role) and DATABASE_MIGRATION_URL_<SVC> (its
# migration role). Passwords are in the URLs, so the env file is mode 600.
pg_env() {
  local db key
  env_line PG_ADMIN_URL "$(pg_url postgres postgres)"
  for db in "${PG_SERVICE_DBS[@]}"; do
    key=${db#shop_}
    env_line "DATABASE_URL_${key^^}" "$(pg_url "$(pg_app_role "$db")" "$db")"
    env_line "DATABASE_MIGRATION_URL_${key^^}" "$(pg_url "$db" "$db")"
  done
}

# Waits up to 10 s (a reload is asynchronous) until the server answers TLS on its port with a
# certificate the stack CA signed for 127.0.0.1; false when it does not.
pg_ssl_on() {
  local tries=20
  while ((tries-- > 0)); do
    openssl s_client -starttls postgres -connect "127.0.0.1:$STACK_PG_PORT" \
      -CAfile "$TLS_DIR/ca.crt" -verify_ip 127.0.0.1 -verify_return_error </dev/null >/dev/null 2>&1 &&
      return 0
    sleep 0.5
  done
  return 1
}

pg_stop() {
  local pid started
  pid=$(pg_pid) || {
    stop_component postgres postgres # reports a missing or stale pid file
    return 0
  }
  started=$(now)
  if ! as_pg pg_ctl -D "$PG_DATA" -m fast -w -t "$STACK_STOP_TIMEOUT" stop >/dev/null 2>&1; then
    say "postgres: pg_ctl stop failed, signalling pid $pid"
    stop_pid postgres "$pid"
  fi
  rm -f "$(pid_file postgres)"
  say "postgres: stopped pid $pid ($(elapsed_since "$started") s)"
}

# A crash: pg_ctl -m immediate (no checkpoint; the next start recovers from the WAL).
pg_stop_immediate() {
  local pid started
  pid=$(pg_pid) || {
    stop_component postgres postgres
    return 0
  }
  started=$(now)
  as_pg pg_ctl -D "$PG_DATA" -m immediate -w -t "$STACK_STOP_TIMEOUT" stop >/dev/null 2>&1 ||
    stop_pid postgres "$pid"
  rm -f "$(pid_file postgres)"
  say "postgres: stopped pid $pid immediately ($(elapsed_since "$started") s)"
}
