#!/usr/bin/env python3
"""Deterministic storage-efficiency corpus for benches/corpus_bench.sh (issue 17).

Datasets (one directory each under OUT):
  frozen/   checkpoints of a GPT-like float32 model trained with a frozen
            backbone: every checkpoint holds all weights plus the Adam moments
            of the trainable tensors (safetensors, written by `safetensors`).
  full/     checkpoints of a full fine-tune of the same model: every tensor
            changes, Adam moments for all of them.
  bf16/     the frozen series converted to bf16 (round to nearest even).
  tars/     consecutive sdist releases of a real project, decompressed to .tar
            (downloaded with `pip download`, cached under CACHE).
  random/   one random file, written once per deposit (identical copies).

Also writes OUT/bounds.json: the byte-plane order-0 entropy bound of every
float32 file (sum over the 4 planes of n/4 * H(plane) / 8 bytes) and of the
same bytes unplaned, so the report can say how close a store gets.

Everything is seeded; the same arguments give the same bytes.
"""

import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
from safetensors.numpy import save_file


def model_shapes(vocab, d, layers, ctx):
    """Tensor names and shapes of a small GPT-2-like model, in file order."""
    shapes = [("wte", (vocab, d)), ("wpe", (ctx, d))]
    for i in range(layers):
        p = f"h.{i}."
        shapes += [
            (p + "ln_1.weight", (d,)),
            (p + "ln_1.bias", (d,)),
            (p + "attn.c_attn.weight", (d, 3 * d)),
            (p + "attn.c_attn.bias", (3 * d,)),
            (p + "attn.c_proj.weight", (d, d)),
            (p + "attn.c_proj.bias", (d,)),
            (p + "ln_2.weight", (d,)),
            (p + "ln_2.bias", (d,)),
            (p + "mlp.c_fc.weight", (d, 4 * d)),
            (p + "mlp.c_fc.bias", (4 * d,)),
            (p + "mlp.c_proj.weight", (4 * d, d)),
            (p + "mlp.c_proj.bias", (d,)),
        ]
    shapes += [("ln_f.weight", (d,)), ("ln_f.bias", (d,)), ("lm_head.weight", (d, vocab))]
    return shapes


