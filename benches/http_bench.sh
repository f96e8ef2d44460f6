#!/usr/bin/env bash
# Macro benchmark: deposits and fetches real gigabytes over HTTP (v0
# multipart deposit, v0 fetch) against a release build, and reports MB/s and
# the server's peak RSS (VmHWM). Usage:
#   benches/http_bench.sh [SIZE_MIB=1024] [RUNS=3]   (EDEN_CAS_BIN: see below)
# Prints one line per measurement and a median summary per phase.
set -euo pipefail
# A failed curl inside $(…) must stop the run, not be timed as a fast one.
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
SIZE_MIB="${1:-1024}"
RUNS="${2:-3}"
# EDEN_CAS_BIN=/path/to/eden-cas benchmarks that binary instead of building
# (before/after comparisons: run both binaries alternately in one session).
if [ -n "${EDEN_CAS_BIN:-}" ]; then
  BIN="$EDEN_CAS_BIN"
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eden-cas-target}"
  cargo build --release --quiet
  BIN="$CARGO_TARGET_DIR/release/eden-cas"
fi
WORK="$(mktemp -d)"
trap 'kill "${PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
TOKEN="bench-admin-token-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
EXP="exp_00000000000000000000000000"

start_server() {
  # A stale listening line of the previous server would name its port.
  rm -rf "$WORK/data" "$WORK/stdout"
  EDEN_CAS_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$BIN" serve --data-dir "$WORK/data" \
    --listen 127.0.0.1:0 --max-artifact-bytes "$(( (SIZE_MIB + 64) * 1024 * 1024 ))" \
    >"$WORK/stdout" 2>"$WORK/stderr" &
  PID=$!
  for _ in $(seq 1 100); do
    PORT=$(sed -n 's/^EDEN_CAS_LISTENING host=.* port=\([0-9]*\)$/\1/p' "$WORK/stdout" 2>/dev/null || true)
    [ -n "$PORT" ] && return 0
    sleep 0.1
  done
  echo "server did not start" >&2; cat "$WORK/stderr" >&2; exit 1
}
stop_server() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
peak_rss_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$PID/status"; }

# The bearer goes to curl in a header file (-H @file), never in argv (`ps`).
(umask 077; printf 'Authorization: Bearer admin:%s\nX-Eden-Experiment-Id: %s\n' "$TOKEN" "$EXP" >"$WORK/headers")

deposit() { # file -> prints seconds; the URI goes to $WORK/uri
  local t0 t1 out
  rm -f "$WORK/uri"
  t0=$(date +%s.%N)
  out=$(curl -sS --fail-with-body -X POST "http://127.0.0.1:$PORT/v0/experiments/$EXP/artifacts" \
    -H @"$WORK/headers" \
    -F "file=@$1;type=application/octet-stream")
  t1=$(date +%s.%N)
  printf '%s' "$out" | sed -n 's/.*"artifacts_uri":"\([^"]*\)".*/\1/p' >"$WORK/uri"
  [ -s "$WORK/uri" ] || { echo "deposit answered no URI: $out" >&2; tail -n 20 "$WORK/stderr" >&2; exit 1; }
  echo "$t0 $t1" | awk '{print $2-$1}'
}
fetch() { # uri -> prints seconds; checks the digest
  local t0 t1
  t0=$(date +%s.%N)
  rm -f "$WORK/out"
  curl -sS --fail "http://127.0.0.1:$PORT/v0/experiments/$EXP/artifacts?uri=$(printf '%s' "$1" | sed 's/:/%3A/; s#/#%2F#g')" \
    -H @"$WORK/headers" -o "$WORK/out"
  t1=$(date +%s.%N)
  echo "$t0 $t1" | awk '{print $2-$1}'
}
mbps() { awk -v s="$1" -v m="$SIZE_MIB" 'BEGIN {printf "%.0f", m*1048576/1e6/s}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "generating $SIZE_MIB MiB of random data" >&2
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$WORK/in"
IN_SUM=$(sha256sum "$WORK/in" | cut -d' ' -f1)

declare -a NEW STORED GET RSS
for run in $(seq 1 "$RUNS"); do
  start_server
  s=$(deposit "$WORK/in"); NEW+=("$(mbps "$s")"); r1=$(peak_rss_mib)
  s=$(deposit "$WORK/in"); STORED+=("$(mbps "$s")")
  s=$(fetch "$(cat "$WORK/uri")"); GET+=("$(mbps "$s")")
  [ "$(sha256sum "$WORK/out" | cut -d' ' -f1)" = "$IN_SUM" ] || { echo "fetched bytes differ" >&2; exit 1; }
  RSS+=("$r1")
  echo "run $run: new ${NEW[-1]} MB/s, stored ${STORED[-1]} MB/s, fetch ${GET[-1]} MB/s, peak RSS after 1st deposit ${r1} MiB, after all $(peak_rss_mib) MiB, packs $(du -sm "$WORK/data/blobs" | cut -f1) MiB"
  stop_server
done
echo "median over $RUNS runs of $SIZE_MIB MiB: deposit-new $(printf '%s\n' "${NEW[@]}" | median) MB/s," \
  "deposit-stored $(printf '%s\n' "${STORED[@]}" | median) MB/s, fetch $(printf '%s\n' "${GET[@]}" | median) MB/s," \
  "peak RSS during new deposit $(printf '%s\n' "${RSS[@]}" | median) MiB"
