#!/usr/bin/env python3
"""Reference fixtures for petal's PETL methods on the tiny BLIP of tools/make_blip_fixtures.py.

Run by hand (never by CI), with the same setup as make_blip_fixtures.py:

    tools/.venv415/bin/python tools/make_petl_fixtures.py --blip-repo /tmp/blip --out tests/data/petl

Each method is written here in PyTorch from docs/reference.md (and, for the "code" variants, the
forward lines of WillDreamer/Aurora at 1b189ae; for VeRA huggingface/peft's formulation; for the
adapters the structure of RERV/UniAdapter at 796c124), attached to the Salesforce tiny BLIP modules
by replacing their forward methods. A fixture holds every weight but the momentum encoders'
(/weights, petal's registry names), the ITM logits and ITC features of a small batch
(/outputs/itm_itc; MCAM: its loss over the batch's ITC features, /outputs/mcam) and the gradient of
sum(outputs * seed) (MCAM: of the loss) with respect to every trainable tensor (/grads). Models
run in eval mode (dropout off) with the zero-initialised factors made random, so every gradient is
non-zero.
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


# ---- VeRA (huggingface/peft's formulation, written from docs/reference.md section 4) ----

def attach_vera(model, rank, patterns):
    """Shared frozen A (r, max_in) and B (max_out, r), sliced per target; per target trainable
    lambda_d (r) and lambda_b (out): out += lambda_b * B[:out] (lambda_d * A[:, :in] x)."""
    import fnmatch
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)
             and "_m." not in n and any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    lins = [model.get_submodule(n) for n in names]
    max_in = max(lin.in_features for lin in lins)
    max_out = max(lin.out_features for lin in lins)
    g = torch.Generator().manual_seed(0)
    a = torch.empty(rank, max_in).uniform_(-(6 / max_in) ** 0.5, (6 / max_in) ** 0.5, generator=g)
    b = torch.empty(max_out, rank).uniform_(-(6 / rank) ** 0.5, (6 / rank) ** 0.5, generator=g)
    model.register_buffer("vera_A", a)
    model.register_buffer("vera_B", b)
    for lin in lins:
        # 0.1 and 0 in training; random so every factor matters
        lin.vera_lambda_d = nn.Parameter(0.1 + 0.3 * torch.randn(rank))
        lin.vera_lambda_b = nn.Parameter(0.3 * torch.randn(lin.out_features))
        base = lin.forward

        def forward(x, base=base, lin=lin):
            u = x @ model.vera_A[:, :lin.in_features].t()
            return base(x) + lin.vera_lambda_b * ((lin.vera_lambda_d * u) @ model.vera_B[:lin.out_features].t())

        lin.forward = forward


# ---- UniTrans: VCRA and QASN (docs/reference.md section 3) ----

def scaled_projection(x, a, b, lambda_a, lambda_b):
    """Lambda_b (B (Lambda_a (A x))) for row vectors x (..., d)."""
    return lambda_b * ((lambda_a * (x @ a.t())) @ b.t())


def random_pair(model, prefix, rank, d):
    model.register_buffer(prefix + "A", torch.randn(rank, d) / d ** 0.5)
    model.register_buffer(prefix + "B", torch.randn(d, rank) / rank ** 0.5)


def vcra_pair(module, which, rank, d):
    setattr(module, f"vcra_lambda_a_{which}", nn.Parameter(1 + 0.3 * torch.randn(rank)))
    setattr(module, f"vcra_lambda_b_{which}", nn.Parameter(0.3 * torch.randn(d)))  # 0 in training


def attach_vcra(model, rank):
    """q, k, v of every attention layer: + s Lambda_b B Lambda_a A x; k and v share a pair."""
    d = 32
    random_pair(model, "vcra_", rank, d)
    model.vcra_scale = nn.Parameter(torch.tensor([1.3]))

    def delta(x, module, which):
        la, lb = getattr(module, f"vcra_lambda_a_{which}"), getattr(module, f"vcra_lambda_b_{which}")
        return model.vcra_scale * scaled_projection(x, model.vcra_A, model.vcra_B, la, lb)

    for blk in model.visual_encoder.blocks:
        attn = blk.attn
        vcra_pair(attn, "q", rank, d)
        vcra_pair(attn, "kv", rank, d)
        base = attn.qkv.forward
        attn.qkv.forward = (lambda x, base=base, attn=attn: base(x) + torch.cat(
            [delta(x, attn, "q"), delta(x, attn, "kv"), delta(x, attn, "kv")], dim=-1))
    for layer in model.text_encoder.encoder.layer:
        for sa in (layer.attention.self, layer.crossattention.self):
            vcra_pair(sa, "q", rank, d)
            vcra_pair(sa, "kv", rank, d)
            for lin, which in ((sa.query, "q"), (sa.key, "kv"), (sa.value, "kv")):
                base = lin.forward
                lin.forward = lambda x, base=base, sa=sa, which=which: base(x) + delta(x, sa, which)


def attach_qasn(model, rank, act):
    """The side network over the multimodal passes of the text encoder's layers:
    h_{i+1} = h_i + w_i(x_i), y_i += act(alpha_i h_{i+1} + beta_i) - act(0)."""
    d = 32
    random_pair(model, "qasn_", rank, d)
    state = {}
    for i, layer in enumerate(model.text_encoder.encoder.layer):
        layer.qasn_lambda_a = nn.Parameter(1 + 0.3 * torch.randn(rank))
        layer.qasn_lambda_b = nn.Parameter(0.3 * torch.randn(d))  # 0 in training
        layer.qasn_alpha = nn.Parameter(1 + 0.3 * torch.randn(d))
        layer.qasn_beta = nn.Parameter(0.3 * torch.randn(d))
        original = layer.forward

        def forward(hidden, attention_mask=None, head_mask=None, encoder_hidden_states=None,
                    encoder_attention_mask=None, past_key_value=None, output_attentions=False,
                    mode=None, i=i, layer=layer, original=original):
            out = original(hidden, attention_mask, head_mask, encoder_hidden_states,
                           encoder_attention_mask, past_key_value, output_attentions, mode=mode)
            if mode != "multimodal":
                return out
            w = scaled_projection(hidden, model.qasn_A, model.qasn_B, layer.qasn_lambda_a,
                                  layer.qasn_lambda_b)
            state["h"] = w if i == 0 else state["h"] + w
            f = act(layer.qasn_alpha * state["h"] + layer.qasn_beta) - act(torch.zeros(()))
            return (out[0] + f,) + out[1:]

        layer.forward = forward


# ---- UniAdapter (RERV/UniAdapter models/adapter.py, vit.py and med.py, from their structure) ----

class Adapter(nn.Module):
    """LN -> shared down -> ReLU -> visual / text / LN(multimodal + text) up, times 0.1."""

    def __init__(self, d, rank):
        super().__init__()
        self.adapter_layer_norm_before = nn.LayerNorm(d)
        self.down_proj = nn.Linear(d, rank)
        self.up_proj = nn.Linear(rank, d)
        self.multi_up_proj = nn.Linear(rank, d)
        self.visual_up_proj = nn.Linear(rank, d)
        self.adapter_layer_norm_cross_modal = nn.LayerNorm(d)
        for p in self.parameters():  # up projections 0 in training: random so every factor matters
            nn.init.normal_(p, std=0.3)
        for ln in (self.adapter_layer_norm_before, self.adapter_layer_norm_cross_modal):
            nn.init.normal_(ln.weight, mean=1.0, std=0.3)

    def forward(self, x, mode):
        down = F.relu(self.down_proj(self.adapter_layer_norm_before(x)))
        if mode == "visual":
            up = self.visual_up_proj(down)
        elif mode == "text":
            up = self.up_proj(down)
        else:
            up = self.adapter_layer_norm_cross_modal(self.multi_up_proj(down) + self.up_proj(down))
        return 0.1 * up


def attach_adapters(model, rank):
    model.adapters = nn.ModuleList([Adapter(32, rank) for _ in model.visual_encoder.blocks])
    for blk, adapter in zip(model.visual_encoder.blocks, model.adapters):
        def vit_forward(x, register_hook=False, blk=blk, adapter=adapter):
            x = x + blk.drop_path(blk.attn(blk.norm1(x)))
            return x + (blk.drop_path(blk.mlp(blk.norm2(x))) + adapter(x, "visual"))

        blk.forward = vit_forward
    for layer, adapter in zip(model.text_encoder.encoder.layer, model.adapters):
        def bert_forward(hidden, attention_mask=None, head_mask=None, encoder_hidden_states=None,
                         encoder_attention_mask=None, past_key_value=None, output_attentions=False,
                         mode=None, layer=layer, adapter=adapter):
            a_s = layer.attention(hidden, attention_mask)[0]
            if mode != "multimodal":
                return (layer.feed_forward_chunk(a_s) + adapter(a_s, "text"), None)
            a_c = layer.crossattention(a_s, attention_mask, None, encoder_hidden_states,
                                       encoder_attention_mask)[0]
            y = layer.feed_forward_chunk(a_c) + adapter(a_s, "text") + adapter(a_c, "multimodal")
            return (y, None)

        layer.forward = bert_forward


# ---- MCAM ----

def mcam_loss(image_feat, text_feat, tau, weight):
    """weight * sum_i JS(softmax(S_v[i] / tau) || softmax(S_t[i] / tau)), S_t = S_v^T."""
    s_v = F.normalize(image_feat, dim=-1) @ F.normalize(text_feat, dim=-1).t()
    p = F.softmax(s_v / tau, dim=1)
    q = F.softmax(s_v.t() / tau, dim=1)
    m = (p + q) / 2
    js = 0.5 * (p * (p / m).log()).sum(1) + 0.5 * (q * (q / m).log()).sum(1)
    return weight * js.sum()


# ---- fixtures ----

PETAL_NAMES = {"cp.U.weight": "CP_U.weight", "cp.V.weight": "CP_V.weight", "cp.C": "CP_C",
               "cp.Uo": "CP_U", "cp.Vi": "CP_V", "cp.P": "CP_P",
               "cp.lam.vision": "CP_lambda.vision", "cp.lam.text": "CP_lambda.text",
               "cp.lam.multimodal": "CP_lambda.multimodal"}


def petal_name(name):
    return PETAL_NAMES.get(name, name)


MOMENTUM = ("_m.", "image_queue", "text_queue", "idx_queue", "ptr_queue")


def features(model, image, ids, mask):
    """The ITM logits of the image-grounded [CLS] and the normalised ITC features."""
    enc = ids.clone()
    enc[:, 0] = TOK["enc"]
    embeds = model.visual_encoder(image)
    mm = model.text_encoder(enc, attention_mask=mask, encoder_hidden_states=embeds, return_dict=True)
    itm = model.itm_head(mm.last_hidden_state[:, 0, :])
    text = model.text_encoder(ids, attention_mask=mask, return_dict=True, mode="text")
    image_feat = F.normalize(model.vision_proj(embeds[:, 0, :]), dim=-1)
    text_feat = F.normalize(model.text_proj(text.last_hidden_state[:, 0, :]), dim=-1)
    return itm, image_feat, text_feat


def itm_itc_outputs(w, model, image, ids, mask):
    """/outputs/itm_itc and the number whose gradients are stored: sum(outputs * seed)."""
    outputs = torch.cat(features(model, image, ids, mask), dim=1)
    w.put("outputs", "itm_itc", outputs)
    seed = torch.randn(outputs.shape, generator=torch.Generator().manual_seed(9))
    w.put("inputs", "seed", seed)
    return (outputs * seed).sum()


def mcam_output(w, model, image, ids, mask, tau=0.5, weight=0.7):
    """/outputs/mcam: MCAM over the batch's ITC features (its gradients are stored)."""
    _, image_feat, text_feat = features(model, image, ids, mask)
    loss = mcam_loss(image_feat, text_feat, tau, weight)
    w.put("outputs", "mcam", loss)
    return loss


