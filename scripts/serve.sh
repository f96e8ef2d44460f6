#!/usr/bin/env bash
# Runs the server on embedded defaults (./eden-cas-data, 127.0.0.1:8080).
# Extra arguments go to `eden-cas serve` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --build-only
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eden-cas-target}"
exec cargo run --release --quiet -- serve "$@"
