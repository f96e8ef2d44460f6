# Shared by scripts/seaweedfs.sh and scripts/emulators.sh: the pieces every
# local test server needs (free loopback ports, random keys, a watchdog that
# stops the server when its owner exits, and a stop that waits for it).
# Sourced, not run.

free_ports() { # N -> N free loopback TCP ports, one per line
  local py
  py="$(command -v python3 || command -v python || true)"
  if [ -n "$py" ]; then
    "$py" - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
for s in socks:
    print(s.getsockname()[1])
PY
  else
    local i=0 p
    while [ "$i" -lt "$1" ]; do
      p=$((20000 + RANDOM % 30000))
      if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; i=$((i + 1)); fi
    done
  fi
}

rand_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# watchdog PID OWNER MAX DIR: stops PID when OWNER exits or MAX seconds
# have passed, then removes DIR.
watchdog() {
  setsid bash -c '
    pid=$1; owner=$2; max=$3; dir=$4; t=0
    while kill -0 "$pid" 2>/dev/null && kill -0 "$owner" 2>/dev/null && [ "$t" -lt "$max" ]; do
      sleep 1; t=$((t + 1))
    done
    kill "$pid" 2>/dev/null; sleep 3; kill -9 "$pid" 2>/dev/null
    rm -rf "$dir"
  ' watchdog "$@" </dev/null >/dev/null 2>&1 &
}

# stop DIR: stops the server whose pid is in DIR/pid and removes DIR/data.
stop() {
  local dir="$1" pid
  pid="$(cat "$dir/pid" 2>/dev/null || true)"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -rf "$dir/data"
}
