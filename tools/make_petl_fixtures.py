#!/usr/bin/env python3
"""Reference fixtures for petal's PETL methods on the tiny BLIP of tools/make_blip_fixtures.py.

Run by hand (never by CI), with the same setup as make_blip_fixtures.py:

    tools/.venv415/bin/python tools/make_petl_fixtures.py --blip-repo /tmp/blip --out tests/data/petl

Each method is written here in PyTorch from REFERENCE.md (and, for the "code" variants, the
forward lines of WillDreamer/Aurora at 1b189ae), attached to the Salesforce tiny BLIP modules by
replacing their forward methods. A fixture holds every weight (/weights, petal's registry names),
the ITM logits and ITC features of a small batch (/outputs) and the gradient of
sum(outputs * seed) with respect to every trainable tensor (/grads). Models run in eval mode
(dropout off) with the zero-initialised factors made random, so every gradient is non-zero.
"""
import argparse
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blip_reference import TOK, Writer, import_blip, med_config, text_ids  # noqa: E402


def xavier(*shape):
    t = torch.zeros(*shape)
    nn.init.xavier_uniform_(t)
    return nn.Parameter(t)


# ---- CP mode approximation ----

class CPShared(nn.Module):
    """code: U = Linear(d, R) (kaiming), V = Linear(R, d) (zeros, randomised here), dense C.
    paper: In(x) = x V (V: d x R), Out = U (d x R), cores diag(lambda_m * p_k)."""

    def __init__(self, d, rank, dense, rows=0, modalities=()):
        super().__init__()
        self.dense, self.rank = dense, rank
        if dense:
            self.U = nn.Linear(d, rank, bias=False)
            self.V = nn.Linear(rank, d, bias=False)
            nn.init.normal_(self.V.weight, std=0.3)
            self.C = xavier(rank, rank, rank)
        else:
            self.Uo = nn.Parameter(torch.randn(d, rank) * 0.02)
            self.Vi = nn.Parameter(torch.randn(d, rank) * 0.3)
            self.P = nn.Parameter(torch.randn(rows, rank))
            self.lam = nn.ParameterDict({m: nn.Parameter(torch.ones(rank)) for m in modalities})

    def inp(self, x):
        return self.U(x) if self.dense else x @ self.Vi

    def out(self, z):
        return self.V(z) if self.dense else z @ self.Uo.t()


def cp_vit_attention(attn, cp, rows):
    """Aurora's CP/vit.py Attention: q, k, v deltas on the fused qkv output, proj delta."""
    if cp.dense:
        attn.CP_attention = xavier(cp.rank, 4)
    row = rows[0]
    rows[0] += 4

    def core(u, j):
        if cp.dense:
            return u @ (cp.C @ attn.CP_attention)[:, :, j]
        return u * (cp.lam["vision"] * cp.P[row + j])

    def forward(x, register_hook=False):
        b, n, c = x.shape
        qkv = attn.qkv(x)
        u = cp.inp(x)
        qkv = qkv + torch.cat([cp.out(core(u, j)) for j in range(3)], dim=2)
        qkv = qkv.reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)
        x = (a @ v).transpose(1, 2).reshape(b, n, c)
        return attn.proj(x) + cp.out(core(cp.inp(x), 3))

    attn.forward = forward


def cp_vit_mlp(mlp, cp, rows):
    """Aurora's CP/vit.py Mlp, with the hidden width a multiple c of d (c = 4 in ViT-B)."""
    chunks = mlp.fc1.out_features // mlp.fc1.in_features
    r = cp.rank
    if cp.dense:
        mlp.mlp_CP = xavier(r, 2 * chunks)
    row = rows[0]
    rows[0] += 2 * chunks

    def forward(x):
        b, n, c = x.shape
        if cp.dense:
            cpc = cp.C @ mlp.mlp_CP
            fc1_cp = cpc[:, :, :chunks].reshape(r, r * chunks)
            fc2_cp = cpc[:, :, chunks:].reshape(r, r * chunks)
            h = mlp.fc1(x) + cp.out((cp.inp(x) @ fc1_cp).reshape(b, n, chunks, r)).reshape(b, n, chunks * c)
        else:
            w1 = cp.lam["vision"] * cp.P[row:row + chunks]  # (c, R)
            h = mlp.fc1(x) + cp.out(cp.inp(x)[:, :, None, :] * w1).reshape(b, n, chunks * c)
        x = mlp.act(h)
        h = mlp.fc2(x)
        x4 = x.reshape(b, n, chunks, c)
        if cp.dense:
            return h + cp.out(cp.inp(x4).reshape(b, n, chunks * r) @ fc2_cp.t())
        w2 = cp.lam["vision"] * cp.P[row + chunks:row + 2 * chunks]
        return h + cp.out((cp.inp(x4) * w2).sum(dim=2))

    mlp.forward = forward


