#!/usr/bin/env python3
"""Reference fixture for petal's video retrieval features (models/blip/video.h), computed by the
Salesforce BLIP code itself: eval_retrieval_video.py's evaluation() on a fixed array of frames.

Run by hand (never by CI), from the repository root, in the environment of
tools/make_blip_fixtures.py (torch 1.13 and torchvision from Debian, transformers 4.15,
timm 0.4.12; see its docstring):

    git clone https://github.com/salesforce/BLIP /tmp/blip && git -C /tmp/blip checkout 056a169
    tools/.venv415/bin/python tools/make_video_fixtures.py --blip-repo /tmp/blip \
        --out tests/data/video

(tests/data/video/tiny_video.h5 was last written with a venv made with --system-site-packages over
Debian's python3-torch 1.13.0, holding transformers 4.15.0 and timm 0.4.12: the /tmp/venv-vmodel
of that session; any such environment gives the same file.)

The model is make_blip_fixtures.py's tiny retrieval model (widths 32, 2 layers, 32 px, 5 tokens a
frame) in eval mode, its parameters filled by make_blip_fixtures.py's hash_params, which the C test
repeats (tests/hashed.h), so no weights are committed; the frames (B = 2 videos of T = 3 frames)
are given as an array, so decoding is checked elsewhere. tiny_video.h5 holds /inputs (frames, text
ids and masks, k_test) and /outputs:
  frame_embeds      (B, T, N, D)  visual_encoder of every frame
  video_feat_blip   (B, E)        normalize(mean_t(vision_proj(cls_t))): BLIP's evaluation
  video_feat_aurora (B, E)        normalize(vision_proj(mean_t(cls_t))): Aurora's training forward
  text_feat         (Tx, E)       the unimodal text encoder's ITC feature
  sims              (B, Tx)       video_feat_blip @ text_feat^T
  itm_logits        (B Tx, 2)     itm_head of every (video, text) pair, video-major
  score_v2t, score_t2v            evaluation()'s score matrices (k_test 2: one text per video
                                  stays at -100)
/frame_aware: CP/med.py's frame-aware attention on the pairs (video b, text b), b < B:
  frame_feat        (B, T, E)     normalize(vision_proj(cls_t)) (CP/blip_retrieval.py 106)
  feat_scale        (B, T N)      the key scale of weight text_feat[b] . frame_feat[b, t]
  weight            (B, T)        strongly uneven weights (8 x normal), so that the scaling shows
  key_scale         (B, T N)      the key scale of weight
  hidden            (B, L, H)     the multimodal encoder's output, keys scaled by key_scale

and one training step of Aurora's video retrieval (CP/blip_retrieval.py forward, lines 84-300;
Aurora's own code needs its CP-decomposed ViT and text encoder, so the step is written here on
BLIP's modules line by line, without Aurora's CP deltas and its context-aware ITM term, which
petal attaches as PETL methods). The model: the same tiny one with momentum copies equal to it
(copy_params after hashing) and temp 0.07. Its B_TRAIN = 3 videos of T_TRAIN = 2 frames, video ids
[5, 7, 5] are in /train/inputs, with the queues it starts from; frame-aware attention is what
CP/med.py 205-214 does, applied to each cross-attention key projection's output (key_scale
below). /train_plain/ (frame_aware_attention False) and /train_frame_aware/ (True) each hold
  neg_video_for_text, neg_text_for_video  (B_TRAIN) torch.multinomial's choices, to replay
  loss_ita, loss_itm                      ()
  grad_frames (train_frame_aware only)    (B_TRAIN, T_TRAIN, 3, S, S) of loss_ita + loss_itm
  grad_key_weight, grad_key_bias          of text_encoder.encoder.layer.0.crossattention.self.key
  image_queue, text_queue, idx_queue, ptr_queue  after the step
"""
import contextlib
import copy
import argparse
import os
import sys
import tempfile
import types

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from blip_reference import TOK, Writer, import_blip, med_config, text_ids  # noqa: E402
from make_blip_fixtures import hash_params  # noqa: E402

