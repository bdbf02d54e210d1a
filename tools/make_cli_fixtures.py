#!/usr/bin/env python3
"""Fixtures for `petal itm`, `petal caption` and `petal vqa` (tests/tools/test_cli.c), computed
by the Salesforce BLIP code itself on tiny random models.

Run by hand (never by CI), from the repository root, with the transformers 4.15 venv that
tools/make_blip_fixtures.py describes:

    tools/.venv415/bin/python tools/make_cli_fixtures.py --blip-repo /tmp/blip --out tests/data/cli

Writes into --out:
- vocab.txt: a real WordPiece vocabulary of 126 tokens ([PAD] [CLS] [SEP] [UNK] [MASK], then 121
  words, punctuation and ## pieces), so real sentences tokenize; HF's BertTokenizer with BLIP's
  [DEC] (bos) and [ENC] gives those ids 126 and 127, as petal's tiny config has them;
- itm.pth, caption.pth, vqa.pth: the state dicts of BLIP_ITM, BLIP_Decoder and BLIP_VQA at the
  tiny size (widths 32, 2 layers, 2 heads, image 32, patch 16), wrapped as {'model': ...} like
  the released files;
- image.png: a 48 x 40 drawing (sky, sun, house, grass), resized to 32 x 32 by the models;
- answers.txt: the answer list for rank-mode VQA, one per line;
- expected.json: what the Salesforce code answers: softmax(itm logits)[1] and the ITC cosine for
  three texts ([ENC] first for ITM, see FirstToken), three captions (BLIP's defaults: beam 3, max
  20, min 5, prompt 'a picture of '; greedy search with another prompt, and with none), the VQA
  answer in generate and rank mode (k_test = min(128, list size)).

Images go through predict.py's transform (PIL open, RGB, Resize((32, 32), BICUBIC), ToTensor,
Normalize) and texts through the real HF tokenizer. Random tiny models answer near-uniformly and
ignore their inputs, so weights are rescaled (unit_gain, and make_blip_fixtures.py's sharpen)
until the outputs depend on the words and the pixels. The script fails unless plumbing mistakes
change the expected outputs: [CLS] instead of [ENC], no Normalize or bilinear resizing move every
ITM and ITC score by more than 1e-3; a flipped or unnormalised image, or a lost prompt, changes
each caption; a flipped image changes the generated answer, and k_test 3 the ranked one.
"""
import argparse
import json
import os
import sys
import tempfile

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torchvision import transforms
from torchvision.transforms.functional import InterpolationMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blip_reference import import_blip, med_config  # noqa: E402
from make_blip_fixtures import sharpen  # noqa: E402

IMAGE_SIZE = 32
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

WORDS = """
. , ? ' - a an the of in on with and is are what how many there this it to at near next front
behind above below picture photo image color shape side top bottom left right middle background
red green blue yellow black white orange purple pink brown gray square circle box ball sun sky
grass tree house dog cat man woman car road water wall door window table sign flower field
stripe line light dark one two three four five yes no big small large bright sitting standing
shows has made looking painted drawn triangle corner edge object over under colored plain empty
close up view scene ##s ##ed ##ing ##er ##ly ##y ##ish ##es ##est ##ness
""".split()
SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]

ITM_TEXTS = ["a house with a red door under a blue sky",
             "Two DOGS sitting in the grass, next to a tree!",
             "a picture of a zebra"]  # 'dogs' -> dog ##s; '!' and 'zebra' -> [UNK]
QUESTION = "what color is the door?"
ANSWERS = ["red", "blue", "green", "yellow", "white", "two", "yes", "no", "a red door",
           "the sky", "sun", "blue sky"]
PROMPT = "a picture of "
# BLIP's defaults (predict.py), then greedy search with another prompt, and with none (whose
# caption starts with a ## piece).
CAPTION_CASES = [dict(num_beams=3, max_length=20, min_length=5, prompt=PROMPT),
                 dict(num_beams=1, max_length=12, min_length=8, prompt="the photo shows "),
                 dict(num_beams=1, max_length=12, min_length=8, prompt="")]


def write_vocab(path):
    assert len(WORDS) == 121 and len(set(WORDS)) == 121, len(WORDS)
    with open(path, "w") as f:
        f.write("\n".join(SPECIALS + WORDS) + "\n")


def make_tokenizer(vocab):
    """models/blip.py init_tokenizer on the tiny vocabulary."""
    from transformers import BertTokenizer
    tok = BertTokenizer(vocab)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    tok.enc_token_id = tok.additional_special_tokens_ids[0]
    assert (tok.bos_token_id, tok.enc_token_id, len(tok)) == (126, 127, 128)
    return tok