def cp_bert_attention(att, cp, rows, modality):
    """Aurora's CP/med.py BertSelfAttention (q, k, v deltas, In(x) dropped out first in the
    code) and, for the paper, the output dense of the block (BertAttention.output.dense)."""
    sa = att.self
    if cp.dense:
        sa.q_CP, sa.k_CP, sa.v_CP = xavier(cp.rank, 1), xavier(cp.rank, 1), xavier(cp.rank, 1)
    row = rows[0]
    rows[0] += 3 if cp.dense else 4

    def delta(x, j):
        if cp.dense:
            coef = [sa.q_CP, sa.k_CP, sa.v_CP][j]
            return cp.out(cp.inp(x) @ (cp.C @ coef)[:, :, 0])
        return cp.out(cp.inp(x) * (cp.lam[modality] * cp.P[row + j]))

    def forward(hidden, attention_mask=None, head_mask=None, encoder_hidden_states=None,
                encoder_attention_mask=None, past_key_value=None, output_attentions=False):
        source = hidden if encoder_hidden_states is None else encoder_hidden_states
        mask = attention_mask if encoder_hidden_states is None else encoder_attention_mask
        q = sa.transpose_for_scores(sa.query(hidden) + delta(hidden, 0))
        k = sa.transpose_for_scores(sa.key(source) + delta(source, 1))
        v = sa.transpose_for_scores(sa.value(source) + delta(source, 2))
        scores = (q @ k.transpose(-1, -2)) / (sa.attention_head_size ** 0.5)
        if mask is not None:
            scores = scores + mask
        ctx = scores.softmax(dim=-1) @ v
        ctx = ctx.permute(0, 2, 1, 3).reshape(hidden.shape[0], hidden.shape[1], -1)
        return (ctx, (k, v))

    sa.forward = forward
    if not cp.dense:
        out = att.output

        def out_forward(h, inp):
            d = out.dense(h) + cp.out(cp.inp(h) * (cp.lam[modality] * cp.P[row + 3]))
            return out.LayerNorm(d + inp)

        out.forward = out_forward


def gqt_affine(layer):
    """Aurora's CP/med.py BertLayer: + 0.1 (a_s g_s + b_s) + 0.1 (a_c g_c + b_c) in multimodal mode."""
    d = layer.attention.output.dense.out_features
    for name in ["CP_scaleself", "CP_shiftself", "CP_scalecross", "CP_shiftcross"]:
        setattr(layer, name, nn.Parameter(torch.randn(d) * 0.1))
    original = layer.forward

    def forward(hidden, attention_mask=None, head_mask=None, encoder_hidden_states=None,
                encoder_attention_mask=None, past_key_value=None, output_attentions=False, mode=None):
        if mode != "multimodal":
            return original(hidden, attention_mask, head_mask, encoder_hidden_states,
                            encoder_attention_mask, past_key_value, output_attentions, mode=mode)
        a_s = layer.attention(hidden, attention_mask)[0]
        a_c = layer.crossattention(a_s, attention_mask, None, encoder_hidden_states,
                                   encoder_attention_mask)[0]
        y = layer.feed_forward_chunk(a_c)
        y = (y + 0.1 * (a_s * layer.CP_scaleself + layer.CP_shiftself)
             + 0.1 * (a_c * layer.CP_scalecross + layer.CP_shiftcross))
        return (y, None)

    layer.forward = forward


def attach_cp(model, rank, dense):
    vit, text = model.visual_encoder, model.text_encoder
    rows = [0]
    if dense:
        model.cp = CPShared(32, rank, True)
    else:  # count the rows first: 4 per ViT attention + 4 per BERT attention block
        n_rows = 4 * len(vit.blocks) + 8 * len(text.encoder.layer)
        model.cp = CPShared(32, rank, False, n_rows, ("vision", "text", "multimodal"))
    cp = model.cp
    for blk in vit.blocks:
        cp_vit_attention(blk.attn, cp, rows)
        if dense:
            cp_vit_mlp(blk.mlp, cp, rows)
    for layer in text.encoder.layer:
        cp_bert_attention(layer.attention, cp, rows, "text")
        cp_bert_attention(layer.crossattention, cp, rows, "multimodal")


