#!/usr/bin/env python3
"""PyTorch twins of petal's benches (gemm, block, block-petl, vit, blip-itm, train), same JSON
fields.

Run by hand next to petal on the same machine, with the same thread count or the same GPU:
    PETAL_NUM_THREADS=2 ./build/petal bench block
    python3 tools/bench_torch.py block --threads 2
    ./build/petal bench block --device cuda
    python3 tools/bench_torch.py block --device cuda
    ./build/petal bench blip-itm
    tools/.venv/bin/python tools/bench_torch.py blip-itm --threads 2
    ./build/petal bench block --petl aurora --variant code --rank 32
    python3 tools/bench_torch.py block-petl --petl aurora --variant code --rank 32 --threads 2
gemm and block need only torch (Debian's python3-torch is enough on the CPU); vit and blip-itm run
transformers' BLIP (BlipForImageTextRetrieval at BLIP-base size, random weights, vision eps 1e-6 as
BLIP has it), so they need transformers too (tools/.venv). Never run by CI.

train times one training step of BLIP-base image-text retrieval with Aurora, run by the released
code itself (WillDreamer/Aurora at 1b189ae: CP/blip_retrieval.py, CP/vit.py, CP/med.py), random
weights, the trainable set of its train_retrieval.py, AdamW: the twin of
`petal bench train --model blip-base-retrieval --petl aurora --variant code`. It imports the
checkouts at run time (nothing is downloaded) and needs BLIP's transformers 4.15, timm, einops,
Debian's python3-torchvision (timm 0.4.12 imports it) and python3-h5py (tools/blip_reference.py):
    git clone https://github.com/WillDreamer/Aurora /tmp/aurora
    git -C /tmp/aurora checkout 1b189ae
    git clone https://github.com/salesforce/BLIP /tmp/blip
    git -C /tmp/blip checkout 056a169
    apt-get install python3-torchvision
    /usr/bin/python3 -m venv --system-site-packages tools/.venv415
    tools/.venv415/bin/pip install --no-deps transformers==4.15.0 timm==0.4.12 \
        huggingface_hub==0.2.1 sacremoses filelock regex tqdm packaging einops
    tools/.venv415/bin/python tools/bench_torch.py train \
        --aurora-repo /tmp/aurora --blip-repo /tmp/blip --rank 32 --batch 4 --image-size 224 \
        --threads 2
Its peak_bytes is taken over the first (warm-up) step, AdamW's state included, from after the
model was built; ms_per_step is the median of --iters steps after it.

On the CPU, peak_bytes is the growth of the process's peak resident set during the first
full-size forward+backward (after a small warm-up), the same measure petal prints as
rss_peak_delta_bytes: PyTorch's CPU allocator keeps no byte counters to compare with petal's
peak_bytes. On a GPU, peak_bytes is the CUDA caching allocator's peak of allocated bytes above what
was allocated before the step, the measure of petal's peak_bytes there. GPU timings synchronise
before and after each phase, as petal's do; TF32 is off, as in petal's f32 GEMMs.

gemm and block take --precision, as petal's benches do: f32 (default); tf32 (GPU only:
torch.backends.cuda.matmul.allow_tf32, petal's CUBLAS_COMPUTE_32F_FAST_TF32); bf16 (the forward in
torch.autocast(device, dtype=torch.bfloat16), the backward outside it as PyTorch recommends; like
petal, each GEMM of backward then runs in the precision its forward ran in). One difference:
autocast's GEMMs write bf16 results, petal's write f32 (docs/cuda.md "Mixed precision"):
    ./build/petal bench block --device cuda --precision bf16
    python3 tools/bench_torch.py block --device cuda --precision bf16
"""
import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import time
import types


