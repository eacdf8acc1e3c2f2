# shellcheck shell=bash
# Helpers shared by scripts/stack: messages, timing, pid files, ports, background processes.
# Sourced, not run. Expects STACK_DIR, STACK_ROOT, RUN_DIR and LOG_DIR to be set by scripts/stack.

say() { printf 'stack: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# Seconds since an $EPOCHREALTIME mark, one decimal.
now() { printf '%s' "$EPOCHREALTIME"; }
elapsed_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# A path shown relative to the repository root when it lies inside it.
show_path() {
  local p=$1
  if [[ $p == "$STACK_ROOT"/* ]]; then printf '%s' "${p#"$STACK_ROOT"/}"; else printf '%s' "$p"; fi
}

# One result line per component, e.g.
#   kafka      up               127.0.0.1:9092  pid 1234  log .stack/logs/kafka.log  (7.3 s)
report_line() {
  local name=$1 state=$2 addr=$3 pid=$4 log=$5 secs=${6:-}
  local tail=""
  [[ -n $secs ]] && tail="  ($secs s)"
  printf '%-10s %-16s %-15s  pid %-7s  log %s%s\n' "$name" "$state" "$addr" "$pid" "$(show_path "$log")" "$tail"
}

# --- pid files ---------------------------------------------------------------------------------

pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

read_pid() {
  local f
  f=$(pid_file "$1")
  [[ -s $f ]] || return 1
  local pid
  pid=$(head -n 1 "$f" | tr -dc '0-9')
  [[ -n $pid ]] || return 1
  printf '%s' "$pid"
}

# True when pid is a live process (not a zombie); works for other users' processes too.
alive() {
  local stat state
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  state=${stat##*) }
  state=${state%% *}
  [[ -n $state && $state != Z && $state != X ]]
}

# True when pid is alive and its command line contains pattern (guards against pid reuse).
pid_is() {
  local pid=$1 pattern=$2
  alive "$pid" || return 1
  [[ -r /proc/$pid/cmdline ]] || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pattern"
}

# The live pid of a component from its pid file, or failure (missing, stale or reused pid).
live_pid() {
  local name=$1 pattern=$2 pid
  pid=$(read_pid "$name") || return 1
  pid_is "$pid" "$pattern" || return 1
  printf '%s' "$pid"
}

# --- ports -------------------------------------------------------------------------------------

port_open() { timeout 1 bash -c ": </dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# Describes who listens on a port, as far as ss can tell.
port_owner() {
  command -v ss >/dev/null || return 0
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(.*)' | head -n 1
}

# Fails with a clear message when a port we need is already taken by someone else.
# ensure_port_free PORT WHAT VARIABLE
ensure_port_free() {
  local port=$1 what=$2 var=$3 owner
  port_open "$port" || return 0
  owner=$(port_owner "$port")
  die "port $port, needed by $what, is already in use${owner:+ by $owner}; stop that or set $var to another port"
}

# --- waiting -----------------------------------------------------------------------------------

# wait_ready NAME PID LOG CHECK...: polls CHECK every 0.5 s until it succeeds; fails when the
# process dies or STACK_START_TIMEOUT runs out, showing the last lines of the log.
wait_ready() {
  local name=$1 pid=$2 log=$3
  shift 3
  local deadline=$((SECONDS + STACK_START_TIMEOUT))
  while ! "$@" >/dev/null 2>&1; do
    if ! alive "$pid"; then
      show_log_tail "$log"
      die "$name (pid $pid) exited during startup; log: $(show_path "$log")"
    fi
    if ((SECONDS >= deadline)); then
      show_log_tail "$log"
      die "$name (pid $pid) not ready after ${STACK_START_TIMEOUT}s; log: $(show_path "$log")"
    fi
    sleep 0.5
  done
}

show_log_tail() {
  [[ -f $1 ]] || return 0
  say "last 30 lines of $(show_path "$1"):"
  tail -n 30 "$1" >&2
}

# --- background processes ----------------------------------------------------------------------

# spawn NAME LOG CMD...: runs CMD detached (own session, no stdin, output appended to LOG) and
# records its pid in run/NAME.pid; the pid is written by the process itself before it execs.
spawn() {
  local name=$1 log=$2 pidf
  shift 2
  pidf=$(pid_file "$name")
  rm -f "$pidf"
  printf '\n=== stack: %s starting at %s ===\n' "$name" "$(date -Is)" >>"$log"
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell.
  # 9>&-: the child must not inherit scripts/stack's lock.
  setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$pidf" "$@" >>"$log" 2>&1 </dev/null 9>&- &
  local tries=50
  while ((tries-- > 0)); do
    [[ -s $pidf ]] && return 0
    sleep 0.1
  done
  die "$name did not start (no pid file after 5 s); log: $(show_path "$log")"
}

# stop_pid NAME PID: SIGTERM, wait up to STACK_STOP_TIMEOUT, then SIGKILL.
stop_pid() {
  local name=$1 pid=$2
  kill -TERM "$pid" 2>/dev/null || return 0
  local deadline=$((SECONDS + STACK_STOP_TIMEOUT))
  while alive "$pid"; do
    if ((SECONDS >= deadline)); then
      say "$name (pid $pid) still running after ${STACK_STOP_TIMEOUT}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      return 0
    fi
    sleep 0.2
  done
}

# stop_component NAME PATTERN: stops the process recorded in run/NAME.pid, if any.
stop_component() {
  local name=$1 pattern=$2 pid started
  if ! pid=$(read_pid "$name"); then
    say "$name: no pid file, not running"
    return 0
  fi
  if ! pid_is "$pid" "$pattern"; then
    say "$name: stale pid file (pid $pid not running), removed"
    rm -f "$(pid_file "$name")"
    return 0
  fi
  started=$(now)
  stop_pid "$name" "$pid"
  rm -f "$(pid_file "$name")"
  say "$name: stopped pid $pid ($(elapsed_since "$started") s)"
}

# --- env file ----------------------------------------------------------------------------------

# KEY=value, single-quoted only when the value holds characters a shell would interpret.
env_line() {
  local key=$1 value=$2
  if [[ $value =~ ^[A-Za-z0-9_./:@,+=-]*$ ]]; then
    printf '%s=%s\n' "$key" "$value"
  else
    printf "%s='%s'\n" "$key" "${value//\'/\'\\\'\'}"
  fi
}

# write_if_changed FILE [MODE]: replaces FILE with stdin only when its content changes (a second
# `up` leaves it untouched); MODE (default 644) is applied either way, before any content lands.
write_if_changed() {
  local target=$1 mode=${2:-644} tmp
  tmp=$(mktemp "$target.XXXXXX")
  chmod "$mode" "$tmp"
  cat >"$tmp"
  if [[ -f $target ]] && cmp -s "$tmp" "$target"; then
    rm -f "$tmp"
    chmod "$mode" "$target"
    return 1
  fi
  mv -f "$tmp" "$target"
}

# --- secrets -----------------------------------------------------------------------------------

# A random password of 32 URL-safe characters.
random_secret() { head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n='; }

# secret_file NAME: $STACK_DIR/secrets/NAME holds a random secret made on first use (mode 600);
# prints its path. Secrets live in files, never in the env file or on a command line.
secret_file() {
  local f=$STACK_DIR/secrets/$1
  if [[ ! -s $f ]]; then
    mkdir -p "$STACK_DIR/secrets"
    chmod 700 "$STACK_DIR/secrets"
    (umask 077 && random_secret >"$f")
  fi
  printf '%s' "$f"
}
