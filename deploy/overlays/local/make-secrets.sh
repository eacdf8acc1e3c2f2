#!/usr/bin/env bash
# Makes the local overlay's secrets once, before the first `kubectl apply -k deploy/overlays/local`:
# random passwords and tokens in secrets/ (gitignored, mode 600), never overwritten by a second
# run, so re-applying keeps them. kustomize's secretGenerator turns each folder into a Secret.
#
#   SHOP_CA_FILE=path/to/ca.crt deploy/overlays/local/make-secrets.sh
#
# SHOP_CA_FILE is the CA that signed the Kafka brokers' and PostgreSQL's certificates (clients
# verify both). The passwords the infrastructure must know land in secrets/infra/: the SCRAM users
# to create on Kafka, the registry's users file (Quarkus embedded realm properties) and the SQL
# creating the PostgreSQL roles. Nothing here is ever committed.
set -euo pipefail
cd "$(dirname "$0")"
umask 077
S=secrets
: "${SHOP_CA_FILE:?set SHOP_CA_FILE to the CA certificate of Kafka and PostgreSQL}"

random_secret() { head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n='; }
# value NAME: the secret in $S/values/NAME, made on first use.
value() {
  local f=$S/values/$1
  if [[ ! -s $f ]]; then
    mkdir -p "$S/values"
    random_secret >"$f"
  fi
  cat "$f"
}
put() { mkdir -p "$S/$1" && printf '%s' "$3" >"$S/$1/$2"; }

SERVICES=(order inventory payment shipping)
pg_url() { # role database password
  printf 'postgres://%s:%s@postgres:5432/%s?sslmode=verify-full&sslrootcert=/etc/shop/tls/ca.crt' "$1" "$3" "$2"
}

mkdir -p "$S/ca"
cp "$SHOP_CA_FILE" "$S/ca/ca.crt"

for svc in "${SERVICES[@]}" gateway; do
  put "$svc" database-url "$(pg_url "shop_${svc}_app" "shop_$svc" "$(value "pg-shop_${svc}_app")")"
  put "$svc" database-migration-url "$(pg_url "shop_$svc" "shop_$svc" "$(value "pg-shop_$svc")")"
  put "$svc" service-token "$(value service-token)"
done
for svc in "${SERVICES[@]}"; do
  put "$svc" kafka-password "$(value "kafka-$svc")"
  put "$svc" registry-password "$(value "registry-$svc")"
  put "$svc" operator-token "$(value operator-token)"
done
put gateway jwt-secret "$(value gateway-jwt-secret)"
put init kafka-password "$(value kafka-admin)"
put init registry-password "$(value registry-operator)"
put keda sasl scram_sha512
put keda username keda
put keda password "$(value kafka-keda)"
put keda tls enable
cp "$SHOP_CA_FILE" "$S/keda/ca"

# What the infrastructure must be told (never applied from here).
mkdir -p "$S/infra"
{
  for u in admin keda "${SERVICES[@]}"; do
    printf -- "--add-scram 'SCRAM-SHA-512=[name=%s,password=\"%s\"]'\n" "$u" "$(value "kafka-$u")"
  done
} >"$S/infra/kafka-scram-users"
{
  echo "quarkus.security.users.embedded.users.operator=$(value registry-operator)"
  echo "quarkus.security.users.embedded.roles.operator=sr-admin"
  for u in "${SERVICES[@]}"; do
    echo "quarkus.security.users.embedded.users.$u=$(value "registry-$u")"
    echo "quarkus.security.users.embedded.roles.$u=sr-readonly"
  done
} >"$S/infra/registry-users.properties"
{
  for svc in "${SERVICES[@]}" gateway; do
    echo "ALTER ROLE shop_$svc PASSWORD '$(value "pg-shop_$svc")';"
    echo "ALTER ROLE shop_${svc}_app PASSWORD '$(value "pg-shop_${svc}_app")';"
  done
} >"$S/infra/postgres-passwords.sql"
echo "secrets in $(pwd)/$S (mode 600); tell the infrastructure what $S/infra/ says" >&2