def draw_image(path):
    """Sky gradient, a sun, a house with a red door and a window, grass: 48 x 40."""
    im = Image.new("RGB", (48, 40))
    d = ImageDraw.Draw(im)
    for y in range(40):
        d.line([(0, y), (47, y)], fill=(90 + 3 * y, 150 + 2 * y, 235 - y))
    d.ellipse([33, 3, 43, 13], fill=(250, 215, 40))
    d.rectangle([0, 30, 47, 39], fill=(60, 160, 50))
    d.rectangle([8, 17, 26, 32], fill=(235, 230, 210))
    d.polygon([(6, 18), (17, 8), (28, 18)], fill=(150, 60, 40))
    d.rectangle([15, 24, 19, 32], fill=(200, 30, 30))
    d.rectangle([10, 20, 13, 23], fill=(60, 90, 160))
    im.save(path)


def preprocess(path, interpolation=InterpolationMode.BICUBIC, normalize=True):
    steps = [transforms.Resize((IMAGE_SIZE, IMAGE_SIZE), interpolation=interpolation),
             transforms.ToTensor()]
    if normalize:
        steps.append(transforms.Normalize(MEAN, STD))
    return transforms.Compose(steps)(Image.open(path).convert("RGB")).unsqueeze(0)


def tiny_model(seed, make, tune, path):
    """make() from seed, tuned in place (unit_gain, sharpen), in eval mode (no dropout), saved to
    path as the released files are: {'model': state_dict}."""
    torch.manual_seed(seed)
    model = make()
    tune(model)
    model.eval()
    torch.save({"model": model.state_dict()}, path)
    return model


class FirstToken:
    """blip_itm.py's 'itm' mode keeps [CLS]; the ITM head was trained on [ENC] (blip_retrieval.py,
    BLIP_Base 'multimodal'), and petal puts [ENC] first. This tokenizer does that swap."""

    def __init__(self, tok, first):
        self.tok, self.first = tok, first

    def __getattr__(self, name):
        return getattr(self.tok, name)

    def __call__(self, *a, **k):
        out = self.tok(*a, **k)
        out.input_ids[:, 0] = self.first
        return out


def itm_scores(model, image, text, first):
    tok = model.tokenizer
    model.tokenizer = FirstToken(tok, first)
    itm = F.softmax(model(image, text, match_head="itm"), dim=1)[0, 1].item()
    model.tokenizer = tok
    itc = model(image, text, match_head="itc")[0, 0].item()
    return itm, itc


