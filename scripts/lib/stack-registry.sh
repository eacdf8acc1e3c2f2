# shellcheck shell=bash
# Apicurio Registry (a Confluent-compatible schema registry at /apis/ccompat/v7) from
# cache/apicurio, storing its schemas in the stack's PostgreSQL. Sourced by scripts/stack.
#
# Property names are those Apicurio 3.3.3 reads (its application.properties): the datasource
# `apicurio.datasource.*` feeds `quarkus.datasource.postgresql.*`, selected by
# `apicurio.storage.sql.kind=postgresql`. validate-on-borrow lets it survive a PostgreSQL restart
# (otherwise the first request on each stale pooled connection fails with a 500).
#
# Authentication (checked live against 3.3.3): HTTP basic auth against Quarkus' embedded users
# realm, with Apicurio's role-based authorization. Every call needs a user, reads included (no
# anonymous reads: an event's schema says what the shop stores and sells). The operator
# (REGISTRY_OPERATOR, role sr-admin) registers schemas with `choreo schemas register`; each
# service has a read-only user named after it (role sr-readonly), which may fetch schemas by id
# and look up a schema's id (POST /subjects/{subject}) but never register or delete. Passwords
# come from secret_file (secrets/registry-<user>) and reach the registry through a properties file
# of mode 600 (quarkus.config.locations), never its command line. Without credentials the API
# answers 401; a read-only user writing gets 403.

REGISTRY_JAR=quarkus-run.jar
REGISTRY_LOG="" # set by registry_paths
registry_paths() { REGISTRY_LOG=$LOG_DIR/registry.log; }

registry_url() { printf 'http://127.0.0.1:%s/apis/ccompat/v7' "$STACK_REGISTRY_PORT"; }

# The operator's user (role sr-admin) and the services' read-only users.
REGISTRY_OPERATOR=operator
REGISTRY_READERS=(order inventory payment shipping) # the services that encode or decode events

registry_password_file() { secret_file "registry-$1"; }

# Ready when the API answers the operator (so the users realm is loaded too); the credentials go
# to curl on stdin, not on its command line.
registry_ready() {
  local pw
  pw=$(cat "$(registry_password_file "$REGISTRY_OPERATOR")")
  printf 'user = "%s:%s"\n' "$REGISTRY_OPERATOR" "$pw" |
    curl -sf -o /dev/null --max-time 2 -K - "$(registry_url)/subjects"
}

# The users realm and role mapping, and the registry's database password, written to
# $STACK_DIR/registry/auth.properties (mode 600).
registry_auth_props() {
  local f=$STACK_DIR/registry/auth.properties user role
  (
    umask 077
    {
      echo quarkus.http.auth.basic=true
      echo quarkus.security.users.embedded.enabled=true
      echo quarkus.security.users.embedded.plain-text=true
      echo apicurio.auth.role-based-authorization=true
      echo apicurio.auth.role-source=token
      echo apicurio.auth.anonymous-read-access.enabled=false
      # Its database password too: a -D flag would show in `ps`.
      echo "apicurio.datasource.password=$(pg_password "$PG_REGISTRY_DB")"
      for user in "$REGISTRY_OPERATOR" "${REGISTRY_READERS[@]}"; do
        role=sr-readonly
        [[ $user == "$REGISTRY_OPERATOR" ]] && role=sr-admin
        echo "quarkus.security.users.embedded.users.$user=$(cat "$(registry_password_file "$user")")"
        echo "quarkus.security.users.embedded.roles.$user=$role"
      done
    } >"$f.tmp"
    mv "$f.tmp" "$f"
  )
  printf '%s' "$f"
}

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
    "apicurio.datasource.url=jdbc:postgresql://127.0.0.1:$STACK_PG_PORT/$PG_REGISTRY_DB?sslmode=verify-full&sslrootcert=$TLS_DIR/ca.crt"
    "apicurio.datasource.username=$PG_REGISTRY_DB"
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
  local props auth
  auth=$(registry_auth_props)
  mapfile -t props < <(registry_props)
  props+=("-Dquarkus.config.locations=file:$auth")
  spawn registry "$REGISTRY_LOG" "$java" -Xmx384m "${props[@]}" -jar "$REGISTRY_CACHE/$REGISTRY_JAR"
}
