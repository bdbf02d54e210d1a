#!/usr/bin/env python3
"""Reference fixtures for petal's BLIP models, computed by the Salesforce BLIP code itself.

Run by hand (never by CI), from the repository root:

    git clone https://github.com/salesforce/BLIP /tmp/blip && git -C /tmp/blip checkout 056a169
    python3 -m venv --system-site-packages tools/.venv415
    tools/.venv415/bin/pip install --no-deps transformers==4.15.0 timm==0.4.12 \
        huggingface_hub==0.2.1 sacremoses filelock regex tqdm packaging pyyaml requests
    tools/.venv415/bin/python tools/make_blip_fixtures.py --blip-repo /tmp/blip --out tests/data/blip

(torch 1.13 and torchvision from Debian; transformers 4.15 is BLIP's pinned version, whose beam
search normalises scores by the whole sequence length, prompt included.)

Each fixture is an HDF5 file: /weights/<checkpoint name> (every parameter and buffer, f32),
/inputs/*, /outputs/* (every stage), /grads/* (gradients of the losses) and /meta attributes.
Models are tiny (widths 32, 2 layers, a 128-token vocabulary with [DEC] = 126 and [ENC] = 127)
and run in eval mode, so dropout is off; torch.multinomial's negative choices are recorded so the
C test can replay them.
"""
import argparse
import os
import sys
import tempfile

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

REPO = None
CAPTION_EOS_BIAS = 0.3  # chosen so one caption ends early and the other runs to max_length


from blip_reference import TOK, Encoding, Writer, import_blip, med_config, text_ids  # noqa: E402


def capture_blocks(vit):
    outs = []
    hooks = [blk.register_forward_hook(lambda m, i, o: outs.append(o)) for blk in vit.blocks]
    return outs, hooks


def retrieval_fixture(mods, cfg_path, out):
    _, retrieval, _ = mods
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = retrieval.BLIP_Retrieval(med_config=cfg_path, image_size=32, embed_dim=16,
                                     queue_size=12, momentum=0.995)
    with torch.no_grad():  # make the momentum copies differ so the update is exercised
        for p in list(model.visual_encoder_m.parameters()) + list(model.text_encoder_m.parameters()):
            p.add_(0.01 * torch.randn_like(p))
    model.eval()
    w = Writer(out)
    w.weights(model)
    image = torch.randn(3, 3, 32, 32, requires_grad=True)
    ids, mask = text_ids(rng, [8, 5, 7], 8)
    idx = torch.tensor([5, 7, 5])
    for name, t in [("image", image), ("ids", ids), ("mask", mask), ("idx", idx)]:
        w.put("inputs", name, t)

    with torch.no_grad():  # stage outputs
        vit = model.visual_encoder
        w.put("outputs", "patch_embed", vit.patch_embed(image))
        outs, hooks = capture_blocks(vit)
        embeds = vit(image)
        for h in hooks:
            h.remove()
        for i, o in enumerate(outs):
            w.put("outputs", f"vit_block{i}", o)
        w.put("outputs", "image_embeds", embeds)
        text = model.text_encoder(ids, attention_mask=mask, return_dict=True, mode="text")
        w.put("outputs", "text_mode", text.last_hidden_state)
        enc_ids = ids.clone()
        enc_ids[:, 0] = TOK["enc"]
        mm = model.text_encoder(enc_ids, attention_mask=mask, encoder_hidden_states=embeds,
                                return_dict=True)
        w.put("outputs", "multimodal", mm.last_hidden_state)
        w.put("outputs", "itm_logits", model.itm_head(mm.last_hidden_state[:, 0, :]))
        image_feat = torch.nn.functional.normalize(model.vision_proj(embeds[:, 0, :]), dim=-1)
        text_feat = torch.nn.functional.normalize(model.text_proj(text.last_hidden_state[:, 0, :]),
                                                  dim=-1)
        w.put("outputs", "image_feat", image_feat)
        w.put("outputs", "text_feat", text_feat)
        w.put("outputs", "itc_sim", image_feat @ text_feat.t())

    # The training step: losses, recorded negatives, gradients, updated momentum and queues.
    chosen = []
    real_multinomial = torch.multinomial

    def recording_multinomial(weights, n):
        r = real_multinomial(weights, n)
        chosen.append(int(r.item()))
        return r

    torch.multinomial = recording_multinomial
    model.tokenizer.queue.append((ids, mask))
    loss_ita, loss_itm = model(image, ["unused"] * 3, alpha=0.4, idx=idx)
    torch.multinomial = real_multinomial
    (loss_ita + loss_itm).backward()
    w.put("outputs", "loss_ita", loss_ita)
    w.put("outputs", "loss_itm", loss_itm)
    # multinomial ran once per text (a negative image) then once per image (a negative text).
    w.put("inputs", "neg_image_for_text", torch.tensor(chosen[:3]))
    w.put("inputs", "neg_text_for_image", torch.tensor(chosen[3:]))
    w.put("grads", "image", image.grad)
    for name in ["itm_head.weight", "vision_proj.weight", "text_proj.weight", "temp",
                 "visual_encoder.blocks.0.attn.qkv.weight", "visual_encoder.pos_embed",
                 "text_encoder.encoder.layer.1.crossattention.self.query.weight",
                 "text_encoder.encoder.layer.0.attention.self.value.bias",
                 "text_encoder.embeddings.word_embeddings.weight"]:
        w.put("grads", name, dict(model.named_parameters())[name].grad)
    for name in ["image_queue", "text_queue", "idx_queue", "ptr_queue",
                 "visual_encoder_m.blocks.1.mlp.fc2.weight", "text_proj_m.weight"]:
        w.put("after_step", name, model.state_dict()[name])
    w.close()


