#!/usr/bin/env bash
# Throwaway Azure Blob (Azurite) and Google Cloud Storage (gcp-storage-emulator)
# servers on 127.0.0.1, for tests and local development.
#
#   scripts/emulators.sh install [azurite|gcs]   # make sure they exist (both by default)
#   scripts/emulators.sh find azurite|gcs        # exit 0 if installed
#   scripts/emulators.sh start azurite|gcs DIR [OWNER_PID] [MAX_SECONDS]
#   scripts/emulators.sh stop DIR
#
# Both are pinned and installed into ~/.cache/eden-cas-tools (EDEN_CAS_TOOLS),
# never globally: Azurite with npm (needs Node.js >= 18 and npm; 3.35.0 is the
# newest release that supports Node 20), the GCS emulator with pip (python3).
#
# `start` picks a free loopback port, starts the emulator with its data under
# DIR, waits until it answers, creates the container / bucket, and writes
# DIR/env (shell syntax) with, for azurite:
#   EDEN_CAS_TEST_AZURITE_ENDPOINT   http://127.0.0.1:PORT/ACCOUNT (path-style, as Azurite wants)
#   EDEN_CAS_TEST_AZURITE_ACCOUNT    a random account name, valid only for this server
#   EDEN_CAS_TEST_AZURITE_KEY        its random shared key (base64)
#   EDEN_CAS_TEST_AZURITE_CONTAINER  a container that exists
#   AZURITE_PID
# and for gcs:
#   EDEN_CAS_TEST_GCS_ENDPOINT       http://127.0.0.1:PORT (no credentials needed)
#   EDEN_CAS_TEST_GCS_BUCKET         a bucket that exists
#   GCS_EMULATOR_PID
# and prints the same lines. A watchdog stops the server when OWNER_PID exits
# or after MAX_SECONDS (default 3600), whichever comes first, and then removes
# DIR: give it a directory of its own. Everything listens on 127.0.0.1 only.
set -euo pipefail

AZURITE_VERSION="${AZURITE_VERSION:-3.35.0}"
GCS_EMULATOR_VERSION="${GCS_EMULATOR_VERSION:-2026.7.19}"
TOOLS="${EDEN_CAS_TOOLS:-$HOME/.cache/eden-cas-tools}"
CONTAINER="${EDEN_CAS_TEST_AZURITE_CONTAINER:-eden-test}"
BUCKET="${EDEN_CAS_TEST_GCS_BUCKET:-eden-test}"

log() { echo "emulators: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=lib/services.sh
. "$(dirname "$0")/lib/services.sh"

python() {
  local py
  py="$(command -v python3 || command -v python || true)"
  [ -n "$py" ] || die "python3 is needed (to install the GCS emulator and to set up test servers)"
  "$py" "$@"
}

azurite_dir() { echo "$TOOLS/azurite-$AZURITE_VERSION"; }
azurite_main() { echo "$(azurite_dir)/node_modules/azurite/dist/src/blob/main.js"; }
gcs_dir() { echo "$TOOLS/gcp-storage-emulator-$GCS_EMULATOR_VERSION"; }

find_tool() {
  case "$1" in
    azurite) [ -f "$(azurite_main)" ] && command -v node >/dev/null 2>&1 ;;
    gcs) [ -d "$(gcs_dir)/gcp_storage_emulator" ] ;;
    *) die "unknown emulator \`$1\` (azurite or gcs)" ;;
  esac
}

install_tool() {
  if find_tool "$1"; then return 0; fi
  mkdir -p "$TOOLS"
  case "$1" in
    azurite)
      command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
        die "Node.js and npm are needed to install Azurite (apt-get install nodejs npm, or nvm)"
      log "installing azurite@$AZURITE_VERSION into $(azurite_dir) (npm)"
      npm install --prefix "$(azurite_dir)" --no-audit --no-fund --loglevel=error \
        --no-save "azurite@$AZURITE_VERSION" >&2
      ;;
    gcs)
      log "installing gcp-storage-emulator==$GCS_EMULATOR_VERSION into $(gcs_dir) (pip)"
      python -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --target "$(gcs_dir)" "gcp-storage-emulator==$GCS_EMULATOR_VERSION" >&2
      ;;
  esac
  find_tool "$1" || die "installed $1 but cannot find it under $TOOLS"
}

free_port() { free_ports 1; }

up() { # any HTTP answer counts
  curl -s -o /dev/null --max-time 2 "$1" 2>/dev/null
}

wait_up() { # url pid log what
  local t=0
  until up "$1"; do
    kill -0 "$2" 2>/dev/null || { log "$4 exited during startup:"; tail -n 20 "$3" >&2; exit 1; }
    [ "$t" -lt 600 ] || { log "$4 did not answer in 60 s"; tail -n 20 "$3" >&2; kill "$2"; exit 1; }
    sleep 0.1; t=$((t + 1))
  done
}

