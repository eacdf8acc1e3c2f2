# shellcheck shell=bash
# The stack's own PostgreSQL cluster in $STACK_DIR/pg (never the system cluster): initdb, config,
# start/stop with pg_ctl, and one role + database per service. Sourced by scripts/stack.
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

# Service databases: role = database = password. "order" is a reserved word, hence the prefix.
PG_SERVICE_DBS=(shop_order shop_inventory shop_payment shop_shipping shop_gateway)
PG_REGISTRY_DB=registry

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
password_encryption = scram-sha-256
max_connections = 300
EOF
  # The workload's tuning, shared with compose/ and deploy/.
  cat "$LIB/postgres-tuning.conf" >>"$PG_DATA/stack.conf"
  is_root && chown postgres: "$PG_DATA/stack.conf"
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

# Roles and databases, created only when missing; runs as the postgres superuser over the socket.
pg_create_databases() {
  local sql="" db
  for db in "${PG_SERVICE_DBS[@]}" "$PG_REGISTRY_DB"; do
    sql+="SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', '$db', '$db')
      WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$db') \\gexec
SELECT format('CREATE DATABASE %I OWNER %I', '$db', '$db')
      WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$db') \\gexec
"
  done
  "$(pg_bin_dir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$STACK_PG_PORT" -U postgres -d postgres \
    >/dev/null <<<"$sql" || die "could not create the service roles and databases"
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
