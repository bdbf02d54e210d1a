#!/usr/bin/env python3
"""Reference fixture for petal's video retrieval features (models/blip/video.h), computed by the
Salesforce BLIP code itself: eval_retrieval_video.py's evaluation() on a fixed array of frames.

Run by hand (never by CI), from the repository root, in the environment of
tools/make_blip_fixtures.py (torch 1.13 and torchvision from Debian, transformers 4.15,
timm 0.4.12; see its docstring):

    git clone https://github.com/salesforce/BLIP /tmp/blip && git -C /tmp/blip checkout 056a169
    tools/.venv415/bin/python tools/make_video_fixtures.py --blip-repo /tmp/blip \
        --out tests/data/video

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
"""
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
    w.close()


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
