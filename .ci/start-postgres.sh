#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on the loopback address for the storage tests; prints its URL.
set -euo pipefail
PORT=${PGPORT_TEST:-55432}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGDATA=$(mktemp -d /tmp/audit-pg.XXXXXX)
chown postgres "$PGDATA"
su postgres -s /bin/bash -c "$PGBIN/initdb -D $PGDATA -A trust -U postgres >/dev/null" >&2
su postgres -s /bin/bash -c "$PGBIN/pg_ctl -D $PGDATA -l $PGDATA/server.log -w \
  -o \"-c listen_addresses=127.0.0.1 -p $PORT -k /tmp -c fsync=off\" start" >&2
su postgres -s /bin/bash -c "$PGBIN/createdb -h 127.0.0.1 -p $PORT audit_test" >&2
echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/audit_test"
