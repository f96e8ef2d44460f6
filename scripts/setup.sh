#!/usr/bin/env bash
# Installs what building and testing eden-cas needs on a Debian/Ubuntu machine:
# clang + libclang (RocksDB's bindgen). Idempotent; quiet when all is present.
set -euo pipefail

need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libclang; then
  need+=(libclang-dev)
fi
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${need[*]} (for RocksDB's bindings)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clang libclang-dev >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
