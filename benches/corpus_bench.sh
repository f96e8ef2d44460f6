#!/usr/bin/env bash
# Storage-efficiency benchmark (issue 17): builds a deterministic corpus
# (benches/corpus/make_corpus.py) and stores each dataset with eden-cas (the
# release binary, real `serve`, v0 curl deposits) and with the peers a user
# would pick instead: restic (repository v2, default compression), borg
# (--encryption=none, lz4), casync (default chunking) and `zstd -3` per file.
# Each tool gets a fresh store per dataset; files are deposited in order from
# a warm page cache with `sync` after each. Reported per dataset and tool:
# stored bytes (`du -sb` of the store, metadata included), ratio (input /
# stored), ingest MB/s (input bytes / wall time incl. syncs), peak RSS (the
# eden-cas server's VmHWM; for peers the largest max-RSS of their commands,
# /usr/bin/time), and whether the last file reads back identical.
#
# Usage: benches/corpus_bench.sh [quick|full] [DATASETS]
#   quick (default): a 21.5 M-parameter model (4 blocks), 4 frozen-backbone
#                    and 3 full fine-tune checkpoints, 3 releases, 128 MiB
#                    random × 4 (2.4 GB in all) — minutes per tool on 2 cores
#   full:            the issue's sizes: 27.8 M parameters (6 blocks), 8/6
#                    checkpoints, 5 releases, 512 MiB random × 4
#   DATASETS: comma list of frozen,full,bf16,tars,random (default: all)
# Environment: BENCH_DIR (corpus + stores, default ~/.cache/eden-cas-bench/run-MODE),
#   EDEN_BIN (an eden-cas binary to use instead of building --release),
#   EDEN_ARGS (extra `serve` flags, e.g. "--compression-level 1"),
#   TOOLS (default "eden-cas restic borg casync zstd"), CARGO_TARGET_DIR.
# Needs: apt-get install restic borgbackup casync zstd time; python3 with venv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
MODE="${1:-quick}"
DATASETS="${2:-frozen,full,bf16,tars,random}"
TOOLS="${TOOLS:-eden-cas restic borg casync zstd}"
CACHE="$HOME/.cache/eden-cas-bench"
BENCH_DIR="${BENCH_DIR:-$CACHE/run-$MODE}"
CORPUS="$BENCH_DIR/corpus"
case "$MODE" in
  quick) GEN=(--layers 4 --frozen-checkpoints 4 --full-checkpoints 3
              --versions 5.0.1,5.0.2,5.0.3 --random-mib 128 --random-copies 4) ;;
  full) GEN=() ;;
  *) echo "usage: $0 [quick|full] [DATASETS]" >&2; exit 2 ;;
esac

# Python tools (numpy, safetensors; setuptools so `pip download` can read
# sdist metadata) in a venv under ~/.cache.
VENV="$CACHE/venv"
if ! "$VENV/bin/python" -c 'import numpy, safetensors, setuptools' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy safetensors setuptools wheel
fi
if [ ! -e "$CORPUS/.done-$DATASETS" ]; then
  rm -rf "$CORPUS"; mkdir -p "$CORPUS"
  "$VENV/bin/python" benches/corpus/make_corpus.py "$CORPUS" --cache "$CACHE" "${GEN[@]}" \
    --only "$DATASETS"
  touch "$CORPUS/.done-$DATASETS"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eden-cas-target}"
if [ -z "${EDEN_BIN:-}" ]; then cargo build --release --quiet; fi
BIN="${EDEN_BIN:-$CARGO_TARGET_DIR/release/eden-cas}"
STORES="$BENCH_DIR/stores"
RESULTS="$BENCH_DIR/results.tsv"
TOKEN="bench-admin-token-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
EXP="exp_00000000000000000000000000"
export RESTIC_PASSWORD=bench BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes \
  BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_BASE_DIR="$BENCH_DIR/borg-base" \
  RESTIC_CACHE_DIR="$BENCH_DIR/restic-cache"
PID=""
trap 'if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi' EXIT

now() { date +%s.%N; }
# Runs a command under /usr/bin/time; keeps the largest max-RSS (KiB) seen.
PEAK_KIB=0
timed() {
  /usr/bin/time -f '%M' -o "$BENCH_DIR/time.out" "$@"
  local k; k=$(tail -n1 "$BENCH_DIR/time.out")
  [ "$k" -gt "$PEAK_KIB" ] && PEAK_KIB=$k
  return 0
}

eden_start() {
  rm -f "$BENCH_DIR/eden.stdout"  # a stale listening line would name the old port
  EDEN_CAS_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$BIN" serve --data-dir "$1" \
    --listen 127.0.0.1:0 --max-artifact-bytes 4GiB ${EDEN_ARGS:-} \
    >"$BENCH_DIR/eden.stdout" 2>"$BENCH_DIR/eden.stderr" &
  PID=$!
  for _ in $(seq 1 300); do
    PORT=$(sed -n 's/^EDEN_CAS_LISTENING host=.* port=\([0-9]*\)$/\1/p' "$BENCH_DIR/eden.stdout")
    [ -n "$PORT" ] && return 0
    sleep 0.1
  done
  echo "server did not start" >&2; cat "$BENCH_DIR/eden.stderr" >&2; exit 1
}
eden_put() {
  curl -sS --fail-with-body -X POST "http://127.0.0.1:$PORT/v0/experiments/$EXP/artifacts" \
    -H "Authorization: Bearer admin:$TOKEN" -H "X-Eden-Experiment-Id: $EXP" \
    -F "file=@$1;type=application/octet-stream" >"$BENCH_DIR/eden.receipt"
  sed -n 's/.*"artifacts_uri":"\([^"]*\)".*/\1/p' "$BENCH_DIR/eden.receipt" >"$BENCH_DIR/eden.uri"
}
eden_get() {
  curl -sS --fail "http://127.0.0.1:$PORT/v0/experiments/$EXP/artifacts?uri=$(sed 's/:/%3A/; s#/#%2F#g' "$BENCH_DIR/eden.uri")" \
    -H "Authorization: Bearer admin:$TOKEN" -H "X-Eden-Experiment-Id: $EXP" -o "$1"
}