# Creates a container with a Shared Key-signed request (Azurite's path-style
# canonical resource is /ACCOUNT/ACCOUNT/CONTAINER).
create_container() { # endpoint account key container
  python - "$@" <<'EOF'
import base64, hashlib, hmac, sys, urllib.error, urllib.request
from email.utils import formatdate
endpoint, account, key, container = sys.argv[1:5]
date, version = formatdate(usegmt=True), "2021-08-06"
to_sign = "PUT\n" + "\n" * 11 + f"x-ms-date:{date}\nx-ms-version:{version}\n" \
    + f"/{account}/{account}/{container}\nrestype:container"
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f"{endpoint}/{container}?restype=container", method="PUT", headers={
    "x-ms-date": date, "x-ms-version": version, "Content-Length": "0",
    "Authorization": f"SharedKey {account}:{sig}"})
try:
    urllib.request.urlopen(req, timeout=10)
except urllib.error.HTTPError as e:
    if e.code != 409:  # already there is fine
        sys.exit(f"create container: HTTP {e.code} {e.read()[:300]!r}")
EOF
}

start_azurite() { # dir owner max
  local dir="$1" owner="$2" max="$3" port account key
  install_tool azurite
  port="$(free_port)"
  account="eden$(rand_hex 6)"
  key="$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
  # AZURITE_ACCOUNTS replaces the well-known devstoreaccount1 with a random
  # account, so nothing can pass by accident with the published key.
  AZURITE_ACCOUNTS="$account:$key" setsid node "$(azurite_main)" \
    --blobHost 127.0.0.1 --blobPort "$port" --location "$dir/data" \
    --disableTelemetry --skipApiVersionCheck --loose --silent \
    </dev/null >"$dir/azurite.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/pid"
  watchdog "$pid" "$owner" "$max" "$dir"
  local endpoint="http://127.0.0.1:$port/$account"
  wait_up "$endpoint?comp=list" "$pid" "$dir/azurite.log" azurite
  create_container "$endpoint" "$account" "$key" "$CONTAINER" ||
    { kill "$pid"; die "could not create container $CONTAINER"; }
  {
    echo "EDEN_CAS_TEST_AZURITE_ENDPOINT=$endpoint"
    echo "EDEN_CAS_TEST_AZURITE_ACCOUNT=$account"
    echo "EDEN_CAS_TEST_AZURITE_KEY=$key"
    echo "EDEN_CAS_TEST_AZURITE_CONTAINER=$CONTAINER"
    echo "AZURITE_PID=$pid"
  } >"$dir/env.tmp"
  log "Azurite on $endpoint (container $CONTAINER, pid $pid, log $dir/azurite.log)"
}

start_gcs() { # dir owner max
  local dir="$1" owner="$2" max="$3" port
  install_tool gcs
  port="$(free_port)"
  # In memory: a test server; --default-bucket creates the bucket.
  PYTHONPATH="$(gcs_dir)" setsid "$(command -v python3 || command -v python)" -m gcp_storage_emulator \
    start --host 127.0.0.1 --port "$port" --in-memory --default-bucket "$BUCKET" -q \
    </dev/null >"$dir/gcs.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/pid"
  watchdog "$pid" "$owner" "$max" "$dir"
  local endpoint="http://127.0.0.1:$port"
  wait_up "$endpoint/storage/v1/b/$BUCKET" "$pid" "$dir/gcs.log" gcp-storage-emulator
  local t=0
  until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$endpoint/storage/v1/b/$BUCKET")" = 200 ]; do
    [ "$t" -lt 100 ] || { kill "$pid"; die "bucket $BUCKET did not appear in 10 s"; }
    sleep 0.1; t=$((t + 1))
  done
  {
    echo "EDEN_CAS_TEST_GCS_ENDPOINT=$endpoint"
    echo "EDEN_CAS_TEST_GCS_BUCKET=$BUCKET"
    echo "GCS_EMULATOR_PID=$pid"
  } >"$dir/env.tmp"
  log "gcp-storage-emulator on $endpoint (bucket $BUCKET, pid $pid, log $dir/gcs.log)"
}

start() { # which dir [owner] [max]
  local which="$1" dir="$2" owner="${3:-$PPID}" max="${4:-3600}"
  mkdir -p "$dir/data"
  dir="$(cd "$dir" && pwd)"
  case "$which" in
    azurite) start_azurite "$dir" "$owner" "$max" ;;
    gcs) start_gcs "$dir" "$owner" "$max" ;;
    *) die "unknown emulator \`$which\` (azurite or gcs)" ;;
  esac
  mv "$dir/env.tmp" "$dir/env"
  cat "$dir/env"
}


usage() {
  echo "usage: $0 install [azurite|gcs] | find azurite|gcs | start azurite|gcs DIR [OWNER_PID] [MAX_SECONDS] | stop DIR" >&2
  exit 2
}

case "${1:-}" in
  install)
    if [ -n "${2:-}" ]; then install_tool "$2"; else install_tool azurite; install_tool gcs; fi ;;
  find) [ -n "${2:-}" ] || usage; find_tool "$2" ;;
  start) [ -n "${2:-}" ] && [ -n "${3:-}" ] || usage; start "$2" "$3" "${4:-}" "${5:-}" ;;
  stop) [ -n "${2:-}" ] || usage; stop "$2" ;;
  *) usage ;;
esac
