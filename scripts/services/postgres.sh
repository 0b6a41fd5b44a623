#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for the test suite.
#   postgres.sh start DIR   installs PostgreSQL 15 if missing, starts a server with its
#                           data under DIR, prints `PROFILESTORE_TEST_POSTGRES_URL=...`
#   postgres.sh stop DIR    stops it (immediately, like a crash) and removes nothing
#   postgres.sh resume DIR  starts the stopped server again on the same port
set -euo pipefail
here=$(dirname "$0"); . "$here/common.sh"
cmd=${1:?usage: postgres.sh start|stop|resume DIR}; root=${2:?usage: postgres.sh start|stop|resume DIR}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

case "$cmd" in
start)
  ensure_packages "/usr/lib/postgresql/*/bin/pg_ctl" postgresql-15 postgresql-client-15
  trap 'echo "error: postgres.sh start failed at line $LINENO ($BASH_COMMAND)" >&2; tail -n 15 "$root"/*.log >&2 2>/dev/null' ERR
  bin=$(pg_bin)
  mkdir -p "$root"; chmod 755 "$root"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$root"
  port=$(free_port)
  as_user postgres "$bin/initdb" -D "$root/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$root/initdb.log"
  # fsync off: a test server; durability is SQLite's and PostgreSQL's business in production.
  as_user postgres "$bin/pg_ctl" -D "$root/data" -l "$root/server.log" -w -t 60 \
    -o "-p $port -h 127.0.0.1 -k $root -c fsync=off -c full_page_writes=off -c max_connections=300" start >/dev/null
  "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -qc "CREATE DATABASE profilestore_test" >/dev/null
  echo "$port" >"$root/port"
  echo "PROFILESTORE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$port/profilestore_test"
  ;;
resume)
  bin=$(pg_bin); port=$(cat "$root/port")
  as_user postgres "$bin/pg_ctl" -D "$root/data" -l "$root/server.log" -w -t 60 \
    -o "-p $port -h 127.0.0.1 -k $root -c fsync=off -c full_page_writes=off -c max_connections=300" start >/dev/null
  ;;
stop)
  bin=$(pg_bin)
  if [ -n "$bin" ] && [ -f "$root/data/postmaster.pid" ]; then
    as_user postgres "$bin/pg_ctl" -D "$root/data" -m immediate -w -t 30 stop >/dev/null || true
  fi
  ;;
*) echo "usage: postgres.sh start|stop|resume DIR" >&2; exit 2 ;;
esac
