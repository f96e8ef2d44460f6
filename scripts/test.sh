#!/usr/bin/env bash
# Runs the whole test suite (unit, property, HTTP integration, crash and
# corruption tests, and the blob-store suite on memory, fs, S3, Azure Blob
# and GCS) against real RocksDB, opendal, loopback HTTP, a real SeaweedFS S3
# server, Azurite and gcp-storage-emulator.
#
# One SeaweedFS, one Azurite and one GCS emulator are started here on free
# 127.0.0.1 ports, each in a temp dir, and shared by all test binaries
# (EDEN_CAS_TEST_S3_*, EDEN_CAS_TEST_AZURITE_*, EDEN_CAS_TEST_GCS_*); a
# watchdog stops each when the tests end. If one cannot start, this fails:
# these tests never skip silently. (Run plain `cargo test` and the tests
# start their own.) EDEN_CAS_SKIP_S3=1, EDEN_CAS_SKIP_AZURITE=1 and
# EDEN_CAS_SKIP_GCS=1 skip them on purpose, loudly; CI never sets them.
#
# PostgreSQL (scripts/postgres.sh: Debian's server, initdb'd as the
# postgres user in a temp dir, on a free loopback port) backs the second run
# of the engine suite (EDEN_CAS_TEST_META=postgres: every engine test over
# PostgreSQL instead of RocksDB) and the PostgreSQL tests of the others
# (EDEN_CAS_TEST_PG_*). EDEN_CAS_SKIP_PG=1 skips them, loudly.
#
# The contract and deployment checks (tests/contract.rs: redocly,
# schemathesis, hadolint, check-jsonschema) use tools that setup.sh
# installs with scripts/contract-tools.sh; their paths are exported here
# (EDEN_CAS_REDOCLY, …). EDEN_CAS_SKIP_CONTRACT=1 skips them, loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eden-cas-target}"

# start NAME SKIP_VAR ENDPOINT_VAR TAG COMMAND... : unless skipped or already
# described, runs `COMMAND DIR OWNER_PID MAX_SECONDS` with a temp dir of its
# own, and exports the KEY=VALUE lines it prints. The watchdogs stop each
# server when this process ($$, which becomes `cargo test` below) exits, or
# after 2 hours, and remove its dir.
start() {
  local name="$1" skip="$2" endpoint="$3" tag="$4" out line
  shift 4
  if [ "${!skip:-}" = 1 ] || [ -n "${!endpoint:-}" ]; then return 0; fi
  out="$("$@" "$(mktemp -d "${TMPDIR:-/tmp}/eden-cas-$tag.XXXXXX")" $$ 7200)" ||
    { echo "test: $name did not start (set $skip=1 to skip its tests on purpose)" >&2; exit 1; }
  # Split at the first `=` only: values (a base64 key) may contain more.
  while IFS= read -r line; do [ -n "$line" ] && export "${line%%=*}=${line#*=}"; done <<<"$out"
  [ -n "${!endpoint:-}" ] || { echo "test: $name printed no endpoint" >&2; exit 1; }
}

start SeaweedFS EDEN_CAS_SKIP_S3 EDEN_CAS_TEST_S3_ENDPOINT s3 scripts/seaweedfs.sh start
start Azurite EDEN_CAS_SKIP_AZURITE EDEN_CAS_TEST_AZURITE_ENDPOINT azurite scripts/emulators.sh start azurite
start gcp-storage-emulator EDEN_CAS_SKIP_GCS EDEN_CAS_TEST_GCS_ENDPOINT gcs scripts/emulators.sh start gcs
start PostgreSQL EDEN_CAS_SKIP_PG EDEN_CAS_TEST_PG_URL pg scripts/postgres.sh start
if [ "${EDEN_CAS_SKIP_CONTRACT:-}" != 1 ]; then
  tools="$(scripts/contract-tools.sh install)" ||
    { echo "test: the contract tools are missing (set EDEN_CAS_SKIP_CONTRACT=1 to skip those tests on purpose)" >&2; exit 1; }
  while IFS= read -r line; do [ -n "$line" ] && export "${line%%=*}=${line#*=}"; done <<<"$tools"
fi
if [ $# -gt 0 ] && [ "$*" != --no-fail-fast ]; then
  # A chosen subset: one run (set EDEN_CAS_TEST_META=postgres for the
  # PostgreSQL engine).
  exec cargo test "$@"
fi
status=0
cargo test "$@" || status=$?
if [ "${EDEN_CAS_SKIP_PG:-}" = 1 ]; then
  echo "test: EDEN_CAS_SKIP_PG=1: the engine suite did NOT run on PostgreSQL" >&2
else
  echo "test: the engine suite again, over PostgreSQL (EDEN_CAS_TEST_META=postgres)" >&2
  EDEN_CAS_TEST_META=postgres cargo test "$@" --test engine || status=$?
fi
exit "$status"
