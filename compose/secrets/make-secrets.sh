#!/usr/bin/env bash
# The one-shot `secrets` service: random passwords and tokens, made on the first `up` into the
# volume `secrets` and kept (a file that exists is never rewritten), then laid out as one folder
# per reader, owned by that reader's uid, which compose mounts into it alone (volume subpath):
#
#   values/      every secret once (root only)
#   postgres/    the superuser's password and one file per role (uid 999, the postgres image)
#   registry/    auth.properties: the registry's users, roles and database password (uid 1001)
#   init/        the operator's registry password (the choreo image, uid 10001)
#   <service>/   pgpass (its database role), registry-password (its read-only user),
#                service-token, operator-token; the gateway: pgpass, jwt-secret, service-token
#
# Nothing secret is in git: `docker compose down -v` drops the volume, and the next `up` makes
# new ones (and a new database, which `down -v` dropped too).
set -euo pipefail
umask 077
S=/secrets
SERVICES=(order inventory payment shipping)

value() {
  local f=$S/values/$1
  if [[ ! -s $f ]]; then
    mkdir -p "$S/values"
    head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n=' >"$f"
  fi
  cat "$f"
}
# put OWNER DIR FILE VALUE: DIR/FILE, mode 0400, owned by uid OWNER.
put() {
  mkdir -p "$S/$2"
  printf '%s' "$4" >"$S/$2/$3"
  chown "$1:$1" "$S/$2" "$S/$2/$3"
  chmod 0500 "$S/$2"
  chmod 0400 "$S/$2/$3"
}

put 999 postgres postgres-password "$(value postgres)"
for role in "${SERVICES[@]}" gateway registry; do
  db=$role
  [[ $role == registry ]] || db=shop_$role
  put 999 postgres "$db" "$(value "pg-$db")"
done

for svc in "${SERVICES[@]}" gateway; do
  put 10001 "$svc" pgpass "postgres:5432:shop_$svc:shop_$svc:$(value "pg-shop_$svc")"
  put 10001 "$svc" service-token "$(value service-token)"
done
for svc in "${SERVICES[@]}"; do
  put 10001 "$svc" registry-password "$(value "registry-$svc")"
  put 10001 "$svc" operator-token "$(value operator-token)"
done
put 10001 gateway jwt-secret "$(value gateway-jwt-secret)"
put 10001 init registry-password "$(value registry-operator)"

auth="quarkus.http.auth.basic=true
quarkus.security.users.embedded.enabled=true
quarkus.security.users.embedded.plain-text=true
apicurio.auth.role-based-authorization=true
apicurio.auth.role-source=token
apicurio.auth.anonymous-read-access.enabled=false
apicurio.datasource.password=$(value pg-registry)
quarkus.security.users.embedded.users.operator=$(value registry-operator)
quarkus.security.users.embedded.roles.operator=sr-admin"
for svc in "${SERVICES[@]}"; do
  auth+="
quarkus.security.users.embedded.users.$svc=$(value "registry-$svc")
quarkus.security.users.embedded.roles.$svc=sr-readonly"
done
put 1001 registry auth.properties "$auth"
echo "secrets ready in the volume (kept across restarts; 'down -v' drops them)"
