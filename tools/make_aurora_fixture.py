#!/usr/bin/env python3
"""Writes the released-Aurora checkpoint fixtures of tests/petl/test_aurora_release.c into
tests/data/aurora/.

Run by hand, never by CI or the tests (they only read what this writes):

    /usr/bin/python3 tools/make_aurora_fixture.py

Needs torch (Debian's python3-torch, 1.13) and nothing else.

What it writes: a tiny BLIP retrieval model as WillDreamer/Aurora's CP/blip_retrieval.py builds
it at commit 1b189ae, saved the way its train_retrieval.py saves a training checkpoint
(torch.save of {'model': state_dict, 'optimizer', 'config', 'epoch'}). The modules below mirror
CP/vit.py and CP/med.py, so the state dict holds Aurora's tensors under the released names, in
torch's state-dict order (a module's own tensors before its sub-modules'), beside BLIP's:
CP_U.weight, CP_V.weight, CP_C; per ViT block attn.CP_attention (R, 4) and mlp.mlp_CP (R, 8);
per BERT attention self.q_CP, k_CP, v_CP (R, 1); per BERT layer GQT's CP_scaleself,
CP_shiftself, CP_scalecross, CP_shiftcross (d); and the momentum encoders' copies of all of
them (text_encoder_m's GQT vectors included, which the released code creates and never reads).
Sizes: width d = 8 (the released GQT vectors are 768 = BLIP-base's d), 2 ViT blocks (patch 4,
image 8), 2 BERT layers (vocab 100, 16 positions), MLP and intermediate 4d, rank R = 4, embed 8,
queue 16. Every tensor is random (GQT and CP_V too, unlike the released init) so that a test can
tell each one apart, and each momentum copy is 0.9 x its twin, as an EMA leaves it, so that a
test can tell them apart from the main ones.
Files:
- retrieval.pth: the training checkpoint, with an AdamW state after one step;
- missing.pth: the model's state dict alone, without text_encoder.encoder.layer.1
  .crossattention.self.v_CP;
- shape.pth: the model's state dict alone, visual_encoder.blocks.1.attn.CP_attention (R, 3);
- vqa.pth: CP/blip_vqa.py's model the same way ({'model', 'config', 'epoch'}): no momentum
  encoders, and the answer decoder (text_decoder.bert.*, its output weight and bias tied to the
  word embeddings and cls.predictions.bias) with its own CP coefficients and GQT vectors.
- vocab.txt: 98 tokens with BERT's specials, so that the 100-token embeddings hold [DEC] and
  [ENC] after them, as BLIP's do.
"""
import collections
import os

import torch
from torch import nn

D, BLOCKS, LAYERS, VOCAB, POSITIONS, R, EMBED, QUEUE = 8, 2, 2, 100, 16, 4, 8, 16
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "aurora")


def xavier(*shape):
    p = nn.Parameter(torch.zeros(*shape))
    nn.init.xavier_uniform_(p)
    return p


class Attention(nn.Module):  # CP/vit.py
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)
        self.CP_attention = xavier(R, 4)


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(D, 4 * D)
        self.fc2 = nn.Linear(4 * D, D)
        self.mlp_CP = xavier(R, 8)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(D)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(D)
        self.mlp = Mlp()


class PatchEmbed(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(3, D, 4, 4)


class VisionTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch_embed = PatchEmbed()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, D))
        self.blocks = nn.ModuleList(Block() for _ in range(BLOCKS))
        self.norm = nn.LayerNorm(D)


class SelfAttention(nn.Module):  # CP/med.py BertSelfAttention
    def __init__(self):
        super().__init__()
        self.query = nn.Linear(D, D)
        self.q_CP = xavier(R, 1)
        self.key = nn.Linear(D, D)
        self.value = nn.Linear(D, D)
        self.k_CP = xavier(R, 1)
        self.v_CP = xavier(R, 1)


class Output(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.dense = nn.Linear(width, D)
        self.LayerNorm = nn.LayerNorm(D, eps=1e-12)


class BertAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.self = SelfAttention()
        self.output = Output(D)


class Intermediate(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(D, 4 * D)


class BertLayer(nn.Module):  # CP/med.py
    def __init__(self):
        super().__init__()
        self.attention = BertAttention()
        self.crossattention = BertAttention()
        self.intermediate = Intermediate()
        self.output = Output(4 * D)
        self.CP_scaleself = nn.Parameter(torch.zeros(D))
        self.CP_shiftself = nn.Parameter(torch.zeros(D))
        self.CP_scalecross = nn.Parameter(torch.zeros(D))
        self.CP_shiftcross = nn.Parameter(torch.zeros(D))


class Embeddings(nn.Module):
    def __init__(self):
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB, D)
        self.position_embeddings = nn.Embedding(POSITIONS, D)
        self.LayerNorm = nn.LayerNorm(D, eps=1e-12)
        self.register_buffer("position_ids", torch.arange(POSITIONS).expand((1, -1)))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer() for _ in range(LAYERS))


class BertModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = Embeddings()
        self.encoder = Encoder()