def init_model(shapes, rng):
    """Weights like a pretrained model: normal(0, 0.02), layer norms near 1/0."""
    w = {}
    for name, shape in shapes:
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
            w[name] = (1.0 + 0.05 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
        elif name.endswith(".bias"):
            w[name] = (0.01 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
        else:
            std = 0.02 * (1.0 + 0.5 * rng.random(dtype=np.float32))
            w[name] = (std * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    return w


class Adam:
    """Plain Adam on numpy float32 arrays (gradients simulated by the caller)."""

    def __init__(self, names, weights, lr):
        self.lr, self.b1, self.b2, self.eps, self.t = lr, 0.9, 0.999, 1e-8, 0
        self.m = {n: np.zeros_like(weights[n]) for n in names}
        self.v = {n: np.zeros_like(weights[n]) for n in names}

    def step(self, weights, grads):
        self.t += 1
        c1 = 1.0 - self.b1**self.t
        c2 = 1.0 - self.b2**self.t
        for n, g in grads.items():
            m, v = self.m[n], self.v[n]
            m *= self.b1
            m += (1.0 - self.b1) * g
            v *= self.b2
            v += (1.0 - self.b2) * g * g
            upd = (self.lr / c1) * m / (np.sqrt(v / c2) + self.eps)
            weights[n] -= upd.astype(np.float32)


def train(shapes, seed, trainable, checkpoints, steps, lr, out_dir, tag):
    """Simulates training; writes one safetensors checkpoint per `steps` steps."""
    rng = np.random.default_rng(seed)
    weights = init_model(shapes, np.random.default_rng(1234))  # same base model
    opt = Adam(trainable, weights, lr)
    # Per-tensor gradient scale and a slowly drifting gradient direction, so
    # updates are correlated over time like real training.
    scale = {n: np.float32(1e-3 * (0.2 + rng.random())) for n in trainable}
    drift = {n: rng.standard_normal(weights[n].shape, dtype=np.float32) for n in trainable}
    paths = []
    for c in range(checkpoints):
        for _ in range(steps):
            grads = {}
            for n in trainable:
                noise = rng.standard_normal(weights[n].shape, dtype=np.float32)
                drift[n] = 0.9 * drift[n] + 0.1 * noise
                grads[n] = scale[n] * (drift[n] + noise)
            opt.step(weights, grads)
        tensors = dict(weights)
        for n in trainable:
            tensors["optimizer.exp_avg." + n] = opt.m[n]
            tensors["optimizer.exp_avg_sq." + n] = opt.v[n]
        path = os.path.join(out_dir, f"{tag}-{c:03d}.safetensors")
        save_file(tensors, path, metadata={"step": str(opt.t)})
        paths.append(path)
        print(f"  {path} ({os.path.getsize(path) / 2**20:.1f} MiB)", file=sys.stderr)
    return paths


def to_bf16(src, dst):
    """Rewrites a float32 safetensors file as bf16 (round to nearest even)."""
    with open(src, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
        data = f.read()
    out_header, parts, off = {}, [], 0
    for name, info in sorted(
        ((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0]
    ):
        a, b = info["data_offsets"]
        u = np.frombuffer(data[a:b], dtype="<u4")
        rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
        raw = rounded.tobytes()
        out_header[name] = {"dtype": "BF16", "shape": info["shape"], "data_offsets": [off, off + len(raw)]}
        parts.append(raw)
        off += len(raw)
    if "__metadata__" in header:
        out_header["__metadata__"] = header["__metadata__"]
    hb = json.dumps(out_header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for p in parts:
            f.write(p)


def plane_entropy_bound(path):
    """Order-0 entropy bound (bytes) of the float32 tensor data of a
    safetensors file: as is, and as 4 byte planes (planes per tensor start)."""
    with open(path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
        data = np.frombuffer(f.read(), dtype=np.uint8)

    def h(counts):
        p = counts[counts > 0] / counts.sum()
        return float(-(p * np.log2(p)).sum())

    planes = [np.zeros(256, dtype=np.int64) for _ in range(4)]
    weights_planes = [np.zeros(256, dtype=np.int64) for _ in range(4)]
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        a, b = info["data_offsets"]
        quads = data[a:b].reshape(-1, 4)
        for k in range(4):
            c = np.bincount(quads[:, k], minlength=256)
            planes[k] += c
            if not name.startswith("optimizer."):
                weights_planes[k] += c
    total = sum(p.sum() for p in planes)
    raw_bits = h(sum(planes)) * total
    plane_bits = sum(h(p) * p.sum() for p in planes)
    wtotal = sum(p.sum() for p in weights_planes)
    wplane_bits = sum(h(p) * p.sum() for p in weights_planes if p.sum())
    return {
        "float_bytes": int(total),
        "order0_bytes": raw_bits / 8,
        "planes_order0_bytes": plane_bits / 8,
        "weights_bytes": int(wtotal),
        "weights_planes_order0_bytes": wplane_bits / 8,
        "header_bytes": 8 + hlen,
    }


def fetch_tars(project, versions, cache, out_dir, venv_python):
    """Consecutive sdists as plain tars (cached); `pip download` is the client."""
    sd = os.path.join(cache, "sdists", project)
    os.makedirs(sd, exist_ok=True)
    paths = []
    for v in versions:
        have = [f for f in os.listdir(sd) if f"-{v}." in f and not f.endswith(".tar")]
        if not have:
            subprocess.run(
                [venv_python, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                 "--no-build-isolation", "-q", "-d", sd, f"{project}=={v}"],
                check=True,
            )
            have = [f for f in os.listdir(sd) if f"-{v}." in f and not f.endswith(".tar")]
        src = os.path.join(sd, sorted(have)[0])
        dst = os.path.join(out_dir, f"{project}-{v}.tar")
        if src.endswith(".tar.gz"):
            with gzip.open(src) as g, open(dst, "wb") as f:
                while block := g.read(1 << 20):
                    f.write(block)
        elif src.endswith(".zip"):
            with zipfile.ZipFile(src) as z, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as t:
                for info in z.infolist():
                    ti = tarfile.TarInfo(info.filename)
                    ti.size = info.file_size
                    ti.mtime = 0
                    t.addfile(ti, z.open(info))
        else:
            raise SystemExit(f"unexpected sdist {src}")
        paths.append(dst)
        print(f"  {dst} ({os.path.getsize(dst) / 2**20:.1f} MiB)", file=sys.stderr)
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/eden-cas-bench"))
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--frozen-checkpoints", type=int, default=8)
    ap.add_argument("--full-checkpoints", type=int, default=6)
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps between checkpoints")
    ap.add_argument("--trainable-layers", type=int, default=1, help="last N blocks trained (frozen series)")
    ap.add_argument("--project", default="Django")
    ap.add_argument("--versions", default="5.0.1,5.0.2,5.0.3,5.0.4,5.0.5")
    ap.add_argument("--random-mib", type=int, default=512)
    ap.add_argument("--random-copies", type=int, default=4)
    ap.add_argument("--only", default="frozen,full,bf16,tars,random")
    args = ap.parse_args()
    only = set(args.only.split(","))

    shapes = model_shapes(args.vocab, args.d_model, args.layers, args.ctx)
    params = sum(int(np.prod(s)) for _, s in shapes)
    print(f"model: {params / 1e6:.1f} M parameters", file=sys.stderr)
    bounds = {"parameters": params}
    for ds in ["frozen", "full", "bf16", "tars", "random"]:
        os.makedirs(os.path.join(args.out, ds), exist_ok=True)

    frozen = []
    if only & {"frozen", "bf16"}:
        last = {f"h.{i}." for i in range(args.layers - args.trainable_layers, args.layers)}
        trainable = [n for n, _ in shapes if any(n.startswith(p) for p in last)]
        trainable += ["ln_f.weight", "ln_f.bias", "lm_head.weight"]
        frozen = train(shapes, 17, trainable, args.frozen_checkpoints, args.steps, 1e-4,
                       os.path.join(args.out, "frozen"), "frozen")
        bounds["frozen"] = [plane_entropy_bound(p) for p in frozen]
    if "full" in only:
        full = train(shapes, 23, [n for n, _ in shapes], args.full_checkpoints, args.steps, 2e-5,
                     os.path.join(args.out, "full"), "full")
        bounds["full"] = [plane_entropy_bound(p) for p in full]
    if "bf16" in only:
        for p in frozen:
            to_bf16(p, os.path.join(args.out, "bf16", os.path.basename(p).replace("frozen", "bf16")))
    if "tars" in only:
        fetch_tars(args.project, args.versions.split(","), args.cache,
                   os.path.join(args.out, "tars"), sys.executable)
    if "random" in only:
        rng = np.random.default_rng(99)
        block = rng.integers(0, 256, size=args.random_mib << 20, dtype=np.uint8).tobytes()
        for i in range(args.random_copies):
            with open(os.path.join(args.out, "random", f"random-{i}.bin"), "wb") as f:
                f.write(block)
    with open(os.path.join(args.out, "bounds.json"), "w") as f:
        json.dump(bounds, f, indent=1)


if __name__ == "__main__":
    main()
