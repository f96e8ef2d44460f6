#!/usr/bin/env bash
# GC benchmark: builds a store of 100k+ chunks (a checkpoint series with
# small chunks, `examples/gc_fixture.rs`), deletes half of it (the oldest
# half, or every other checkpoint), then runs the release `eden-cas gc` on it
# with the default compaction threshold (0.8) and again with 1.0, and
# reports time, peak RSS and bytes reclaimed; then `eden-cas fsck` on the
# result (pack verification throughput = what the scrubber does, on fs).
# Usage:
#   benches/gc_bench.sh [CHECKPOINTS=12] [MIB=240] [CHANGED_PCT=10] [oldest|alternate]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-12}"; MIB="${2:-240}"; PCT="${3:-10}"; MODE="${4:-oldest}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eden-cas-target}"
cargo build --release --quiet --bin eden-cas --example gc_fixture
BIN="$CARGO_TARGET_DIR/release/eden-cas"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$CARGO_TARGET_DIR/release/examples/gc_fixture" "$WORK/data" "$N" "$MIB" "$PCT" "$MODE"
du -sb "$WORK/data/blobs" | awk '{printf "blob store before: %.1f MiB\n", $1/1048576}'
export RUST_LOG=warn
echo "--- eden-cas gc --dry-run"
"$BIN" gc --data-dir "$WORK/data" --dry-run
echo "--- eden-cas gc"
"$BIN" gc --data-dir "$WORK/data"
du -sb "$WORK/data/blobs" | awk '{printf "blob store after: %.1f MiB\n", $1/1048576}'
echo "--- eden-cas gc with gc-compact-below = 1.0 (every dead byte)"
echo "gc-compact-below = 1.0" > "$WORK/full.toml"
"$BIN" gc --data-dir "$WORK/data" --config "$WORK/full.toml"
du -sb "$WORK/data/blobs" | awk '{printf "blob store after: %.1f MiB\n", $1/1048576}'
echo "--- eden-cas gc (again: nothing left)"
"$BIN" gc --data-dir "$WORK/data" --json | grep -E '"bytes_reclaimed"|"elapsed_ms"'
if "$BIN" fsck --help >/dev/null 2>&1; then
  echo "--- eden-cas fsck"
  "$BIN" fsck --data-dir "$WORK/data" || echo "fsck exit $?"
fi
