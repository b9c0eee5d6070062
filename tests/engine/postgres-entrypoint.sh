#!/bin/sh
# Initialize PGDATA once from the official image's variables (the password or its _FILE), then run the server in the foreground.
set -eu
BIN=$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        cp "$POSTGRES_PASSWORD_FILE" /tmp/pwfile
    else
        printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pwfile
    fi
    "$BIN/initdb" -D "$PGDATA" --encoding=UTF8 --locale=C.UTF-8 -U "$POSTGRES_USER" --pwfile=/tmp/pwfile --auth-host=scram-sha-256 --auth-local=trust >/dev/null
    rm -f /tmp/pwfile
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "$POSTGRES_DB" != "postgres" ]; then
        "$BIN/createdb" -U "$POSTGRES_USER" "$POSTGRES_DB"
    fi
    "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' "$@"
