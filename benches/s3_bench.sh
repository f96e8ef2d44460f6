#!/usr/bin/env bash
# Blob-backend benchmark: deposits and fetches real gigabytes over HTTP (v0
# multipart deposit, v0 fetch) against a release build, once on the fs
# backend and once on a real S3 server (SeaweedFS on 127.0.0.1, started
# here), in one run. Reports MB/s per phase and object-store requests per GiB
# of content, as counted by eden-cas (/metrics, eden_cas_blob_requests_total)
# and, for S3, by the server itself (SeaweedFS_s3_request_total). Usage:
#   benches/s3_bench.sh [SIZE_MIB=1024] [RUNS=1]
# Phases: deposit-new (random data), deposit-stored (the same bytes again),
# fetch (cold: deposits do not fill the chunk cache). Digests are checked.
# Also prints the server's peak RSS (VmHWM) per backend.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB="${1:-1024}"
RUNS="${2:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eden-cas-target}"
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/eden-cas"
WORK="$(mktemp -d)"
trap 'kill "${PID:-}" 2>/dev/null || true; scripts/seaweedfs.sh stop "$WORK/s3" 2>/dev/null || true; rm -rf "$WORK"' EXIT
TOKEN="bench-admin-token-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
EXP="exp_00000000000000000000000000"

echo "starting SeaweedFS" >&2
S3_ENV="$(scripts/seaweedfs.sh start "$WORK/s3" $$ 7200)"
while IFS='=' read -r k v; do [ -n "$k" ] && export "$k=$v"; done <<<"$S3_ENV"
[ -n "${EDEN_CAS_TEST_S3_ENDPOINT:-}" ] || { echo "SeaweedFS did not start" >&2; exit 1; }

start_server() { # backend
  rm -rf "$WORK/data" "$WORK/stdout"  # a stale listening line would name the old port
  local args=()
  if [ "$1" = s3 ]; then
    args=(--blob-store "s3://$EDEN_CAS_TEST_S3_BUCKET/bench-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
          --s3-endpoint "$EDEN_CAS_TEST_S3_ENDPOINT")
  fi
  AWS_ACCESS_KEY_ID="$EDEN_CAS_TEST_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$EDEN_CAS_TEST_S3_SECRET_KEY" \
  AWS_EC2_METADATA_DISABLED=true NO_PROXY=127.0.0.1 \
  EDEN_CAS_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$BIN" serve --data-dir "$WORK/data" \
    --listen 127.0.0.1:0 --max-artifact-bytes "$(( (SIZE_MIB + 64) * 1024 * 1024 ))" "${args[@]}" \
    >"$WORK/stdout" 2>"$WORK/stderr" &
  PID=$!
  for _ in $(seq 1 300); do
    PORT=$(sed -n 's/^EDEN_CAS_LISTENING host=.* port=\([0-9]*\)$/\1/p' "$WORK/stdout")
    [ -n "$PORT" ] && return 0
    kill -0 "$PID" 2>/dev/null || break
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
  t0=$(date +%s.%N)
  out=$(curl -sS --fail-with-body -X POST "http://127.0.0.1:$PORT/v0/experiments/$EXP/artifacts" \
    -H @"$WORK/headers" \
    -F "file=@$1;type=application/octet-stream")
  t1=$(date +%s.%N)
  printf '%s' "$out" | sed -n 's/.*"artifacts_uri":"\([^"]*\)".*/\1/p' >"$WORK/uri"
  echo "$t0 $t1" | awk '{print $2-$1}'
}
fetch() { # uri -> prints seconds
  local t0 t1
  t0=$(date +%s.%N)
  curl -sS --fail "http://127.0.0.1:$PORT/v0/experiments/$EXP/artifacts?uri=$(printf '%s' "$1" | sed 's/:/%3A/; s#/#%2F#g')" \
    -H @"$WORK/headers" -o "$WORK/out"
  t1=$(date +%s.%N)
  echo "$t0 $t1" | awk '{print $2-$1}'
}
mbps() { awk -v s="$1" -v m="$SIZE_MIB" 'BEGIN {printf "%.0f", m*1048576/1e6/s}'; }