def openblas_kernels_for_this_cpu():
    """Debian's OpenBLAS (which Debian's torch calls) gives CPU models newer than itself its SSE3
    kernels, 4.7x slower GEMMs on a 5th-generation Xeon; petal then restarts itself with
    OPENBLAS_CORETYPE set (tensor/blas.h). So that both sides run the kernels the CPU allows, this
    script sets it the same way, by the CPU's flags, unless it is set already."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return
    with open("/proc/cpuinfo") as f:
        flags = next((line.split() for line in f if line.startswith("flags")), [])
    core = "SkylakeX" if "avx512f" in flags else "Haswell" if "avx2" in flags else None
    if core:
        os.environ["OPENBLAS_CORETYPE"] = core
        os.execv(sys.executable, [sys.executable] + sys.argv)


openblas_kernels_for_this_cpu()
import torch  # noqa: E402 (after the OpenBLAS choice above, which OpenBLAS reads on load)
import torch.nn.functional as F  # noqa: E402


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

        self.petl = None  # a PETL method: delta(name, x) for the Linears it targets

    def linear(self, name, x):
        y = getattr(self, name)(x)
        delta = self.petl.delta(name, x) if self.petl else None
        return y if delta is None else y + delta

    def forward(self, x):
        b, t, d = x.shape
        hd = d // self.heads
        qkv = self.linear("qkv", self.norm1(x)).reshape(b, t, 3, self.heads, hd)
        qkv = qkv.permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * hd ** -0.5
        attn = attn.softmax(dim=-1)
        o = (attn @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.linear("proj", o)
        return x + self.linear("fc2", F.gelu(self.linear("fc1", self.norm2(x))))


class Lora(torch.nn.Module):
    """peft's LoRA on the attention Linears (qkv, proj), alpha = r: delta = B A x."""

    def __init__(self, dim, rank):
        super().__init__()
        self.a = torch.nn.ParameterDict({n: torch.nn.Parameter(torch.randn(rank, dim) * dim ** -0.5)
                                         for n in ("qkv", "proj")})
        self.b = torch.nn.ParameterDict({"qkv": torch.nn.Parameter(torch.zeros(3 * dim, rank)),
                                         "proj": torch.nn.Parameter(torch.zeros(dim, rank))})

    def delta(self, name, x):
        if name not in self.a:
            return None
        return F.linear(F.linear(x, self.a[name]), self.b[name])


class AuroraCode(torch.nn.Module):
    """Aurora's released CP (docs/reference.md section 2) on one ViT block, written the way its code
    does it: shared In (R, d) and Out (d, R) Linears, a dense (R, R, R) core, CP_attention [R, 4]
    for q, k, v, proj and mlp_CP [R, 8] for fc1 (4 cores) and fc2 (4 cores), dropout 0.1 on the
    codes."""

    def __init__(self, dim, rank, chunks=4):
        super().__init__()
        self.rank, self.chunks = rank, chunks
        self.cp_in = torch.nn.Linear(dim, rank, bias=False)
        self.cp_out = torch.nn.Linear(rank, dim, bias=False)
        self.core = torch.nn.Parameter(torch.randn(rank, rank, rank) * 0.02)
        self.att = torch.nn.Parameter(torch.randn(rank, 4) * 0.1)
        self.mlp = torch.nn.Parameter(torch.randn(rank, 2 * chunks) * 0.1)

    def codes(self, u, cores):  # u (..., R) through each (R, R) core -> (..., n, R)
        return F.dropout(torch.stack([u @ c for c in cores], -2), 0.1, self.training)

    def delta(self, name, x):
        r, c = self.rank, self.chunks
        if name in ("qkv", "proj"):
            cores = self.core @ self.att  # (R, R, 4)
            cols = range(3) if name == "qkv" else [3]
            z = self.codes(self.cp_in(x), [cores[:, :, j] for j in cols])
            return self.cp_out(z).flatten(-2)
        m = (self.core @ self.mlp)[:, :, :c].reshape(r, c * r) if name == "fc1" else \
            (self.core @ self.mlp)[:, :, c:].reshape(r, c * r)
        if name == "fc1":
            z = F.dropout((self.cp_in(x) @ m).unflatten(-1, (c, r)), 0.1, self.training)
            return self.cp_out(z).flatten(-2)
        u = self.cp_in(x.unflatten(-1, (c, -1))).flatten(-2)  # (..., 4 R)
        return self.cp_out(F.dropout(u @ m.t(), 0.1, self.training))