B, T, S = 2, 3, 32
K_TEST = 2
B_TRAIN, T_TRAIN = 3, 2  # the frames' gradient dominates the file: T 2 keeps it < 300 KB
ALPHA = 0.4


def import_video_eval(repo):
    """eval_retrieval_video.py without its YAML reader and decord-based dataset (unused here)."""
    sys.modules["ruamel_yaml"] = types.ModuleType("ruamel_yaml")
    dataset = types.ModuleType("data.video_dataset")
    dataset.VideoDataset = None
    sys.modules["data.video_dataset"] = dataset
    import eval_retrieval_video as ev
    ev.args = types.SimpleNamespace(distributed=False)  # a global of its __main__
    return ev


class Loader:
    """What evaluation() reads of a DataLoader: .dataset.text and (video, video_id) batches."""

    def __init__(self, frames, texts):
        self.frames = frames
        self.dataset = types.SimpleNamespace(text=texts)

    def __iter__(self):
        yield self.frames, torch.arange(self.frames.shape[0])


def video_fixture(mods, ev, cfg_path, out):
    _, retrieval, _ = mods
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    model = retrieval.BLIP_Retrieval(med_config=cfg_path, image_size=S, embed_dim=16,
                                     queue_size=12, momentum=0.995)
    hash_params(model)
    model.eval()
    model.tokenizer.additional_special_tokens_ids = [TOK["enc"]]
    w = Writer(out)
    frames = torch.randn(B, T, 3, S, S)
    ids, mask = text_ids(rng, [8, 5, 7], 8)
    for name, t in [("frames", frames), ("ids", ids), ("mask", mask),
                    ("k_test", torch.tensor(K_TEST))]:
        w.put("inputs", name, t)

    with torch.no_grad():
        # eval_retrieval_video.py evaluation(), lines 69-76
        video_feat = model.visual_encoder(frames.view(-1, 3, S, S))
        video_embed = model.vision_proj(video_feat[:, 0, :])
        video_embed = video_embed.view(B, T, -1).mean(dim=1)
        video_embed = F.normalize(video_embed, dim=-1)
        embeds = video_feat.view(B, T, video_feat.shape[-2], video_feat.shape[-1])
        w.put("outputs", "frame_embeds", embeds)
        w.put("outputs", "video_feat_blip", video_embed)
        # Aurora CP/blip_retrieval.py forward, lines 103-107 (imgfea2videofea is .mean(dim=1))
        image_feat = embeds[:, :, 0, :].mean(dim=1)
        w.put("outputs", "video_feat_aurora", F.normalize(model.vision_proj(image_feat), dim=-1))
        text = model.text_encoder(ids, attention_mask=mask, return_dict=True, mode="text")
        text_feat = F.normalize(model.text_proj(text.last_hidden_state[:, 0, :]), dim=-1)
        w.put("outputs", "text_feat", text_feat)
        w.put("outputs", "sims", video_embed @ text_feat.t())
        # every pair, as evaluation() scores its top k: [ENC] ids, all T x N tokens, no mask
        enc_ids = ids.clone()
        enc_ids[:, 0] = TOK["enc"]
        states = video_feat.view(B, -1, video_feat.shape[-1])
        pair_states = states.repeat_interleave(len(ids), dim=0)
        out = model.text_encoder(enc_ids.repeat(B, 1), attention_mask=mask.repeat(B, 1),
                                 encoder_hidden_states=pair_states,
                                 encoder_attention_mask=torch.ones(pair_states.shape[:-1],
                                                                   dtype=torch.long),
                                 return_dict=True)
        w.put("outputs", "itm_logits", model.itm_head(out.last_hidden_state[:, 0, :]))

    model.tokenizer.queue.append((ids, mask))
    v2t, t2v = ev.evaluation(model, Loader(frames, ["unused"] * len(ids)), model.tokenizer,
                             torch.device("cpu"), {"k_test": K_TEST})
    # Its matrices are (Tx, Tx) for MSR-VTT's one caption per video; the video side is B.
    w.put("outputs", "score_v2t", torch.as_tensor(v2t[:B]))
    w.put("outputs", "score_t2v", torch.as_tensor(t2v[:, :B]))
    frame_aware_fixture(model, frames, ids, mask, w)
    train_fixture(mods, cfg_path, w)
    w.close()


