#!/usr/bin/env bash
# Dedup benchmark of `eden-cas put` (release build, loopback): bytes sent on
# the wire and wall time for
#   1. a plain full upload (raw-body POST /cas/v1/…/artifacts, fresh server),
#   2. `put` of a new random file (fresh server),
#   3. `put` of the same file with 1 % of its bytes rewritten in 64 regions
#      scattered over the file (one region per 1/64 of the file),
#   4. `put` of the original with 4 KiB inserted near the start (at 1 MiB + 12345).
# Target: puts 3 and 4 send < 5 % of the file. Usage:
#   benches/put_bench.sh [SIZE_MIB=1024]
# The token only travels in the environment and in a 0600 header file.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB="${1:-1024}"
SIZE=$((SIZE_MIB * 1024 * 1024))
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eden-cas-target}"
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/eden-cas"
WORK="$(mktemp -d)"
trap 'kill "${PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
umask 077
TOKEN="bench-admin-token-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
EXP="exp_00000000000000000000000000"

start_server() {
  rm -rf "$WORK/data" "$WORK/stdout"  # a stale listening line would name the old port
  EDEN_CAS_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$BIN" serve --data-dir "$WORK/data" \
    --listen 127.0.0.1:0 --max-artifact-bytes "$((SIZE + 64 * 1024 * 1024))" \
    >"$WORK/stdout" 2>"$WORK/stderr" &
  PID=$!
  for _ in $(seq 1 100); do
    PORT=$(sed -n 's/^EDEN_CAS_LISTENING host=.* port=\([0-9]*\)$/\1/p' "$WORK/stdout")
    if [ -n "$PORT" ]; then
      export EDEN_CAS_URL="http://127.0.0.1:$PORT"
      return 0
    fi
    sleep 0.1
  done
  echo "server did not start" >&2; cat "$WORK/stderr" >&2; exit 1
}
stop_server() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
now() { date +%s.%N; }
row() { # label bytes seconds [hash-seconds]
  awk -v l="$1" -v b="$2" -v s="$3" -v h="${4:-}" -v n="$SIZE" \
    'BEGIN {printf "%-40s %14d %9.2f %% %9.2f s", l, b, 100*b/n, s;
            if (h != "") printf "  (hashing %.2f s)", h; printf "\n"}'
}
field() { sed -n "s/^ *\"$1\": \([0-9.]*\),\{0,1\}$/\1/p" "$2" | head -n1; }

export EDEN_CAS_EXPERIMENT="$EXP"
export EDEN_CAS_TOKEN="admin:$TOKEN"
export EDEN_CAS_STATE_DIR="$WORK/state"
printf 'Authorization: Bearer admin:%s\nX-Eden-Experiment-Id: %s\n' "$TOKEN" "$EXP" >"$WORK/headers"

echo "generating $SIZE_MIB MiB of random data and two variants" >&2
head -c "$SIZE" /dev/urandom >"$WORK/orig"
cp "$WORK/orig" "$WORK/changed"
REGIONS=64
REGION=$((SIZE / 100 / REGIONS))
STRIDE=$((SIZE / REGIONS))
for i in $(seq 0 $((REGIONS - 1))); do
  off=$((i * STRIDE + (RANDOM * 32768 + RANDOM) % (STRIDE - REGION)))
  dd if=/dev/urandom of="$WORK/changed" bs="$REGION" count=1 seek="$off" \
    oflag=seek_bytes conv=notrunc status=none
done
INS_AT=$((1024 * 1024 + 12345))
{ head -c "$INS_AT" "$WORK/orig"; head -c 4096 /dev/urandom; tail -c +$((INS_AT + 1)) "$WORK/orig"; } >"$WORK/inserted"

printf '%-40s %14s %11s %11s\n' "case ($SIZE_MIB MiB file)" "bytes sent" "of file" "wall"

# 1. Plain full upload, streamed by curl (-T) into a fresh server.
start_server
t0=$(now)
curl -sS --fail-with-body -X POST -T "$WORK/orig" -H @"$WORK/headers" \
  -H "Content-Type: application/octet-stream" \
  "$EDEN_CAS_URL/cas/v1/experiments/$EXP/artifacts" -o /dev/null
t1=$(now)
row "plain full upload (raw-body POST)" "$SIZE" "$(echo "$t0 $t1" | awk '{print $2-$1}')"
stop_server

# 2-4. put into another fresh server.
start_server
put() { # label file
  local t0 t1
  t0=$(now)
  "$BIN" put "$2" --json >"$WORK/put.json"
  t1=$(now)
  row "$1" "$(field bytes_sent "$WORK/put.json")" "$(echo "$t0 $t1" | awk '{print $2-$1}')" \
    "$(field hash "$WORK/put.json")"
  ID=$(sed -n 's/^ *"id": "\([0-9a-f]*\)",\{0,1\}$/\1/p' "$WORK/put.json" | head -n1)
}
put "put, new file" "$WORK/orig"
put "put, 1 % changed in $REGIONS regions" "$WORK/changed"
"$BIN" verify "$ID" "$WORK/changed" >/dev/null
put "put, 4 KiB inserted at 1 MiB" "$WORK/inserted"
"$BIN" verify "$ID" "$WORK/inserted" >/dev/null
put "put, same file again" "$WORK/orig"
stop_server
