# shellcheck shell=bash
# The optional trace viewer: Jaeger v2 (the OpenTelemetry Collector based jaeger binary) with
# in-memory storage, an OTLP/HTTP receiver and the query API/UI, started by `scripts/stack up` only
# when STACK_TRACING=jaeger. Sourced by scripts/stack.
#
# No registry ships a Jaeger binary, so it is built from the Go module proxy through the wrapper
# module scripts/lib/jaeger (Jaeger's go.mod has a replace directive, which `go install pkg@version`
# refuses). The build takes minutes on 2 cores; its result is cached as cache/jaeger-<version>/jaeger
# and reused by every later `up`. Go's module and build caches for it live in cache/go-jaeger while
# it builds (deleted after), so nothing depends on the machine's own GOPATH or GOCACHE. Needs Go
# 1.21+ on PATH (or STACK_GO); older than the wrapper's go line, Go fetches that toolchain from the
# module proxy.
#
# The module proxy's copy of Jaeger has no UI assets (the release build embeds them from the
# jaeger-ui repository): the query service then answers its JSON API (/api/traces/<id>,
# /api/services) and a placeholder page. STACK_JAEGER_UI_ASSETS names a folder holding a built
# jaeger-ui (packages/jaeger-ui/build) to serve instead.

JAEGER_MODULE_DIR="" # set by jaeger_paths
JAEGER_VERSION=""
JAEGER_CACHE=""
JAEGER_BIN=""
JAEGER_CONFIG=""
JAEGER_LOG=""
JAEGER_BUILD_LOG=""
jaeger_paths() {
  JAEGER_MODULE_DIR=$LIB/jaeger
  # The version the wrapper's go.mod requires; a new one there means a new cached binary.
  JAEGER_VERSION=$(awk '$1 == "github.com/jaegertracing/jaeger" { print $2; exit }' \
    "$JAEGER_MODULE_DIR/go.mod" 2>/dev/null)
  JAEGER_VERSION=${JAEGER_VERSION:-unknown}
  JAEGER_CACHE=$CACHE_DIR/jaeger-$JAEGER_VERSION
  JAEGER_BIN=$JAEGER_CACHE/jaeger
  JAEGER_CONFIG=$STACK_DIR/jaeger/config.yaml
  JAEGER_LOG=$LOG_DIR/jaeger.log
  JAEGER_BUILD_LOG=$CACHE_DIR/jaeger-build.log
}

# Asked for: STACK_TRACING=jaeger.
jaeger_wanted() {
  case ${STACK_TRACING:-} in
    jaeger) return 0 ;;
    "" | none | off) return 1 ;;
    *) die "STACK_TRACING='$STACK_TRACING': the only tracing backend is jaeger (or leave it unset)" ;;
  esac
}

jaeger_otlp_url() { printf 'http://127.0.0.1:%s' "$STACK_JAEGER_OTLP_PORT"; }
jaeger_ui_url() { printf 'http://127.0.0.1:%s' "$STACK_JAEGER_UI_PORT"; }

# The pattern that ties a pid to this stack's Jaeger: its config path is on its command line.
jaeger_pattern() { printf '%s' "$JAEGER_CONFIG"; }

jaeger_cached() { [[ -x $JAEGER_BIN && $(cat "$JAEGER_CACHE/VERSION" 2>/dev/null) == "$JAEGER_VERSION" ]]; }

# The go command: STACK_GO, go on PATH, or the upstream tarball's /usr/local/go.
jaeger_go() {
  local g
  for g in "${STACK_GO:-}" "$(command -v go 2>/dev/null)" /usr/local/go/bin/go; do
    [[ -n $g && -x $g ]] && {
      printf '%s' "$g"
      return 0
    }
  done
  return 1
}

# go with every cache and flag under the stack's cache folder. -modcacherw keeps the module cache
# deletable with rm -rf (Go makes it read-only otherwise).
jaeger_go_env() {
  local gocache=$CACHE_DIR/go-jaeger
  env GOMODCACHE="$gocache/mod" GOCACHE="$gocache/build" GOPATH="$gocache/path" \
    GOFLAGS="-mod=readonly -modcacherw -trimpath -buildvcs=false" GOTOOLCHAIN=auto \
    GOWORK=off CGO_ENABLED=0 "$@"
}

# Prints a line every 30 s while the build runs, counting the packages go has compiled; ends by
# itself should scripts/stack ($$, also in this subshell) be gone.
jaeger_build_ticker() {
  local started=$1
  while sleep 30 && alive $$; do
    say "  still building Jaeger: $(elapsed_since "$started") s, $(grep -c '^[a-z]' "$JAEGER_BUILD_LOG" 2>/dev/null || echo 0) packages compiled"
  done
}

