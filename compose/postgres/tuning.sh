#!/bin/sh
# Run once by the postgres image on an empty data directory (/docker-entrypoint-initdb.d): has
# the server include the shop's tuning (scripts/lib/postgres-tuning.conf, mounted read-only at
# /etc/postgresql/tuning.conf) from its next start on, the one the image makes after init.
echo "include '/etc/postgresql/tuning.conf'" >>"$PGDATA/postgresql.conf"