def capture_generate(decoder):
    """Wraps decoder.generate to keep the token sequences BLIP would decode."""
    seen = []
    real = decoder.generate

    def wrapped(*a, **k):
        out = real(*a, **k)
        seen.append(out)
        return out

    decoder.generate = wrapped
    return seen


def sharpen(decoder, scale, eos_bias):
    """Random tiny decoders give near-uniform next-token distributions that ignore the image;
    larger word embeddings (tied to the output layer) and cross-attention make beam search's
    choices clear-cut and image-dependent, and an EOS bias makes hypotheses finish early, so the
    fixtures exercise every branch of the search."""
    with torch.no_grad():
        decoder.bert.embeddings.word_embeddings.weight.mul_(scale)
        for layer in decoder.bert.encoder.layer:
            layer.crossattention.self.value.weight.mul_(8.0)
            layer.crossattention.output.dense.weight.mul_(8.0)
        decoder.cls.predictions.bias[TOK["sep"]] += eos_bias


def caption_fixture(mods, cfg_path, out):
    blip, _, _ = mods
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    model = blip.BLIP_Decoder(med_config=cfg_path, image_size=32, prompt="a picture of ")
    sharpen(model.text_decoder, 6.0, CAPTION_EOS_BIAS)
    model.eval()
    w = Writer(out)
    w.weights(model)
    image = torch.randn(2, 3, 32, 32, requires_grad=True)
    ids, mask = text_ids(rng, [9, 7], 9)
    ids[:, 1:4] = torch.tensor([10, 11, 12])  # the prompt "a picture of"
    for name, t in [("image", image), ("ids", ids), ("mask", mask)]:
        w.put("inputs", name, t)
    w.f["meta"] = np.array([model.prompt_length])  # tokens not predicted: [DEC] a picture of
    model.tokenizer.queue.append((ids, mask))
    loss = model(image, ["unused"] * 2)
    loss.backward()
    w.put("outputs", "loss", loss)
    w.put("grads", "image", image.grad)
    params = dict(model.named_parameters())
    for name in ["text_decoder.cls.predictions.bias",
                 "text_decoder.cls.predictions.transform.dense.weight",
                 "text_decoder.bert.encoder.layer.1.crossattention.self.key.weight",
                 "text_decoder.bert.embeddings.word_embeddings.weight",
                 "visual_encoder.blocks.1.mlp.fc1.weight"]:
        w.put("grads", name, params[name].grad)
    with torch.no_grad():
        seen = capture_generate(model.text_decoder)
        model.generate(image, sample=False, num_beams=3, max_length=12, min_length=6)
        model.generate(image, sample=False, num_beams=3, max_length=12, min_length=6,
                       repetition_penalty=1.5)
        embeds = model.visual_encoder(image)
        prompt = torch.tensor([[TOK["dec"], 10, 11, 12]] * 2)
        model.text_decoder.generate(input_ids=prompt, max_length=12, min_length=6, num_beams=1,
                                    eos_token_id=TOK["sep"], pad_token_id=TOK["pad"],
                                    encoder_hidden_states=embeds,
                                    encoder_attention_mask=torch.ones(embeds.shape[:-1],
                                                                      dtype=torch.long))
    for name, seq in zip(["beam3", "beam3_penalty", "greedy"], seen):
        w.put("outputs", name, seq)
    w.close()


