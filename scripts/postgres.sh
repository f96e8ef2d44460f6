#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for tests and benchmarks (the
# shared metadata engine of a multi-node store, issue 11).
#
#   scripts/postgres.sh find                 # print the bin dir of Debian's PostgreSQL (exit 1 if absent)
#   scripts/postgres.sh start DIR [OWNER_PID] [MAX_SECONDS]
#   scripts/postgres.sh stop DIR
#
# `start` runs `initdb` in DIR/data (as the `postgres` user when run as root:
# PostgreSQL refuses to run as root), starts the server on a free loopback
# port with its socket in DIR, creates a database `eden` owned by a role
# `eden` (random password, scram-sha-256) and a role `eden_ro` that may only
# read, and writes DIR/env (shell syntax) with:
#   EDEN_CAS_TEST_PG_URL        postgres://eden@127.0.0.1:PORT/eden
#   EDEN_CAS_TEST_PG_PASSWORD   the password of `eden` (pass it as PGPASSWORD)
#   EDEN_CAS_TEST_PG_RO_URL / EDEN_CAS_TEST_PG_RO_PASSWORD   (read-only role)
#   POSTGRES_PID
# and prints the same lines. Passwords are random per run and only for this
# local server. A watchdog stops the server when OWNER_PID exits or after
# MAX_SECONDS (default 3600), whichever comes first, and then removes DIR:
# give it a directory of its own. It listens on 127.0.0.1 only.
set -euo pipefail

log() { echo "postgres: $*" >&2; }
# shellcheck source=lib/services.sh
. "$(dirname "$0")/lib/services.sh"

find_bin() {
  if [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/initdb" ]; then echo "$PG_BIN"; return 0; fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

# as_owner CMD...: runs CMD as the user that owns the cluster.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local dir="$1" owner="${2:-$PPID}" max="${3:-3600}" bin port pw ro_pw
  bin="$(find_bin)" || { log "PostgreSQL is not installed (scripts/setup.sh installs Debian's postgresql)"; exit 1; }
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  port="$(free_ports 1)"
  pw="$(rand_hex 16)"; ro_pw="$(rand_hex 16)"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || { log "no postgres user (install Debian's postgresql package)"; exit 1; }
    chown postgres "$dir"
  fi
  chmod 700 "$dir"
  as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 ||
    { log "initdb failed:"; tail -n 20 "$dir/initdb.log" >&2; exit 1; }
  # Throwaway test cluster: no fsync (its data lives for one test run).
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null ||
    { log "the server did not start:"; tail -n 20 "$dir/postgres.log" >&2; exit 1; }
  local pid
  pid="$(head -n 1 "$dir/data/postmaster.pid")"
  echo "$pid" >"$dir/pid"
  watchdog "$pid" "$owner" "$max" "$dir"
  # Passwords travel on stdin, never in argv (`ps`).
  as_owner "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres >/dev/null <<SQL
CREATE ROLE eden LOGIN PASSWORD '$pw';
CREATE ROLE eden_ro LOGIN PASSWORD '$ro_pw';
CREATE DATABASE eden OWNER eden;
\\c eden
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO eden_ro;
ALTER DEFAULT PRIVILEGES FOR ROLE eden IN SCHEMA public GRANT SELECT ON TABLES TO eden_ro;
SQL
  {
    echo "EDEN_CAS_TEST_PG_URL=postgres://eden@127.0.0.1:$port/eden"
    echo "EDEN_CAS_TEST_PG_PASSWORD=$pw"
    echo "EDEN_CAS_TEST_PG_RO_URL=postgres://eden_ro@127.0.0.1:$port/eden"
    echo "EDEN_CAS_TEST_PG_RO_PASSWORD=$ro_pw"
    echo "POSTGRES_PID=$pid"
  } >"$dir/env.tmp"
  chmod 600 "$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
  cat "$dir/env"
  log "PostgreSQL on 127.0.0.1:$port (database eden, pid $pid, log $dir/postgres.log)"
}

stop_pg() {
  local dir="$1" bin
  if [ -f "$dir/data/postmaster.pid" ] && bin="$(find_bin)"; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
  fi
  stop "$dir"
}

case "${1:-}" in
  find) find_bin ;;
  start) [ -n "${2:-}" ] || { echo "usage: $0 start DIR [OWNER_PID] [MAX_SECONDS]" >&2; exit 2; }; start "$2" "${3:-}" "${4:-}" ;;
  stop) [ -n "${2:-}" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop_pg "$2" ;;
  *) echo "usage: $0 find | start DIR [OWNER_PID] [MAX_SECONDS] | stop DIR" >&2; exit 2 ;;
esac