class Transform(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(D, D)
        self.LayerNorm = nn.LayerNorm(D, eps=1e-12)


class Predictions(nn.Module):  # BertLMPredictionHead: decoder.bias is the bias itself
    def __init__(self):
        super().__init__()
        self.transform = Transform()
        self.decoder = nn.Linear(D, VOCAB, bias=False)
        self.bias = nn.Parameter(torch.zeros(VOCAB))
        self.decoder.bias = self.bias


class Heads(nn.Module):
    def __init__(self):
        super().__init__()
        self.predictions = Predictions()


class LMHeadModel(nn.Module):  # CP/med.py BertLMHeadModel: GQT and CP in every layer too
    def __init__(self):
        super().__init__()
        self.bert = BertModel()
        self.cls = Heads()
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight


class BlipVQA(nn.Module):  # CP/blip_vqa.py: no momentum encoders
    def __init__(self):
        super().__init__()
        self.visual_encoder = VisionTransformer()
        self.text_encoder = BertModel()
        self.text_decoder = LMHeadModel()
        self.CP_U = nn.Linear(D, R, bias=False)
        self.CP_V = nn.Linear(R, D, bias=False)
        self.CP_C = xavier(R, R, R)


class BlipRetrieval(nn.Module):  # CP/blip_retrieval.py, module order as there
    def __init__(self):
        super().__init__()
        self.visual_encoder = VisionTransformer()
        self.text_encoder = BertModel()
        self.vision_proj = nn.Linear(D, EMBED)
        self.text_proj = nn.Linear(D, EMBED)
        self.itm_head = nn.Linear(D, 2)
        self.visual_encoder_m = VisionTransformer()
        self.vision_proj_m = nn.Linear(D, EMBED)
        self.text_encoder_m = BertModel()
        self.text_proj_m = nn.Linear(D, EMBED)
        self.model_pairs = [[self.visual_encoder, self.visual_encoder_m],
                            [self.vision_proj, self.vision_proj_m],
                            [self.text_encoder, self.text_encoder_m],
                            [self.text_proj, self.text_proj_m]]
        normalize = nn.functional.normalize
        self.register_buffer("image_queue", normalize(torch.randn(EMBED, QUEUE), dim=0))
        self.register_buffer("text_queue", normalize(torch.randn(EMBED, QUEUE), dim=0))
        self.register_buffer("idx_queue", torch.full((1, QUEUE), -100))
        self.register_buffer("ptr_queue", torch.zeros(1, dtype=torch.long))
        self.temp = nn.Parameter(0.07 * torch.ones([]))
        self.CP_U = nn.Linear(D, R, bias=False)
        self.CP_V = nn.Linear(R, D, bias=False)
        self.CP_C = xavier(R, R, R)


def build(kind):
    torch.manual_seed(13)
    model = kind()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
        # An EMA of the main encoders leaves the copies near them: 0.9 x tells them apart.
        for main, momentum in getattr(model, "model_pairs", []):
            for p, p_m in zip(main.parameters(), momentum.parameters()):
                p_m.copy_(0.9 * p)
        if hasattr(model, "temp"):
            model.temp.fill_(0.07)
    return model


def trainable(model):  # train_retrieval.py's selection, 'test_proj' typo included
    picked = []
    for n, p in model.named_parameters():
        keep = any(k in n and "_m" not in n for k in ("CP", "vision_proj", "test_proj", "itm_head"))
        p.requires_grad = keep
        if keep:
            picked.append(p)
    return picked


def main():
    os.makedirs(OUT, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "picture", "of", "dog", "cat"]
    tokens += [f"w{i}" for i in range(len(tokens), VOCAB - 2)]
    with open(os.path.join(OUT, "vocab.txt"), "w") as f:
        f.write("".join(t + "\n" for t in tokens))
    model = build(BlipRetrieval)
    optimizer = torch.optim.AdamW(trainable(model), lr=1e-4, weight_decay=0.05)
    loss = sum((p * p).sum() for group in optimizer.param_groups for p in group["params"])
    loss.backward()
    optimizer.step()  # the state now holds exp_avg / exp_avg_sq tensors, as a saved one does
    config = {"image_root": "datapath_to_flickr30k/flickr30k/images", "dataset": "flickr",
              "vit": "base", "batch_size_train": 16, "init_lr": 1e-4, "image_size": 8,
              "queue_size": QUEUE, "alpha": 0.4, "beta": 0, "k_test": 128,
              "negative_all_rank": False, "weight_decay": 0.05, "min_lr": 0, "max_epoch": 4,
              "R": R, "modality": "image", "frame_aware_attention": False}
    state = model.state_dict()
    torch.save({"model": state, "optimizer": optimizer.state_dict(), "config": config,
                "epoch": 3}, os.path.join(OUT, "retrieval.pth"))

    bare = collections.OrderedDict((k, v) for k, v in state.items()
                                   if not k.startswith(("visual_encoder_m.", "text_encoder_m.")))
    missing = collections.OrderedDict(bare)
    del missing["text_encoder.encoder.layer.1.crossattention.self.v_CP"]
    torch.save(missing, os.path.join(OUT, "missing.pth"))
    shape = collections.OrderedDict(bare)
    shape["visual_encoder.blocks.1.attn.CP_attention"] = torch.randn(R, 3)
    torch.save(shape, os.path.join(OUT, "shape.pth"))

    vqa = build(BlipVQA)
    torch.save({"model": vqa.state_dict(), "config": config, "epoch": 3},
               os.path.join(OUT, "vqa.pth"))


if __name__ == "__main__":
    main()
