#!/usr/bin/env python3
"""Rough size of the residual dedup timing channel (docs/design.md,
"Residual timing channel").

Starts `eden-cas serve` on a temp data dir, registers two workers A and B in
one experiment, lets A deposit N random blobs, then has B deposit (v1 raw
body) alternately one of A's blobs (a dedup hit: nothing to write) and a
fresh random blob of the same size (a miss: a pack written and fsynced), and
prints the latency distribution of each.

Usage: scripts/dedup_timing.py path/to/eden-cas [size_bytes] [rounds]
Only the standard library is used. The admin token travels in the
environment, never on a command line.
"""

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def main() -> None:
    binary = sys.argv[1]
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 12 * 1024
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 60
    token = secrets.token_hex(24)
    exp = "exp_" + "0" * 25 + "1"
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, EDEN_CAS_ADMIN_TOKEN=token, RUST_LOG="warn")
        proc = subprocess.Popen(
            [binary, "serve", "--data-dir", data, "--listen", "127.0.0.1:0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            port = None
            for line in proc.stdout:
                if line.startswith("EDEN_CAS_LISTENING"):
                    port = line.split("port=")[1].strip()
                    break
            base = f"http://127.0.0.1:{port}"

            def call(method, path, bearer, body=b"", ctype="application/json"):
                req = urllib.request.Request(base + path, data=body, method=method)
                req.add_header("Authorization", f"Bearer {bearer}")
                req.add_header("X-Eden-Experiment-Id", exp)
                req.add_header("Content-Type", ctype)
                t0 = time.perf_counter()
                with urllib.request.urlopen(req) as r:
                    out = r.read()
                return time.perf_counter() - t0, out

            def worker():
                _, out = call("POST", f"/v0/experiments/{exp}/workers", f"admin:{token}", b"{}")
                v = json.loads(out)
                return f"{v['worker_id']}:{v['registration_token']}"

            a, b = worker(), worker()
            deposit = f"/cas/v1/experiments/{exp}/artifacts"
            theirs = [secrets.token_bytes(size) for _ in range(rounds)]
            for blob in theirs:
                call("POST", deposit, a, blob, "application/octet-stream")
            hits, misses = [], []
            for blob in theirs:
                t, _ = call("POST", deposit, b, blob, "application/octet-stream")
                hits.append(t * 1000)
                t, _ = call("POST", deposit, b, secrets.token_bytes(size), "application/octet-stream")
                misses.append(t * 1000)
        finally:
            proc.terminate()
            proc.wait()

    def show(name, xs):
        xs = sorted(xs)
        q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
        print(f"{name:5} n={len(xs)} median={statistics.median(xs):.2f} ms "
              f"p10={q(0.1):.2f} p90={q(0.9):.2f} ms")

    print(f"v1 raw deposits of {size} bytes by a worker without a grant")
    show("hit", hits)
    show("miss", misses)
    print(f"median difference: {statistics.median(misses) - statistics.median(hits):.2f} ms")


if __name__ == "__main__":
    main()