# store TOOL DATASET: ingests every file of the dataset; prints one TSV row.
store() {
  local tool=$1 ds=$2 dir="$STORES/$1-$2" files=("$CORPUS/$2"/*) t0 t1 n=0 in_bytes ok
  rm -rf "$dir" "$BENCH_DIR/borg-base" "$BENCH_DIR/restic-cache"; mkdir -p "$dir"
  in_bytes=$(cat "${files[@]}" | wc -c)
  cat "${files[@]}" >/dev/null # warm page cache
  PEAK_KIB=0
  case $tool in
    eden-cas) eden_start "$dir" ;;
    restic) restic init -q --repository-version 2 -r "$dir" ;;
    borg) borg init --encryption=none "$dir" ;;
  esac
  sync
  t0=$(now)
  for f in "${files[@]}"; do
    n=$((n + 1))
    case $tool in
      eden-cas) eden_put "$f" ;;
      restic) timed restic -q -r "$dir" backup "$f" ;;
      borg) cd "$(dirname "$f")"; timed borg create --compression lz4 "$dir::a$n" "$(basename "$f")"; cd "$ROOT" ;;
      casync) timed casync make --store="$dir/store" "$dir/$n.caibx" "$f" >/dev/null ;;
      zstd) timed zstd -3 -q "$f" -o "$dir/$(basename "$f").zst" ;;
    esac
    sync
  done
  t1=$(now)
  local last="${files[-1]}" out="$BENCH_DIR/readback"
  rm -f "$out"
  case $tool in
    eden-cas) eden_get "$out"
              PEAK_KIB=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
              kill "$PID"; wait "$PID" 2>/dev/null || true; PID="" ;;
    restic) restic -q -r "$dir" dump latest "$last" >"$out" ;;
    borg) (cd "$(dirname "$last")" && borg extract --stdout "$dir::a$n" "$(basename "$last")") >"$out" ;;
    casync) casync extract --store="$dir/store" "$dir/$n.caibx" "$out" ;;
    zstd) zstd -d -q "$dir/$(basename "$last").zst" -o "$out" ;;
  esac
  cmp -s "$out" "$last" && ok=yes || ok=NO
  local stored; stored=$(du -sb "$dir" | cut -f1)
  printf '%s\t%s\t%d\t%d\t%d\t%.3f\t%s\t%s\n' "$ds" "$tool" "$n" "$in_bytes" "$stored" \
    "$(echo "$t1 $t0" | awk '{print $1-$2}')" "$((PEAK_KIB / 1024))" "$ok" | tee -a "$RESULTS"
  rm -rf "$out" "$dir" "$BENCH_DIR/borg-base" "$BENCH_DIR/restic-cache" # keep the disk free
}

mkdir -p "$STORES"
printf 'dataset\ttool\tfiles\tinput_bytes\tstored_bytes\tseconds\tpeak_rss_mib\treadback\n' >"$RESULTS"
for ds in ${DATASETS//,/ }; do
  for tool in $TOOLS; do store "$tool" "$ds"; done
done

# Report: markdown table, ratio = input / stored, and eden-cas / best peer.
"$VENV/bin/python" - "$RESULTS" "$CORPUS/bounds.json" <<'EOF'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
bounds = json.load(open(sys.argv[2]))
print("| dataset | tool | input MB | stored MB | ratio | ingest MB/s | peak RSS MiB | read back |")
print("|---|---|---:|---:|---:|---:|---:|---|")
by = {}
for r in rows:
    i, s, t = int(r["input_bytes"]), int(r["stored_bytes"]), float(r["seconds"])
    by.setdefault(r["dataset"], {})[r["tool"]] = s
    print(f"| {r['dataset']} | {r['tool']} | {i/1e6:.1f} | {s/1e6:.2f} | {i/s:.2f} | {i/1e6/t:.0f} | {r['peak_rss_mib']} | {r['readback']} |")
print()
print("| dataset | eden-cas / best peer | best peer |")
print("|---|---:|---|")
for ds, t in by.items():
    peers = {k: v for k, v in t.items() if k != "eden-cas"}
    if "eden-cas" in t and peers:
        best = min(peers, key=peers.get)
        print(f"| {ds} | {t['eden-cas'] / peers[best]:.3f} | {best} |")
if "full" in bounds and "eden-cas" in by.get("full", {}):
    b = sum(x["planes_order0_bytes"] + x["header_bytes"] for x in bounds["full"])
    raw = sum(x["float_bytes"] + x["header_bytes"] for x in bounds["full"])
    print(f"\nfull fine-tune: byte-plane order-0 bound {b/1e6:.2f} MB (raw {raw/1e6:.2f} MB, "
          f"{raw/b:.3f}x); eden-cas stored / bound = {by['full']['eden-cas'] / b:.3f}")
for ds in ("frozen", "full"):
    if ds in bounds:
        w = sum(x["weights_bytes"] for x in bounds[ds][:1])
        wb = sum(x["weights_planes_order0_bytes"] for x in bounds[ds][:1])
        print(f"{ds}: float32 weights of one checkpoint {w/1e6:.2f} MB, byte-plane order-0 bound "
              f"{wb/1e6:.2f} MB ({w/wb:.3f}x)")
EOF