# ---- LoRA ----

def attach_lora(model, rank, alpha, patterns):
    import fnmatch
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)
             and "_m." not in n and any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    for name in names:
        lin = model.get_submodule(name)
        lin.lora_A = nn.Linear(lin.in_features, rank, bias=False)
        lin.lora_B = nn.Linear(rank, lin.out_features, bias=False)
        nn.init.normal_(lin.lora_B.weight, std=0.3)  # zeros in training; random to test gradients
        base = lin.forward
        lin.forward = (lambda x, base=base, lin=lin:
                       base(x) + (alpha / rank) * lin.lora_B(lin.lora_A(x)))


# ---- fixtures ----

PETAL_NAMES = {"cp.U.weight": "CP_U.weight", "cp.V.weight": "CP_V.weight", "cp.C": "CP_C",
               "cp.Uo": "CP_U", "cp.Vi": "CP_V", "cp.P": "CP_P",
               "cp.lam.vision": "CP_lambda.vision", "cp.lam.text": "CP_lambda.text",
               "cp.lam.multimodal": "CP_lambda.multimodal"}


def petal_name(name):
    return PETAL_NAMES.get(name, name)


def write(model, trainable, out, image, ids, mask):
    w = Writer(out)
    for k, v in model.state_dict().items():
        w.put("weights", petal_name(k), v)
    for name, t in [("image", image), ("ids", ids), ("mask", mask)]:
        w.put("inputs", name, t)
    enc = ids.clone()
    enc[:, 0] = TOK["enc"]
    embeds = model.visual_encoder(image)
    mm = model.text_encoder(enc, attention_mask=mask, encoder_hidden_states=embeds, return_dict=True)
    itm = model.itm_head(mm.last_hidden_state[:, 0, :])
    text = model.text_encoder(ids, attention_mask=mask, return_dict=True, mode="text")
    image_feat = F.normalize(model.vision_proj(embeds[:, 0, :]), dim=-1)
    text_feat = F.normalize(model.text_proj(text.last_hidden_state[:, 0, :]), dim=-1)
    outputs = torch.cat([itm, image_feat, text_feat], dim=1)
    w.put("outputs", "itm_itc", outputs)
    seed = torch.randn(outputs.shape, generator=torch.Generator().manual_seed(9))
    w.put("inputs", "seed", seed)
    (outputs * seed).sum().backward()
    params = dict(model.named_parameters())
    for name in trainable:
        w.put("grads", petal_name(name), params[name].grad)
    w.close()


def fixture(mods, cfg_path, out, attach):
    _, retrieval, _ = mods
    torch.manual_seed(5)
    rng = np.random.default_rng(5)
    model = retrieval.BLIP_Retrieval(med_config=cfg_path, image_size=32, embed_dim=16, queue_size=12)
    before = set(n for n, _ in model.named_parameters())
    attach(model)
    trainable = [n for n, _ in model.named_parameters() if n not in before and "_m." not in n]
    trainable += ["vision_proj.weight", "vision_proj.bias", "itm_head.weight", "itm_head.bias"]
    model.eval()
    image = torch.randn(2, 3, 32, 32)
    ids, mask = text_ids(rng, [6, 5], 6)
    write(model, trainable, out, image, ids, mask)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blip-repo", required=True)
    p.add_argument("--out", default="tests/data/petl")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    mods = import_blip(os.path.abspath(args.blip_repo))

    def aurora_code(m):  # CP with the dense core and GQT affine, momentum encoders untouched
        attach_cp(m, 3, True)
        for layer in m.text_encoder.encoder.layer:
            gqt_affine(layer)

    cases = {"cp_code.h5": aurora_code,
             "cp_paper.h5": lambda m: attach_cp(m, 3, False),
             "lora.h5": lambda m: attach_lora(m, 2, 4.0, ["*.attn.qkv", "*.crossattention.self.value"])}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = med_config(os.path.join(tmp, "med_tiny.json"))
        for name, attach in cases.items():
            fixture(mods, cfg, os.path.join(args.out, name), attach)
            print("wrote", name)


if __name__ == "__main__":
    main()