def unit_gain(module, gain):
    """BERT's init (std 0.02) at width 32 shrinks what every Linear adds to the residual stream
    about tenfold, so a random tiny model's outputs hardly depend on the words or the pixels.
    Weights of std gain / sqrt(fan_in) make every token and every pixel count."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.normal_(m.weight, std=gain / m.in_features ** 0.5)


def itm_fixture(mods, cfg, out, image_path):
    def tune(model):
        for module in (model.text_encoder, model.visual_encoder):
            unit_gain(module, 1.5)
        unit_gain(model.itm_head, 1.0)

    model = tiny_model(3, lambda: mods["itm"].BLIP_ITM(med_config=cfg, image_size=IMAGE_SIZE,
                                                       embed_dim=16),
                       tune, os.path.join(out, "itm.pth"))
    image = preprocess(image_path)
    results = []
    with torch.no_grad():
        for text in ITM_TEXTS:
            itm, itc = itm_scores(model, image, text, model.tokenizer.enc_token_id)
            results.append({"text": text, "itm_score": itm, "itc_score": itc})
            # What petal must not do: keep [CLS], or skip Normalize / bicubic.
            cls_itm, _ = itm_scores(model, image, text, model.tokenizer.cls_token_id)
            raw = itm_scores(model, preprocess(image_path, normalize=False), text,
                             model.tokenizer.enc_token_id)
            bil = itm_scores(model, preprocess(image_path, InterpolationMode.BILINEAR), text,
                             model.tokenizer.enc_token_id)
            for what, got in [("[CLS] first", (cls_itm, itc)), ("no Normalize", raw),
                              ("bilinear", bil)]:
                for k, (a, b) in enumerate(zip((itm, itc), got)):
                    name = "itm" if k == 0 else "itc"
                    if what == "[CLS] first" and name == "itc":
                        continue
                    print(f"itm '{text}': {what} moves {name} {a:.4f} -> {b:.4f}")
                    assert abs(a - b) > 1e-3, f"{what} leaves {name} of '{text}' at {a}"
    scores = [r["itm_score"] for r in results]
    assert max(scores) - min(scores) > 0.03 and 0.01 < min(scores) and max(scores) < 0.99, scores
    return results


def caption_fixture(mods, cfg, out, image_path):
    model = tiny_model(8, lambda: mods["blip"].BLIP_Decoder(med_config=cfg, image_size=IMAGE_SIZE,
                                                            prompt=PROMPT),
                       lambda m: sharpen(m.text_decoder, 6.0, 0.7),
                       os.path.join(out, "caption.pth"))
    image = preprocess(image_path)
    cases = []
    with torch.no_grad():
        for case in CAPTION_CASES:
            model.prompt = case["prompt"]
            opts = {k: case[k] for k in ("num_beams", "max_length", "min_length")}
            caption = model.generate(image, sample=False, **opts)[0]
            # An image that is flipped or not normalised, or a lost prompt, reads differently.
            flipped = model.generate(image.flip(3), sample=False, **opts)[0]
            raw = model.generate(preprocess(image_path, normalize=False), sample=False, **opts)[0]
            model.prompt = ""
            no_prompt = model.generate(image, sample=False, **opts)[0]
            print(f"caption {opts}: '{caption}' (flipped '{flipped}', not normalised '{raw}', "
                  f"no prompt '{no_prompt}')")
            assert caption.strip() and len({caption, flipped, raw}) == 3
            assert no_prompt != caption or not case["prompt"]
            cases.append(dict(case, caption=caption))
    assert len({c["caption"] for c in cases}) == len(cases)
    return cases


def rank(model, image, tok, k):
    cand = tok(ANSWERS, padding="longest", return_tensors="pt")  # as train_vqa.py
    cand.input_ids[:, 0] = tok.bos_token_id
    return ANSWERS[int(model(image, QUESTION, cand, train=False, inference="rank",
                             k_test=k)[0])]


def vqa_fixture(mods, cfg, out, image_path, tok):
    def tune(model):
        for module in (model.visual_encoder, model.text_encoder):
            unit_gain(module, 1.0)
        sharpen(model.text_decoder, 2.0, 0.5)

    model = tiny_model(26, lambda: mods["vqa"].BLIP_VQA(med_config=cfg, image_size=IMAGE_SIZE),
                       tune, os.path.join(out, "vqa.pth"))
    with open(os.path.join(out, "answers.txt"), "w") as f:
        f.write("\n".join(ANSWERS) + "\n")
    image = preprocess(image_path)
    k = min(128, len(ANSWERS))
    with torch.no_grad():
        generated = model(image, QUESTION, train=False, inference="generate")[0]
        ranked = rank(model, image, tok, k)
        # A smaller k_test, or a flipped image, picks another answer.
        ranked_k3, ranked_flipped = rank(model, image, tok, 3), rank(model, image.flip(3), tok, k)
        generated_flipped = model(image.flip(3), QUESTION, train=False, inference="generate")[0]
    print(f"vqa: generate '{generated}' (flipped '{generated_flipped}'), rank '{ranked}' "
          f"(k_test 3 '{ranked_k3}', flipped '{ranked_flipped}')")
    assert generated.strip() and generated != generated_flipped
    assert len({ranked, ranked_k3, ranked_flipped}) >= 2 and ranked != ANSWERS[0]
    assert ranked != ranked_k3
    return {"question": QUESTION, "answers": "answers.txt", "k_test": k, "generate": generated,
            "rank": ranked}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blip-repo", required=True)
    p.add_argument("--out", default="tests/data/cli")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    blip, _, vqa = import_blip(os.path.abspath(args.blip_repo))
    import models.blip_itm as itm
    vocab = os.path.join(args.out, "vocab.txt")
    write_vocab(vocab)
    tok = make_tokenizer(vocab)
    for mod in (blip, vqa, itm):
        mod.init_tokenizer = lambda: make_tokenizer(vocab)
    itm.create_vit = blip.create_vit  # the tiny ViT import_blip put there
    mods = {"blip": blip, "vqa": vqa, "itm": itm}
    image_path = os.path.join(args.out, "image.png")
    draw_image(image_path)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = med_config(os.path.join(tmp, "med_tiny.json"))
        expected = {"image": "image.png", "vocab": "vocab.txt",
                    "itm": itm_fixture(mods, cfg, args.out, image_path),
                    "caption": caption_fixture(mods, cfg, args.out, image_path),
                    "vqa": vqa_fixture(mods, cfg, args.out, image_path, tok)}
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    print(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()
