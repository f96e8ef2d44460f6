#!/usr/bin/env bash
# Runs the whole test suite (unit, property, HTTP integration, crash and
# corruption tests) against real RocksDB, opendal and loopback HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eden-cas-target}"
exec cargo test "$@"
