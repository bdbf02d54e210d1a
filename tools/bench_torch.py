#!/usr/bin/env python3
"""PyTorch twins of `petal bench gemm`, `block`, `vit` and `blip-itm`, printing the same JSON fields.

Run by hand next to petal on the same machine, with the same thread count or the same GPU:
    PETAL_NUM_THREADS=2 ./build/petal bench block
    python3 tools/bench_torch.py block --threads 2
    ./build/petal bench block --device cuda
    python3 tools/bench_torch.py block --device cuda
    ./build/petal bench blip-itm
    tools/.venv/bin/python tools/bench_torch.py blip-itm --threads 2
gemm and block need only torch (Debian's python3-torch is enough on the CPU); vit and blip-itm run
transformers' BLIP (BlipForImageTextRetrieval at BLIP-base size, random weights, vision eps 1e-6 as
BLIP has it), so they need transformers too (tools/.venv). Never run by CI.

On the CPU, peak_bytes is the growth of the process's peak resident set during the first
full-size forward+backward (after a small warm-up), the same measure petal prints as
rss_peak_delta_bytes: PyTorch's CPU allocator keeps no byte counters to compare with petal's
peak_bytes. On a GPU, peak_bytes is the CUDA caching allocator's peak of allocated bytes above what
was allocated before the step, the measure of petal's peak_bytes there. GPU timings synchronise
before and after each phase, as petal's do; TF32 is off, as in petal's f32 GEMMs.
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


def clock(device):
    """The time once the device has finished what was queued (GPU work is asynchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class PeakMeter:
    """peak_bytes of the first full-size step: RSS growth on the CPU, allocator peak on a GPU."""

    def __init__(self, device):
        self.device = device
        if device.type == "cuda":
            self.base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        else:
            self.base = rss()[0]

    def read(self):
        if self.device.type == "cuda":
            return max(0, torch.cuda.max_memory_allocated(self.device) - self.base)
        return max(0, rss()[1] - self.base)


def bench_block(args):
    dev = args.device
    blk = Block(args.dim, args.heads).to(dev)
    for p in blk.parameters():
        p.requires_grad_(False)
    tiny = torch.zeros(1, 8, args.dim, device=dev, requires_grad=True)
    blk(tiny).sum().backward()
    x = torch.randn(args.batch, args.tokens, args.dim, device=dev, requires_grad=True)
    seed = torch.ones(args.batch, args.tokens, args.dim, device=dev)
    meter = PeakMeter(dev)
    fwd, bwd, delta = [], [], None
    for it in range(-2, args.iters):
        t0 = clock(dev)
        y = blk(x)
        t1 = clock(dev)
        y.backward(seed)
        t2 = clock(dev)
        del y
        x.grad = None
        if delta is None:
            delta = meter.read()
        if it >= 0:
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
    return {"bench": "block", "impl": "torch", "device": str(dev), "batch": args.batch,
            "tokens": args.tokens,
            "dim": args.dim, "heads": args.heads, "threads": torch.get_num_threads(),
            "fwd_ms": round(statistics.median(fwd), 2), "bwd_ms": round(statistics.median(bwd), 2),
            "peak_bytes": delta}


def bench_gemm(args):
    dev = args.device
    a = torch.randn(args.m, args.k, device=dev, requires_grad=True)
    b = torch.randn(args.k, args.n, device=dev, requires_grad=True)
    g = torch.randn(args.m, args.n, device=dev)
    fwd, bwd, peak = [], [], 0
    for it in range(-2, args.iters):
        meter = PeakMeter(dev) if dev.type == "cuda" else None
        t0 = clock(dev)
        c = a @ b
        t1 = clock(dev)
        c.backward(g)
        t2 = clock(dev)
        del c
        a.grad = b.grad = None
        if it >= 0:
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
            peak = max(peak, meter.read()) if meter else peak
    f = statistics.median(fwd)
    result = {"bench": "gemm", "impl": "torch", "device": str(dev), "m": args.m, "n": args.n,
              "k": args.k, "threads": torch.get_num_threads(), "fwd_ms": round(f, 3),
              "bwd_ms": round(statistics.median(bwd), 3),
              "fwd_gflops": round(2 * args.m * args.n * args.k / f * 1e-6, 1)}
    if dev.type == "cuda":
        result["peak_bytes"] = peak
    return result


def bench_blip(args):
    """BLIP-base at its real size: the ViT alone (vit) or ITM through the multimodal encoder
    (blip-itm); forward under no_grad, then forward+backward with the images requiring grad."""
    from transformers import BlipConfig, BlipForImageTextRetrieval
    cfg = BlipConfig()
    cfg.vision_config.image_size = args.image_size
    cfg.vision_config.layer_norm_eps = 1e-6
    model = BlipForImageTextRetrieval(cfg).to(args.device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    images = torch.randn(args.batch, 3, args.image_size, args.image_size, device=args.device)
    ids = 1000 + (torch.arange(args.batch * args.tokens) * 7919) % 20000
    ids = ids.reshape(args.batch, args.tokens).to(args.device)
    ids[:, 0] = 30523  # [ENC]
    mask = torch.ones_like(ids)

    def forward(x):
        if args.bench == "vit":
            return model.vision_model(pixel_values=x)[0].mean()
        return model(input_ids=ids, pixel_values=x, attention_mask=mask,
                     use_itm_head=True)[0].mean()

    meter, delta = PeakMeter(args.device), None
    fwd, fwd_bwd = [], []
    for it in range(-1, args.iters):
        with torch.no_grad():
            t0 = clock(args.device)
            forward(images)
            t1 = clock(args.device)
        x = images.clone().requires_grad_(True)
        t2 = clock(args.device)
        forward(x).backward()
        t3 = clock(args.device)
        del x
        if delta is None:
            delta = meter.read()
        if it >= 0:
            fwd.append((t1 - t0) * 1e3)
            fwd_bwd.append((t3 - t2) * 1e3)
    return {"bench": args.bench, "impl": "torch", "device": str(args.device), "batch": args.batch,
            "image_size": args.image_size, "tokens": args.tokens if args.bench != "vit" else 0,
            "threads": torch.get_num_threads(), "fwd_ms": round(statistics.median(fwd), 1),
            "fwd_bwd_ms": round(statistics.median(fwd_bwd), 1), "peak_bytes": delta}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bench", choices=["gemm", "block", "vit", "blip-itm"])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--iters", type=int, default=None, help="10 (gemm, block) or 3 (vit, blip-itm)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--m", type=int, default=1024)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--k", type=int, default=1024)
    p.add_argument("--batch", type=int, default=None, help="4 (block) or 2 (vit, blip-itm)")
    p.add_argument("--tokens", type=int, default=None, help="197 (block) or 35 (blip-itm)")
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--image-size", type=int, default=384)
    args = p.parse_args()
    blip = args.bench in ("vit", "blip-itm")
    defaults = {"iters": (3, 10), "batch": (2, 4), "tokens": (35, 197)}  # as petal's benches
    for name, (for_blip, other) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, for_blip if blip else other)
    args.device = torch.device(args.device)
    if args.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with torch.random.fork_rng():
        benches = {"block": bench_block, "gemm": bench_gemm, "vit": bench_blip, "blip-itm": bench_blip}
        result = benches[args.bench](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