def write(model, trainable, out, image, ids, mask, output):
    w = Writer(out)
    for k, v in model.state_dict().items():
        if not any(m in k for m in MOMENTUM):  # petal's fixture models have no momentum encoders
            w.put("weights", petal_name(k), v)
    for name, t in [("image", image), ("ids", ids), ("mask", mask)]:
        w.put("inputs", name, t)
    output(w, model, image, ids, mask).backward()
    params = dict(model.named_parameters())
    for name in trainable:
        w.put("grads", petal_name(name), params[name].grad)
    w.close()


HEADS = ["vision_proj.weight", "vision_proj.bias", "itm_head.weight", "itm_head.bias"]


def fixture(mods, cfg_path, out, attach, output=itm_itc_outputs, heads=HEADS, lengths=(6, 5)):
    _, retrieval, _ = mods
    torch.manual_seed(5)
    rng = np.random.default_rng(5)
    model = retrieval.BLIP_Retrieval(med_config=cfg_path, image_size=32, embed_dim=16, queue_size=12)
    before = set(n for n, _ in model.named_parameters())
    attach(model)
    trainable = [n for n, _ in model.named_parameters() if n not in before and "_m." not in n]
    model.eval()
    image = torch.randn(len(lengths), 3, 32, 32)
    ids, mask = text_ids(rng, list(lengths), 6)
    write(model, trainable + heads, out, image, ids, mask, output)


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

    def unitrans(m):  # VCRA + QASN (GELU); MCAM has its own fixture
        attach_vcra(m, 3)
        attach_qasn(m, 3, F.gelu)

    targets = ["*.attn.qkv", "*.crossattention.self.value"]
    cases = {"cp_code.h5": (aurora_code, {}),
             "cp_paper.h5": (lambda m: attach_cp(m, 3, False), {}),
             "lora.h5": (lambda m: attach_lora(m, 2, 4.0, targets), {}),
             "vera.h5": (lambda m: attach_vera(m, 3, targets), {}),
             "unitrans.h5": (unitrans, {}),
             "qasn_sigmoid.h5": (lambda m: attach_qasn(m, 2, torch.sigmoid), {}),
             "adapter.h5": (lambda m: attach_adapters(m, 2), {}),
             "mcam.h5": (lambda m: None, dict(output=mcam_output, lengths=(6, 5, 4),
                                              heads=["vision_proj.weight", "vision_proj.bias",
                                                     "text_proj.weight", "text_proj.bias"]))}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = med_config(os.path.join(tmp, "med_tiny.json"))
        for name, (attach, options) in cases.items():
            fixture(mods, cfg, os.path.join(args.out, name), attach, **options)
            print("wrote", name)


if __name__ == "__main__":
    main()