# Our counters: "get put post head list delete retry".
ours() {
  curl -s "http://127.0.0.1:$PORT/metrics" -H @"$WORK/headers" | awk '
    /^eden_cas_blob_requests_total\{kind="/ { split($1, a, "\""); v[a[2]] = $2 }
    END { printf "%d %d %d %d %d %d %d\n", v["get"], v["put"], v["post"], v["head"], v["list"], v["delete"], v["retry"] }'
}
# The server's counters for the bucket: "GET PUT POST HEAD DELETE".
theirs() {
  curl -s "$EDEN_CAS_TEST_S3_METRICS" | awk -v b="$EDEN_CAS_TEST_S3_BUCKET" '
    /^SeaweedFS_s3_request_total\{/ && index($0, "bucket=\"" b "\"") {
      match($0, /type="[A-Z]+"/); t = substr($0, RSTART + 6, RLENGTH - 7); v[t] += $2 }
    END { printf "%d %d %d %d %d\n", v["GET"], v["PUT"], v["POST"], v["HEAD"], v["DELETE"] }'
}
per_gib() { # "before" "after" -> per-GiB deltas
  awk -v a="$1" -v b="$2" -v m="$SIZE_MIB" 'BEGIN {
    n = split(a, x, " "); split(b, y, " ");
    for (i = 1; i <= n; i++) printf "%s%.0f", (i > 1 ? " " : ""), (y[i] - x[i]) * 1024 / m }'
}
phase() { # label seconds ours-before ours-after theirs-before theirs-after
  local o t
  o=$(per_gib "$3" "$4")
  printf '  %-15s %6s MB/s   eden-cas per GiB: %s' "$1" "$(mbps "$2")" \
    "$(echo "$o" | awk '{printf "GET %s PUT %s POST %s HEAD %s LIST %s DELETE %s retries %s", $1, $2, $3, $4, $5, $6, $7}')"
  if [ -n "$5" ]; then
    t=$(per_gib "$5" "$6")
    printf '   server per GiB: %s' "$(echo "$t" | awk '{printf "GET %s PUT %s POST %s HEAD %s DELETE %s", $1, $2, $3, $4, $5}')"
  fi
  printf '\n'
}

echo "generating $SIZE_MIB MiB of random data" >&2
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$WORK/in"
IN_SUM=$(sha256sum "$WORK/in" | cut -d' ' -f1)
echo "$(nproc) CPUs; eden-cas $(git rev-parse --short HEAD 2>/dev/null || echo '?') (+ working tree); SeaweedFS $("$(scripts/seaweedfs.sh find)" version 2>&1 | head -1)"

for run in $(seq 1 "$RUNS"); do
  for backend in fs s3; do
    start_server "$backend"
    echo "run $run, backend $backend ($SIZE_MIB MiB):"
    T0=""; T1=""
    o0=$(ours); [ "$backend" = s3 ] && T0=$(theirs)
    s=$(deposit "$WORK/in"); o1=$(ours); [ "$backend" = s3 ] && T1=$(theirs)
    phase deposit-new "$s" "$o0" "$o1" "$T0" "$T1"
    s=$(deposit "$WORK/in"); o2=$(ours); [ "$backend" = s3 ] && T2=$(theirs) || T2=""
    phase deposit-stored "$s" "$o1" "$o2" "$T1" "$T2"
    s=$(fetch "$(cat "$WORK/uri")"); o3=$(ours); [ "$backend" = s3 ] && T3=$(theirs) || T3=""
    [ "$(sha256sum "$WORK/out" | cut -d' ' -f1)" = "$IN_SUM" ] || { echo "fetched bytes differ" >&2; exit 1; }
    phase fetch "$s" "$o2" "$o3" "$T2" "$T3"
    echo "  server peak RSS $(peak_rss_mib) MiB"
    stop_server
  done
done
