#!/usr/bin/env python3
"""Peak server RSS under a hostile commit load (issue 9, section 2).

Starts `eden-cas serve` (the binary given, release or debug) on a fresh data
directory, opens N upload sessions and sends N concurrent commits that list
COUNT chunk ids each (random ids of length 1, so every entry is checked and
the commit ends 409 chunks-missing), then prints the server's peak resident
set size (VmHWM) and what the commits answered.

    benches/commit_rss.py target/release/eden-cas [--commits 4] [--ids 1000000]

Not a timed test: run it by hand (docs/performance.md has the figures).
"""

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request


def vm(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--commits", type=int, default=4)
    ap.add_argument("--ids", type=int, default=1_000_000)
    ap.add_argument("--max-artifact-bytes", default="64GiB",
                    help="large enough that a list of --ids minimum-size chunks is allowed")
    a = ap.parse_args()

    token = secrets.token_hex(16)
    data = tempfile.mkdtemp(prefix="eden-cas-rss.")
    env = dict(os.environ, EDEN_CAS_ADMIN_TOKEN=token, RUST_LOG="warn")
    srv = subprocess.Popen(
        [a.binary, "serve", "--data-dir", data, "--listen", "127.0.0.1:0",
         "--blob-store", "memory://", "--max-artifact-bytes", a.max_artifact_bytes],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    port = None
    for line in srv.stdout:
        if line.startswith("EDEN_CAS_LISTENING"):
            port = int(line.split("port=")[1])
            break
    if port is None:
        sys.exit("server did not start")
    crockford = "0123456789abcdefghjkmnpqrstvwxyz"
    exp = "exp_0" + "".join(secrets.choice(crockford) for _ in range(25))
    base = f"http://127.0.0.1:{port}/cas/v1/experiments/{exp}"
    hdr = {"Authorization": f"Bearer admin:{token}", "X-Eden-Experiment-Id": exp,
           "Content-Type": "application/json"}

    def call(path, body):
        req = urllib.request.Request(base + path, data=body, headers=hdr, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=1800) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    sids = []
    for _ in range(a.commits):
        req = urllib.request.Request(base + "/uploads", data=b"{}", headers=hdr, method="POST")
        with urllib.request.urlopen(req) as r:
            sids.append(json.load(r)["session_id"])
    bodies = []
    for _ in range(a.commits):
        ids = ",".join(f'["{secrets.token_hex(32)}",1]' for _ in range(a.ids))
        bodies.append(('{"chunks":[' + ids + '],"blake3":"blake3:' + "0" * 64 + '"}').encode())
    base_rss = vm(srv.pid, "VmRSS")
    statuses = [None] * a.commits
    started = time.time()

    def run(i):
        statuses[i] = call(f"/uploads/{sids[i]}/commit", bodies[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(a.commits)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.time() - started
    peak = vm(srv.pid, "VmHWM")
    srv.terminate()
    srv.wait()
    mib = 1 << 20
    print(f"{a.commits} concurrent commits x {a.ids} ids "
          f"({len(bodies[0]) / mib:.0f} MiB of JSON each): answers {statuses}, {took:.1f} s")
    print(f"server RSS before the commits: {base_rss / mib:.0f} MiB; peak: {peak / mib:.0f} MiB")


if __name__ == "__main__":
    main()