# Builds cache/jaeger-<version>/jaeger unless it is there. Through a temporary dir, so an
# interrupted build never leaves a binary that looks finished. Needs about 4 GB of free disk while
# it runs (modules, compiled objects, Go's temporary dir), 81 MB after.
ensure_jaeger() {
  jaeger_cached && return 0
  [[ $JAEGER_VERSION != unknown ]] || die "no github.com/jaegertracing/jaeger requirement in $(show_path "$JAEGER_MODULE_DIR/go.mod")"
  local go started tmp ticker rc=0
  go=$(jaeger_go) || die "building Jaeger needs Go 1.21 or newer: put go on PATH or set STACK_GO (Debian's golang-go is too old)"
  started=$(now)
  say "building Jaeger v2 (module $JAEGER_VERSION) with $("$go" env GOVERSION 2>/dev/null || echo go) into $(show_path "$JAEGER_CACHE") (first time, several minutes)..."
  tmp=$CACHE_DIR/jaeger.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  : >"$JAEGER_BUILD_LOG"
  say "  downloading Jaeger's modules from the Go module proxy (log: $(show_path "$JAEGER_BUILD_LOG"))"
  (cd "$JAEGER_MODULE_DIR" && jaeger_go_env "$go" mod download) >>"$JAEGER_BUILD_LOG" 2>&1 || {
    show_log_tail "$JAEGER_BUILD_LOG"
    die "go mod download for Jaeger $JAEGER_VERSION failed"
  }
  say "  modules downloaded ($(elapsed_since "$started") s); compiling (about 2,300 packages)"
  jaeger_build_ticker "$started" 9>&- &
  ticker=$!
  (cd "$JAEGER_MODULE_DIR" && jaeger_go_env "$go" build -v \
    -ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_VERSION" \
    -o "$tmp/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger) >>"$JAEGER_BUILD_LOG" 2>&1 || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  if ((rc)); then
    show_log_tail "$JAEGER_BUILD_LOG"
    rm -rf "$CACHE_DIR/go-jaeger/build" "$tmp" # GBs of objects; the downloaded modules stay for a retry
    die "building Jaeger $JAEGER_VERSION failed (exit $rc); log: $(show_path "$JAEGER_BUILD_LOG")"
  fi
  "$tmp/jaeger" --help >/dev/null 2>&1 || die "the freshly built $tmp/jaeger does not run"
  echo "$JAEGER_VERSION" >"$tmp/VERSION"
  rm -rf "$JAEGER_CACHE"
  mv "$tmp" "$JAEGER_CACHE"
  # Go's caches (over 1 GB of modules and more of compiled objects) are of no use once the binary
  # exists; a new version downloads again (under a minute).
  say "  compiled ($(elapsed_since "$started") s); deleting Go's caches for it ($(du -sh "$CACHE_DIR/go-jaeger" 2>/dev/null | cut -f1))"
  chmod -R u+w "$CACHE_DIR/go-jaeger" 2>/dev/null || true
  rm -rf "$CACHE_DIR/go-jaeger" || say "could not delete $(show_path "$CACHE_DIR/go-jaeger") (Go's caches; safe to delete)"
  say "built Jaeger $JAEGER_VERSION in $(elapsed_since "$started") s: $(show_path "$JAEGER_BIN"), $(du -h "$JAEGER_BIN" | cut -f1)"
}

# The collector configuration: memory storage, OTLP over HTTP only (no gRPC receiver, no Jaeger
# or Zipkin receivers), the query service (API and UI over HTTP, its gRPC API beside), all on
# 127.0.0.1; no self-tracing and no metrics endpoint, so no other port is opened.
jaeger_write_config() {
  mkdir -p "${JAEGER_CONFIG%/*}"
  local ui=""
  if [[ -n ${STACK_JAEGER_UI_ASSETS:-} ]]; then
    [[ -f $STACK_JAEGER_UI_ASSETS/index.html ]] || die "STACK_JAEGER_UI_ASSETS=$STACK_JAEGER_UI_ASSETS has no index.html"
    ui=$(printf '    ui:\n      assets_path: "%s"\n' "$STACK_JAEGER_UI_ASSETS")
  fi
  cat >"$JAEGER_CONFIG" <<EOF
# Written by scripts/stack (scripts/lib/stack-jaeger.sh) at each start; edits are lost.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: info

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: ${STACK_JAEGER_MAX_TRACES}
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:${STACK_JAEGER_UI_PORT}
    grpc:
      endpoint: 127.0.0.1:${STACK_JAEGER_QUERY_GRPC_PORT}
${ui}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${STACK_JAEGER_OTLP_PORT}

processors:
  batch:
    timeout: 1s

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF
}

# Ready when the query API answers and the OTLP receiver listens.
jaeger_ready() {
  curl -sf -o /dev/null --max-time 2 "$(jaeger_ui_url)/api/services" && port_open "$STACK_JAEGER_OTLP_PORT"
}

jaeger_start() {
  ensure_jaeger
  ensure_port_free "$STACK_JAEGER_OTLP_PORT" "Jaeger's OTLP/HTTP receiver" STACK_JAEGER_OTLP_PORT
  ensure_port_free "$STACK_JAEGER_UI_PORT" "Jaeger's UI and query API" STACK_JAEGER_UI_PORT
  ensure_port_free "$STACK_JAEGER_QUERY_GRPC_PORT" "Jaeger's query gRPC API" STACK_JAEGER_QUERY_GRPC_PORT
  jaeger_write_config
  spawn jaeger "$JAEGER_LOG" "$JAEGER_BIN" --config "$JAEGER_CONFIG"
}

# The env file's lines, only while Jaeger runs.
jaeger_env() {
  live_pid jaeger "$(jaeger_pattern)" >/dev/null || return 0
  env_line OTEL_EXPORTER_OTLP_ENDPOINT "$(jaeger_otlp_url)"
  env_line JAEGER_UI "$(jaeger_ui_url)"
}
