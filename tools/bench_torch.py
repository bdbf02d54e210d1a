#!/usr/bin/env python3
"""PyTorch twins of `petal bench gemm` and `petal bench block`, printing the same JSON fields.

Run by hand next to petal on the same machine, with the same thread count:
    PETAL_NUM_THREADS=2 ./build/petal bench block
    python3 tools/bench_torch.py block --threads 2
Needs only torch (Debian's python3-torch is enough); never run by CI.

peak_bytes here is the growth of the process's peak resident set during the first full-size
forward+backward (after a small warm-up), the same measure petal prints as rss_peak_delta_bytes;
PyTorch's CPU allocator keeps no byte counters of its own to compare with petal's peak_bytes.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def rss():
    cur = hwm = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) * 1024
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return cur, hwm


class Block(torch.nn.Module):
    """The pre-norm ViT block of BLIP's vit.py (timm layout), eps 1e-6, exact GELU."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = torch.nn.LayerNorm(dim, eps=1e-6)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)
        self.norm2 = torch.nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = torch.nn.Linear(dim, 4 * dim)
        self.fc2 = torch.nn.Linear(4 * dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        hd = d // self.heads
        qkv = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * hd ** -0.5
        attn = attn.softmax(dim=-1)
        o = (attn @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(o)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


def bench_block(args):
    blk = Block(args.dim, args.heads)
    for p in blk.parameters():
        p.requires_grad_(False)
    tiny = torch.zeros(1, 8, args.dim, requires_grad=True)
    blk(tiny).sum().backward()
    x = torch.randn(args.batch, args.tokens, args.dim, requires_grad=True)
    seed = torch.ones(args.batch, args.tokens, args.dim)
    rss0, _ = rss()
    fwd, bwd, delta = [], [], None
    for it in range(-2, args.iters):
        t0 = time.perf_counter()
        y = blk(x)
        t1 = time.perf_counter()
        y.backward(seed)
        t2 = time.perf_counter()
        del y
        x.grad = None
        if delta is None:
            delta = max(0, rss()[1] - rss0)
        if it >= 0:
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
    return {"bench": "block", "impl": "torch", "batch": args.batch, "tokens": args.tokens,
            "dim": args.dim, "heads": args.heads, "threads": torch.get_num_threads(),
            "fwd_ms": round(statistics.median(fwd), 2), "bwd_ms": round(statistics.median(bwd), 2),
            "peak_bytes": delta}


def bench_gemm(args):
    a = torch.randn(args.m, args.k, requires_grad=True)
    b = torch.randn(args.k, args.n, requires_grad=True)
    g = torch.randn(args.m, args.n)
    fwd, bwd = [], []
    for it in range(-2, args.iters):
        t0 = time.perf_counter()
        c = a @ b
        t1 = time.perf_counter()
        c.backward(g)
        t2 = time.perf_counter()
        a.grad = b.grad = None
        if it >= 0:
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
    f = statistics.median(fwd)
    return {"bench": "gemm", "impl": "torch", "m": args.m, "n": args.n, "k": args.k,
            "threads": torch.get_num_threads(), "fwd_ms": round(f, 3),
            "bwd_ms": round(statistics.median(bwd), 3),
            "fwd_gflops": round(2 * args.m * args.n * args.k / f * 1e-6, 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bench", choices=["gemm", "block"])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--device", default="cpu", choices=["cpu"])
    p.add_argument("--m", type=int, default=1024)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--k", type=int, default=1024)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--tokens", type=int, default=197)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with torch.random.fork_rng():
        result = bench_block(args) if args.bench == "block" else bench_gemm(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
