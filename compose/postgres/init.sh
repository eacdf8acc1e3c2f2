#!/usr/bin/env bash
# Run once by the postgres image on an empty data directory (/docker-entrypoint-initdb.d): one
# role and database per service, and the registry's, each role's password read from the file the
# `secrets` service made (/run/secrets/shop/<role>); no password is in git. Role = database, the
# names of scripts/lib/stack-postgres.sh ("order" is a reserved word, hence the prefix).
set -euo pipefail
for db in shop_order shop_inventory shop_payment shop_shipping shop_gateway registry; do
  password=$(cat "/run/secrets/shop/$db")
  psql -v ON_ERROR_STOP=1 --username postgres --dbname postgres \
    --set role="$db" --set password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
SQL
done
