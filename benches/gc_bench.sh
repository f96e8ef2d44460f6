#!/usr/bin/env bash
# GC benchmark: builds a store of 100k+ chunks (a checkpoint series with
# small chunks, `examples/gc_fixture.rs`), deletes every other checkpoint,
# then runs the release `eden-cas gc` on it and reports time, peak RSS and
# bytes reclaimed; then `eden-cas fsck` on the result (pack verification
# throughput = what the scrubber does, on the fs backend). Usage:
#   benches/gc_bench.sh [CHECKPOINTS=12] [MIB=200] [CHANGED_PCT=10]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-12}"; MIB="${2:-200}"; PCT="${3:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eden-cas-target}"
cargo build --release --quiet --bin eden-cas --example gc_fixture
BIN="$CARGO_TARGET_DIR/release/eden-cas"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$CARGO_TARGET_DIR/release/examples/gc_fixture" "$WORK/data" "$N" "$MIB" "$PCT"
du -sb "$WORK/data/blobs" | awk '{printf "blob store before: %.1f MiB\n", $1/1048576}'
export RUST_LOG=warn
echo "--- eden-cas gc --dry-run"
"$BIN" gc --data-dir "$WORK/data" --dry-run
echo "--- eden-cas gc"
"$BIN" gc --data-dir "$WORK/data"
du -sb "$WORK/data/blobs" | awk '{printf "blob store after: %.1f MiB\n", $1/1048576}'
echo "--- eden-cas gc (again: nothing left)"
"$BIN" gc --data-dir "$WORK/data" --json | grep -E '"bytes_reclaimed"|"elapsed_ms"'
if "$BIN" fsck --help >/dev/null 2>&1; then
  echo "--- eden-cas fsck"
  "$BIN" fsck --data-dir "$WORK/data" || echo "fsck exit $?"
fi
