#!/usr/bin/env bash
# Runs the whole test suite (unit, property, HTTP integration, crash and
# corruption tests, and the blob-store suite on memory, fs and S3) against
# real RocksDB, opendal, loopback HTTP and a real SeaweedFS S3 server.
#
# One SeaweedFS is started here on free 127.0.0.1 ports and shared by all
# test binaries (EDEN_CAS_TEST_S3_*); it stops when the tests end. If it
# cannot start, this fails: the S3 tests never skip silently. (Run plain
# `cargo test` and the S3 tests start their own.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eden-cas-target}"
if [ "${EDEN_CAS_SKIP_S3:-}" != 1 ] && [ -z "${EDEN_CAS_TEST_S3_ENDPOINT:-}" ]; then
  S3_DIR="$(mktemp -d "${TMPDIR:-/tmp}/eden-cas-s3.XXXXXX")"
  # The watchdog stops the server when this process ($$, which becomes
  # `cargo test` below) exits, or after 2 hours.
  S3_ENV="$(scripts/seaweedfs.sh start "$S3_DIR" $$ 7200)" ||
    { echo "test: SeaweedFS did not start (set EDEN_CAS_SKIP_S3=1 to skip the S3 tests on purpose)" >&2; exit 1; }
  while IFS='=' read -r k v; do [ -n "$k" ] && export "$k=$v"; done <<<"$S3_ENV"
  [ -n "${EDEN_CAS_TEST_S3_ENDPOINT:-}" ] || { echo "test: SeaweedFS printed no endpoint" >&2; exit 1; }
fi
exec cargo test "$@"