class AuroraPaper(torch.nn.Module):
    """The paper's CP on the attention Linears: delta_k(x) = Out diag(lambda * p_k) V^T x."""

    def __init__(self, dim, rank):
        super().__init__()
        self.v = torch.nn.Parameter(torch.randn(dim, rank) * dim ** -0.5)
        self.out = torch.nn.Parameter(torch.zeros(dim, rank))
        self.p = torch.nn.Parameter(torch.randn(4, rank))
        self.lam = torch.nn.Parameter(torch.ones(rank))

    def delta(self, name, x):
        if name not in ("qkv", "proj"):
            return None
        w = self.p[:3] if name == "qkv" else self.p[3:]  # (n, R)
        z = (x @ self.v).unsqueeze(-2) * (self.lam * w)  # (..., n, R)
        return (z @ self.out.t()).flatten(-2)


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


def frozen_block(args):
    blk = Block(args.dim, args.heads).to(args.device)
    for p in blk.parameters():
        p.requires_grad_(False)
    return blk


def precision_region(args):
    """The forward's autocast region for --precision bf16; nothing to enter otherwise (tf32 is a
    switch set once in main)."""
    if args.precision == "bf16":
        return torch.autocast(args.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def timed_step(blk, x, seed, region=contextlib.nullcontext):
    """One forward (inside region()) and backward: (forward ms, backward ms); gradients cleared
    after."""
    dev = x.device
    t0 = clock(dev)
    with region():
        y = blk(x)
    t1 = clock(dev)
    y.backward(seed.to(y.dtype))
    t2 = clock(dev)
    del y
    x.grad = None
    blk.zero_grad(set_to_none=True)
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3


def bench_block(args):
    dev = args.device
    blk = frozen_block(args)
    tiny = torch.zeros(1, 8, args.dim, device=dev, requires_grad=True)
    with precision_region(args):
        warm = blk(tiny).sum()
    warm.backward()
    x = torch.randn(args.batch, args.tokens, args.dim, device=dev, requires_grad=True)
    seed = torch.ones(args.batch, args.tokens, args.dim, device=dev)
    meter = PeakMeter(dev)
    fwd, bwd, delta = [], [], None
    for it in range(-2, args.iters):
        f, b = timed_step(blk, x, seed, lambda: precision_region(args))
        if delta is None:
            delta = meter.read()
        if it >= 0:
            fwd.append(f)
            bwd.append(b)
    return {"bench": "block", "impl": "torch", "device": str(dev), "precision": args.precision,
            "batch": args.batch, "tokens": args.tokens,
            "dim": args.dim, "heads": args.heads, "threads": torch.get_num_threads(),
            "fwd_ms": round(statistics.median(fwd), 2), "bwd_ms": round(statistics.median(bwd), 2),
            "peak_bytes": delta}


def step_flops(blk, x, seed):
    """GEMM FLOPs of one forward+backward (torch >= 2.1; None on older ones, e.g. Debian's)."""
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    with FlopCounterMode(display=False) as counter:
        timed_step(blk, x, seed)
    return counter.get_total_flops()


def bench_block_petl(args):
    """One block with the method attached against the same block without it, in alternation
    (as `petal bench block --petl` runs them), and the GEMM FLOPs each adds."""
    dev = args.device
    plain, tuned = frozen_block(args), frozen_block(args)
    tuned.load_state_dict(plain.state_dict())
    if args.petl == "lora":
        tuned.petl = Lora(args.dim, args.rank).to(dev)
    elif args.variant == "code":
        tuned.petl = AuroraCode(args.dim, args.rank).to(dev)
    else:
        tuned.petl = AuroraPaper(args.dim, args.rank).to(dev)
    x = torch.randn(args.batch, args.tokens, args.dim, device=dev, requires_grad=True)
    seed = torch.ones(args.batch, args.tokens, args.dim, device=dev)
    times = {"plain": ([], []), "tuned": ([], [])}
    for it in range(-2, args.iters):
        for arm, blk in (("plain", plain), ("tuned", tuned)):
            f, b = timed_step(blk, x, seed)
            if it >= 0:
                times[arm][0].append(f)
                times[arm][1].append(b)
    med = {arm: [statistics.median(v) for v in fb] for arm, fb in times.items()}
    base, with_ = sum(med["plain"]), sum(med["tuned"])
    flops = step_flops(plain, x, seed), step_flops(tuned, x, seed)
    flop_pct = None if flops[0] is None else round(100 * (flops[1] - flops[0]) / flops[0], 2)
    return {"bench": "block-petl", "impl": "torch", "device": str(dev), "method": args.petl,
            "variant": args.variant, "rank": args.rank, "batch": args.batch,
            "tokens": args.tokens, "threads": torch.get_num_threads(),
            "base_fwd_ms": round(med["plain"][0], 2), "base_bwd_ms": round(med["plain"][1], 2),
            "petl_fwd_ms": round(med["tuned"][0], 2), "petl_bwd_ms": round(med["tuned"][1], 2),
            "time_overhead_pct": round(100 * (with_ - base) / base, 2),
            "flop_overhead_pct": flop_pct}


def bench_gemm(args):
    dev = args.device
    a = torch.randn(args.m, args.k, device=dev, requires_grad=True)
    b = torch.randn(args.k, args.n, device=dev, requires_grad=True)
    g = torch.randn(args.m, args.n, device=dev)
    fwd, bwd, peak = [], [], 0
    for it in range(-2, args.iters):
        meter = PeakMeter(dev) if dev.type == "cuda" else None
        t0 = clock(dev)
        with precision_region(args):
            c = a @ b
        t1 = clock(dev)
        c.backward(g.to(c.dtype))
        t2 = clock(dev)
        del c
        a.grad = b.grad = None
        if it >= 0:
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
            peak = max(peak, meter.read()) if meter else peak
    f = statistics.median(fwd)
    result = {"bench": "gemm", "impl": "torch", "device": str(dev), "precision": args.precision,
              "m": args.m, "n": args.n,
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


BLIP_ENC = 30523  # [ENC] in BLIP's 30524-token vocabulary (bert-base-uncased + [DEC] + [ENC])


def import_aurora(args):
    """Aurora's CP/blip_retrieval.py, importable offline in one process: blip_reference.import_blip
    stubs fairscale and gives the Tokenizer stand-in (token ids in, no vocabulary download)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from blip_reference import import_blip
    blip, _, _ = import_blip(args.blip_repo)
    if importlib.util.find_spec("tkinter") is None:  # CP/med.py's stray `from tkinter import N`
        sys.modules["tkinter"] = types.ModuleType("tkinter")
        sys.modules["tkinter"].N = None
    sys.path.insert(0, args.aurora_repo)
    import CP.blip_retrieval as aurora
    tok = blip.init_tokenizer()
    tok.enc_token_id = BLIP_ENC  # the stand-in's ids are the tiny fixtures' vocabulary
    aurora.init_tokenizer = lambda: tok
    aurora.concat_all_gather = lambda t: t  # one process (negative_all_rank False)
    return aurora, tok


def release_trainable(name):
    """train_retrieval.py's filter, verbatim: the CP and GQT tensors, vision_proj and itm_head
    of the online model. Its 'test_proj' (sic) matches nothing, so text_proj stays frozen."""
    online = "_m" not in name
    return online and any(k in name for k in ("CP", "vision_proj", "test_proj", "itm_head"))


def aurora_retrieval(args, aurora):
    # the keys CP/ reads from train_retrieval.py's yaml config; adapter_visual and
    # temporal_attention are read but missing from the released configs (KeyError without them)
    config = {"R": args.rank, "modality": "image", "frame_aware_attention": False,
              "adapter_visual": False, "temporal_attention": False}
    model = aurora.blip_retrieval(
        pretrained="", config=config, image_size=args.image_size, vit="base",
        med_config=os.path.join(args.aurora_repo, "configs", "med_config.json"),
        queue_size=57600, negative_all_rank=False, device=args.device)
    model = model.to(args.device).train()  # as train(): dropout on
    for name, p in model.named_parameters():
        p.requires_grad_(release_trainable(name))
    return model


def train_step(model, opt, batch, tok):
    """One step of train_retrieval.py's train(): (forward, backward, optimizer) ms."""
    images, ids, mask, idx = batch
    dev = images.device
    tok.queue.append((ids, mask))  # what the model's tokenizer call returns for the captions
    t0 = clock(dev)
    loss_ita, loss_itm = model(images, [""] * len(ids), alpha=0.4, idx=idx)
    t1 = clock(dev)
    (loss_ita + loss_itm).backward()
    t2 = clock(dev)
    opt.step()
    opt.zero_grad()
    t3 = clock(dev)
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3


def bench_train(args):
    aurora, tok = import_aurora(args)
    model = aurora_retrieval(args, aurora)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)
    dev, b, t = args.device, args.batch, args.tokens
    images = torch.randn(b, 3, args.image_size, args.image_size, device=dev)
    ids = (1000 + (torch.arange(b * t) * 7919) % 20000).reshape(b, t).to(dev)
    ids[:, 0] = 101  # [CLS]; the model itself puts [ENC] there for ITM
    batch = images, ids, torch.ones_like(ids), torch.arange(b, device=dev)
    meter, delta = PeakMeter(dev), None
    steps = []
    for it in range(-1, args.iters):
        ms = train_step(model, opt, batch, tok)
        if delta is None:
            delta = meter.read()
        if it >= 0:
            steps.append(ms)
    med = [statistics.median(s[i] for s in steps) for i in range(3)]
    return {"bench": "train", "impl": "torch", "device": str(dev),
            "model": "blip-base-retrieval", "petl": "aurora", "variant": "code",
            "rank": args.rank, "batch": b, "image_size": args.image_size, "text_length": t,
            "threads": torch.get_num_threads(), "trainable": sum(p.numel() for p in params),
            "ms_per_step": round(statistics.median(sum(s) for s in steps), 1),
            "fwd_ms": round(med[0], 1), "bwd_ms": round(med[1], 1), "opt_ms": round(med[2], 1),
            "peak_bytes": delta}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bench", choices=["gemm", "block", "block-petl", "vit", "blip-itm", "train"])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--iters", type=int, default=None,
                   help="10 (gemm, block) or 3 (vit, blip-itm, train)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=["f32", "tf32", "bf16"], default="f32",
                   help="GEMM input precision (gemm, block); tf32 on cuda only")
    p.add_argument("--m", type=int, default=1024)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--k", type=int, default=1024)
    p.add_argument("--batch", type=int, default=None,
                   help="4 (block, train) or 2 (vit, blip-itm)")
    p.add_argument("--tokens", type=int, default=None,
                   help="197 (block) or 35 (blip-itm, train: BLIP retrieval's max_length)")
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--image-size", type=int, default=None, help="384, or 224 (train)")
    p.add_argument("--petl", choices=["aurora", "lora"], default="aurora")
    p.add_argument("--variant", choices=["paper", "code"], default=None,
                   help="paper, or code (train)")
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--aurora-repo", default="/tmp/aurora",
                   help="WillDreamer/Aurora checkout (train)")
    p.add_argument("--blip-repo", default="/tmp/blip", help="salesforce/BLIP checkout (train)")
    args = p.parse_args()
    # as petal's benches: (vit and blip-itm, train, the others)
    defaults = {"iters": (3, 3, 10), "batch": (2, 4, 4), "tokens": (35, 35, 197),
                "image_size": (384, 224, 384), "variant": ("paper", "code", "paper")}
    column = {"vit": 0, "blip-itm": 0, "train": 1}.get(args.bench, 2)
    for name, values in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, values[column])
    if args.bench == "train" and (args.petl, args.variant) != ("aurora", "code"):
        p.error("train runs the released Aurora code: --petl aurora --variant code")
    args.device = torch.device(args.device)
    if args.precision != "f32" and args.bench not in ("gemm", "block"):
        p.error("--precision %s: only gemm and block take it" % args.precision)
    if args.precision == "tf32" and args.device.type != "cuda":
        p.error("--precision tf32 needs --device cuda (TF32 is a GPU tensor-core mode)")
    if args.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with torch.random.fork_rng():
        benches = {"block": bench_block, "block-petl": bench_block_petl, "gemm": bench_gemm,
                   "vit": bench_blip, "blip-itm": bench_blip, "train": bench_train}
        result = benches[args.bench](args)
    if args.device.type == "cpu":
        result["openblas_coretype"] = os.environ.get("OPENBLAS_CORETYPE", "")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