@contextlib.contextmanager
def key_scale(model, weight):
    """CP/med.py 205-214 on every layer's cross-attention: with weight (P, T) = text . frame_t,
    the keys of tokens 1..N of frame t times T softmax_t(weight / 4) (no gradient), the [CLS]
    key of each frame left alone. The scale is the same for every head, so it is applied to the
    key projection's output (P, T (N + 1), H Dh) before transpose_for_scores splits the heads,
    elementwise the same products. weight None: no scaling (frame_aware_attention False)."""
    hooks = []

    def scaled(module, inputs, key):
        a, c, d = key.shape
        t = weight.size(1)
        key = key.reshape(a, t, c // t, d)
        with torch.no_grad():
            frame_semantic = weight.reshape(a, t, 1, 1) / 4.0
            frame_semantic = torch.nn.Softmax(dim=-3)(frame_semantic) * t
        key[:, :, 1:, :] = key[:, :, 1:, :] * frame_semantic
        return key.reshape(a, c, d)

    if weight is not None:
        for layer in model.text_encoder.encoder.layer:
            hooks.append(layer.crossattention.self.key.register_forward_hook(scaled))
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def aurora_step(model, frames, ids, mask, idx, frame_aware, chosen):
    """CP/blip_retrieval.py forward for one process with negative_all_rank True (the video
    configs'; concat_all_gather and all_gather_with_grad are identities), on BLIP's modules.
    The line numbers are CP/blip_retrieval.py's."""
    with torch.no_grad():
        model.temp.clamp_(0.001, 0.5)
    b, t = frames.shape[:2]
    image = frames.reshape(b * t, 3, S, S)  # 98-100
    image_embeds = model.visual_encoder(image)
    image_embeds = image_embeds.reshape(b, t, image_embeds.shape[-2], image_embeds.shape[-1])
    image_feat = image_embeds[:, :, 0, :].mean(dim=1)  # 105-107
    frame_feat = F.normalize(model.vision_proj(image_embeds[:, :, 0, :]), dim=-1)
    image_feat = F.normalize(model.vision_proj(image_feat), dim=-1)
    text_output = model.text_encoder(ids, attention_mask=mask, return_dict=True, mode="text")
    text_feat = F.normalize(model.text_proj(text_output.last_hidden_state[:, 0, :]), dim=-1)

    idx = idx.view(-1, 1)  # 122-128
    idx_all = torch.cat([idx.t(), model.idx_queue.clone().detach()], dim=1)
    pos_idx = torch.eq(idx, idx_all).float()
    sim_targets = pos_idx / pos_idx.sum(1, keepdim=True)
    with torch.no_grad():  # 131-150
        model._momentum_update()
        image_embeds_m = model.visual_encoder_m(image)
        image_embeds_m = image_embeds_m.reshape(b, t, image_embeds_m.shape[-2],
                                                image_embeds_m.shape[-1])
        image_feat_m = image_embeds_m[:, :, 0, :].mean(dim=1)
        image_feat_m = F.normalize(model.vision_proj_m(image_feat_m), dim=-1)
        image_feat_m_all = torch.cat([image_feat_m.t(), model.image_queue.clone().detach()], dim=1)
        text_output_m = model.text_encoder_m(ids, attention_mask=mask, return_dict=True,
                                             mode="text")
        text_feat_m = F.normalize(model.text_proj_m(text_output_m.last_hidden_state[:, 0, :]),
                                  dim=-1)
        text_feat_m_all = torch.cat([text_feat_m.t(), model.text_queue.clone().detach()], dim=1)
        sim_i2t_m = image_feat_m @ text_feat_m_all / model.temp
        sim_t2i_m = text_feat_m @ image_feat_m_all / model.temp
        sim_i2t_targets = ALPHA * F.softmax(sim_i2t_m, dim=1) + (1 - ALPHA) * sim_targets
        sim_t2i_targets = ALPHA * F.softmax(sim_t2i_m, dim=1) + (1 - ALPHA) * sim_targets
    sim_i2t = image_feat @ text_feat_m_all / model.temp  # 155-169
    sim_t2i = text_feat @ image_feat_m_all / model.temp
    sim_t2f = torch.einsum("bc,btc->bt", text_feat, frame_feat)
    loss_i2t = -torch.sum(F.log_softmax(sim_i2t, dim=1) * sim_i2t_targets, dim=1).mean()
    loss_t2i = -torch.sum(F.log_softmax(sim_t2i, dim=1) * sim_t2i_targets, dim=1).mean()
    loss_ita = (loss_i2t + loss_t2i) / 2
    idxs = idx
    model._dequeue_and_enqueue(image_feat_m, text_feat_m, idxs)

    image_embeds = image_embeds.reshape(b, -1, image_embeds.shape[-1])  # 176-190
    image_atts = torch.ones(image_embeds.size()[:-1], dtype=torch.long)
    encoder_input_ids = ids.clone()
    encoder_input_ids[:, 0] = TOK["enc"]
    with key_scale(model, sim_t2f if frame_aware else None):
        output_pos = model.text_encoder(encoder_input_ids, attention_mask=mask,
                                        encoder_hidden_states=image_embeds,
                                        encoder_attention_mask=image_atts, return_dict=True)
    with torch.no_grad():  # 200-212
        neg_mask = torch.eq(idx, idxs.t())
        sim_i2t = image_feat @ text_feat.t() / model.temp
        sim_t2i = text_feat @ image_feat.t() / model.temp
        weights_i2t = F.softmax(sim_i2t, dim=1)
        weights_i2t.masked_fill_(neg_mask, 0)
        weights_t2i = F.softmax(sim_t2i, dim=1)
        weights_t2i.masked_fill_(neg_mask, 0)
    image_embeds_neg, frame_feats_neg = [], []  # 215-250
    for i in range(b):
        neg_idx = torch.multinomial(weights_t2i[i], 1).item()
        chosen.append(neg_idx)
        image_embeds_neg.append(image_embeds[neg_idx])
        frame_feats_neg.append(frame_feat[neg_idx])
    image_embeds_neg = torch.stack(image_embeds_neg, dim=0)
    frame_feats_neg = torch.stack(frame_feats_neg, dim=0)
    text_ids_neg, text_atts_neg, text_feats_neg = [], [], []
    for i in range(b):
        neg_idx = torch.multinomial(weights_i2t[i], 1).item()
        chosen.append(neg_idx)
        text_ids_neg.append(encoder_input_ids[neg_idx])
        text_atts_neg.append(mask[neg_idx])
        text_feats_neg.append(text_feat[neg_idx])
    text_feats_neg = torch.stack(text_feats_neg, dim=0)  # 270-292
    text_ids_all = torch.cat([encoder_input_ids, torch.stack(text_ids_neg, dim=0)], dim=0)
    text_atts_all = torch.cat([mask, torch.stack(text_atts_neg, dim=0)], dim=0)
    image_embeds_all = torch.cat([image_embeds_neg, image_embeds], dim=0)
    image_atts_all = torch.cat([image_atts, image_atts], dim=0)
    frame_feats_all = torch.cat([frame_feats_neg, frame_feat], dim=0)
    text_feats_all = torch.cat([text_feat, text_feats_neg], dim=0)
    weight = torch.einsum("bc,btc->bt", text_feats_all, frame_feats_all)
    with key_scale(model, weight if frame_aware else None):
        output_neg = model.text_encoder(text_ids_all, attention_mask=text_atts_all,
                                        encoder_hidden_states=image_embeds_all,
                                        encoder_attention_mask=image_atts_all, return_dict=True)
    vl_embeddings = torch.cat([output_pos.last_hidden_state[:, 0, :],  # 294-300
                               output_neg.last_hidden_state[:, 0, :]], dim=0)
    vl_output = model.itm_head(vl_embeddings)
    itm_labels = torch.cat([torch.ones(b, dtype=torch.long), torch.zeros(2 * b, dtype=torch.long)])
    loss_itm = F.cross_entropy(vl_output, itm_labels)
    return loss_ita, loss_itm


def scale_of(weight, n):
    """The factor CP/med.py multiplies each key by, as (P, T n): 1 on each frame's [CLS]."""
    with torch.no_grad():
        s = torch.nn.Softmax(dim=-1)(weight / 4.0) * weight.size(1)
        return torch.cat([torch.ones_like(s)[..., None], s[..., None].expand(-1, -1, n - 1)],
                         dim=-1).reshape(weight.size(0), -1)


def frame_aware_fixture(model, frames, ids, mask, w):
    torch.manual_seed(4)
    with torch.no_grad():
        embeds = model.visual_encoder(frames.view(-1, 3, S, S))
        n, d = embeds.shape[-2:]
        frame_feat = F.normalize(model.vision_proj(embeds[:, 0, :]), dim=-1).view(B, T, -1)
        text = model.text_encoder(ids[:B], attention_mask=mask[:B], return_dict=True, mode="text")
        text_feat = F.normalize(model.text_proj(text.last_hidden_state[:, 0, :]), dim=-1)
        w.put("frame_aware", "frame_feat", frame_feat)
        w.put("frame_aware", "feat_scale",
              scale_of(torch.einsum("bc,btc->bt", text_feat, frame_feat), n))
        weight = torch.randn(B, T) * 8
        w.put("frame_aware", "weight", weight)
        w.put("frame_aware", "key_scale", scale_of(weight, n))
        enc_ids = ids[:B].clone()
        enc_ids[:, 0] = TOK["enc"]
        states = embeds.view(B, -1, d)
        with key_scale(model, weight):
            out = model.text_encoder(enc_ids, attention_mask=mask[:B], encoder_hidden_states=states,
                                     encoder_attention_mask=torch.ones(states.shape[:-1],
                                                                       dtype=torch.long),
                                     return_dict=True)
        w.put("frame_aware", "hidden", out.last_hidden_state)


def train_fixture(mods, cfg_path, w):
    _, retrieval, _ = mods
    torch.manual_seed(5)
    rng = np.random.default_rng(5)
    model = retrieval.BLIP_Retrieval(med_config=cfg_path, image_size=S, embed_dim=16,
                                     queue_size=12, momentum=0.995)
    hash_params(model)
    model.copy_params()
    with torch.no_grad():
        model.temp.fill_(0.07)
    model.eval()
    frames = torch.randn(B_TRAIN, T_TRAIN, 3, S, S)
    ids, mask = text_ids(rng, [8, 5, 7], 8)
    idx = torch.tensor([5, 7, 5])
    for name, t in [("frames", frames), ("ids", ids), ("mask", mask), ("idx", idx)]:
        w.put("train/inputs", name, t)
    for name in ["image_queue", "text_queue", "idx_queue", "ptr_queue"]:
        w.put("train/inputs", name, model.state_dict()[name])
    key = "text_encoder.encoder.layer.0.crossattention.self.key"
    for group, frame_aware in [("train_plain", False), ("train_frame_aware", True)]:
        m = copy.deepcopy(model)
        x = frames.clone().requires_grad_(True)
        chosen = []
        loss_ita, loss_itm = aurora_step(m, x, ids, mask, idx, frame_aware, chosen)
        (loss_ita + loss_itm).backward()
        w.put(group, "neg_video_for_text", torch.tensor(chosen[:B_TRAIN]))
        w.put(group, "neg_text_for_video", torch.tensor(chosen[B_TRAIN:]))
        w.put(group, "loss_ita", loss_ita)
        w.put(group, "loss_itm", loss_itm)
        if frame_aware:
            w.put(group, "grad_frames", x.grad)
        params = dict(m.named_parameters())
        w.put(group, "grad_key_weight", params[key + ".weight"].grad)
        w.put(group, "grad_key_bias", params[key + ".bias"].grad)
        for name in ["image_queue", "text_queue", "idx_queue", "ptr_queue"]:
            w.put(group, name, m.state_dict()[name])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blip-repo", required=True)
    p.add_argument("--out", default="tests/data/video")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    repo = os.path.abspath(args.blip_repo)
    mods = import_blip(repo)
    ev = import_video_eval(repo)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = med_config(os.path.join(tmp, "med_tiny.json"))
        video_fixture(mods, ev, cfg, os.path.join(args.out, "tiny_video.h5"))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