def vqa_fixture(mods, cfg_path, out):
    _, _, vqa = mods
    torch.manual_seed(2)
    rng = np.random.default_rng(2)
    model = vqa.BLIP_VQA(med_config=cfg_path, image_size=32)
    sharpen(model.text_decoder, 6.0, 1.5)
    model.eval()
    w = Writer(out)
    w.weights(model)
    image = torch.randn(2, 3, 32, 32, requires_grad=True)
    q_ids, q_mask = text_ids(rng, [6, 4], 6)
    a_ids, a_mask = text_ids(rng, [3, 4, 3], 4)  # 2 answers for question 0, 1 for question 1
    n = [2, 1]
    weights = torch.tensor([0.7, 0.3, 1.0])
    for name, t in [("image", image), ("q_ids", q_ids), ("q_mask", q_mask), ("a_ids", a_ids),
                    ("a_mask", a_mask), ("n", torch.tensor(n)), ("weights", weights)]:
        w.put("inputs", name, t)
    model.tokenizer.queue += [(q_ids, q_mask), (a_ids, a_mask)]
    loss = model(image, ["q"] * 2, ["a"] * 3, n=n, weights=weights, train=True)
    loss.backward()
    w.put("outputs", "loss", loss)
    w.put("grads", "image", image.grad)
    params = dict(model.named_parameters())
    for name in ["text_decoder.cls.predictions.transform.LayerNorm.weight",
                 "text_encoder.encoder.layer.0.crossattention.self.value.weight",
                 "text_decoder.bert.encoder.layer.0.crossattention.self.query.weight"]:
        w.put("grads", name, params[name].grad)
    with torch.no_grad():
        cand_ids, cand_mask = text_ids(rng, [3, 4, 3, 5, 4, 3], 5)
        cand_ids[:, 0] = TOK["dec"]
        w.put("inputs", "cand_ids", cand_ids)
        w.put("inputs", "cand_mask", cand_mask)
        model.tokenizer.queue.append((q_ids, q_mask))
        chosen = model(image, ["q"] * 2, Encoding(input_ids=cand_ids, attention_mask=cand_mask),
                       train=False, inference="rank", k_test=3)
        w.put("outputs", "rank", chosen)
        seen = capture_generate(model.text_decoder)
        model.tokenizer.queue.append((q_ids, q_mask))
        model(image, ["q"] * 2, train=False, inference="generate")
        w.put("outputs", "generate", seen[0])
        q_ids_enc = q_ids.clone()
        q_ids_enc[:, 0] = TOK["enc"]
        states = model.text_encoder(q_ids_enc, attention_mask=q_mask,
                                    encoder_hidden_states=model.visual_encoder(image),
                                    return_dict=True).last_hidden_state
        w.put("outputs", "question_states", states)
    w.close()


# ---- full-size layers with weights both sides compute from a hash (nothing large to commit) ----

def fnv1a(text):
    h = 2166136261
    for b in text.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def hashed(name, shape, scale, offset=0.0):
    """Element i: ((fnv1a(name) + i * 2654435761) mod 2^32) >> 8, as 24-bit uniform in [-0.5, 0.5),
    times scale plus offset, rounded to f32 (tests/hashed.c computes the same)."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.uint64)
    v = ((np.uint64(fnv1a(name)) + i * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)) >> np.uint64(8)
    x = (v.astype(np.float64) / 2.0 ** 24 - 0.5) * scale + offset
    return torch.from_numpy(x.astype(np.float32)).reshape(shape)


def hash_params(module):
    """LayerNorm weights near 1, biases small, matrices of std ~ 0.023 (like 0.02 inits)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            norm = p.dim() == 1 and ("norm" in name.lower())
            if norm and name.endswith("weight"):
                p.copy_(hashed(name, p.shape, 0.2, 1.0))
            elif p.dim() == 1:
                p.copy_(hashed(name, p.shape, 0.04))
            else:
                p.copy_(hashed(name, p.shape, 0.08))


