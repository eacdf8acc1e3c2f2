# shellcheck shell=bash
# Apicurio Registry (a Confluent-compatible schema registry at /apis/ccompat/v7) from
# cache/apicurio, storing its schemas in the stack's PostgreSQL. Sourced by scripts/stack.
#
# Property names are those Apicurio 3.3.3 reads (its application.properties): the datasource
# `apicurio.datasource.*` feeds `quarkus.datasource.postgresql.*`, selected by
# `apicurio.storage.sql.kind=postgresql`. validate-on-borrow lets it survive a PostgreSQL restart
# (otherwise the first request on each stale pooled connection fails with a 500).

REGISTRY_JAR=quarkus-run.jar
REGISTRY_LOG="" # set by registry_paths
registry_paths() { REGISTRY_LOG=$LOG_DIR/registry.log; }

registry_url() { printf 'http://127.0.0.1:%s/apis/ccompat/v7' "$STACK_REGISTRY_PORT"; }

registry_ready() { curl -sf -o /dev/null --max-time 2 "$(registry_url)/subjects"; }

# legacy-id-mode=false (Apicurio's default, stated so it is not left to chance): the ccompat API
# hands out content ids, and GET /schemas/ids/{id} looks up content ids, so the id in the Confluent
# wire format resolves; the same schema text under two subjects gets one id, as with Confluent.
registry_props() {
  local p=(
    quarkus.http.host=127.0.0.1
    "quarkus.http.port=$STACK_REGISTRY_PORT"
    quarkus.management.host=127.0.0.1
    "quarkus.management.port=$STACK_REGISTRY_MANAGEMENT_PORT"
    apicurio.storage.kind=sql
    apicurio.storage.sql.kind=postgresql
    "apicurio.datasource.url=jdbc:postgresql://127.0.0.1:$STACK_PG_PORT/$PG_REGISTRY_DB"
    "apicurio.datasource.username=$PG_REGISTRY_DB"
    "apicurio.datasource.password=$PG_REGISTRY_DB"
    apicurio.datasource.jdbc.initial-size=2
    apicurio.datasource.jdbc.min-size=2
    apicurio.datasource.jdbc.max-size=20
    quarkus.datasource.postgresql.jdbc.validate-on-borrow=true
    apicurio.ccompat.legacy-id-mode.enabled=false
    "quarkus.log.console.format=%d{yyyy-MM-dd HH:mm:ss} %p [%c{2.}] (%t) %m%n"
    "apicurio.storage.snapshot.location=$STACK_DIR/registry"
    "apicurio.import.work-dir=$STACK_DIR/registry"
  )
  printf -- '-D%s\n' "${p[@]}"
}

registry_start() {
  local java
  java=$(registry_java)
  resolve_registry
  ensure_port_free "$STACK_REGISTRY_PORT" "the registry" STACK_REGISTRY_PORT
  ensure_port_free "$STACK_REGISTRY_MANAGEMENT_PORT" "the registry management interface" STACK_REGISTRY_MANAGEMENT_PORT
  mkdir -p "$STACK_DIR/registry"
  local props
  mapfile -t props < <(registry_props)
  spawn registry "$REGISTRY_LOG" "$java" -Xmx384m "${props[@]}" -jar "$REGISTRY_CACHE/$REGISTRY_JAR"
}