def extended(mask):
    return (1.0 - mask[:, None, None, :].float()) * -10000.0


def full_layers_fixture(out):
    from functools import partial
    from models.vit import Block
    from models.med import BertConfig, BertLayer
    w = Writer(out)
    # ViT-B block on 197 tokens (224 px)
    blk = Block(dim=768, num_heads=12, mlp_ratio=4.0, qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
    hash_params(blk)
    blk.eval()
    x = hashed("vit.x", (1, 197, 768), 2.0).requires_grad_(True)
    y = blk(x)
    y.backward(hashed("vit.seed", y.shape, 1.0))
    w.put("outputs", "vit_block", y)
    w.put("grads", "vit_x", x.grad)
    # MED layers: text mode, multimodal (cross-attention to 197 image tokens), causal decoder
    cfg = BertConfig.from_json_file(os.path.join(REPO, "configs", "med_config.json"))
    cfg.encoder_width = 768
    image = hashed("bert.image", (2, 197, 768), 2.0)
    mask = torch.zeros(2, 35)
    mask[0, :35] = 1
    mask[1, :20] = 1
    for kind in ["text", "multimodal", "decoder"]:
        layer = BertLayer(cfg, 0)
        hash_params(layer)
        layer.eval()
        h = hashed("bert.h", (2, 35, 768), 2.0).requires_grad_(True)
        if kind == "decoder":
            causal = torch.tril(torch.ones(35, 35))[None, None] * mask[:, None, None, :]
            self_mask = (1.0 - causal) * -10000.0
        else:
            self_mask = extended(mask)
        mode = "text" if kind == "text" else "multimodal"
        y = layer(h, self_mask, None, image if mode == "multimodal" else None,
                  extended(torch.ones(2, 197)), mode=mode)[0]
        y.backward(hashed("bert.seed", y.shape, 1.0))
        w.put("outputs", f"bert_{kind}", y)
        w.put("grads", f"bert_{kind}_h", h.grad)
    w.close()


def base_counts(mods, out):
    """Parameter counts of the BLIP-base task models (Salesforce code, real med_config.json),
    momentum copies, queues and position_ids left out: the C test builds petal's and compares."""
    blip, retrieval, vqa = mods
    from models.vit import VisionTransformer

    def base_vit(vit, image_size, use_grad_checkpointing=False, ckpt_layer=0, drop_path_rate=0):
        return VisionTransformer(img_size=image_size, patch_size=16, embed_dim=768, depth=12,
                                 num_heads=12, drop_path_rate=drop_path_rate), 768

    for mod in mods:
        mod.create_vit = base_vit
    cfg = os.path.join(REPO, "configs", "med_config.json")
    models = {"retrieval": lambda: retrieval.BLIP_Retrieval(med_config=cfg, image_size=384,
                                                             queue_size=16),
              "caption": lambda: blip.BLIP_Decoder(med_config=cfg, image_size=384),
              "vqa": lambda: vqa.BLIP_VQA(med_config=cfg, image_size=480)}
    with h5py.File(out, "a") as f:
        for task, make in models.items():
            model = make()
            seen, n = set(), 0  # tied tensors (the LM head's decoder) counted once
            for k, v in model.state_dict().items():
                if "_m." in k or "queue" in k or "position_ids" in k or v.data_ptr() in seen:
                    continue
                seen.add(v.data_ptr())
                n += v.numel()
            f.attrs[f"params_{task}"] = n
            print(task, n)
            del model


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blip-repo", required=True)
    p.add_argument("--out", default="tests/data/blip")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    global REPO
    REPO = os.path.abspath(args.blip_repo)
    mods = import_blip(REPO)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = med_config(os.path.join(tmp, "med_tiny.json"))
        retrieval_fixture(mods, cfg, os.path.join(args.out, "tiny_retrieval.h5"))
        caption_fixture(mods, cfg, os.path.join(args.out, "tiny_caption.h5"))
        vqa_fixture(mods, cfg, os.path.join(args.out, "tiny_vqa.h5"))
    full_layers_fixture(os.path.join(args.out, "base_layers.h5"))
    base_counts(mods, os.path.join(args.out, "base_layers.h5"))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
