#!/usr/bin/env python3
"""Writes the reference fixtures for petal's caption metrics (train/caption_metrics.h).

Run by hand, never by CI or the tests. pycocoevalcap runs Stanford CoreNLP's PTBTokenizer (a jar
it ships) with Java, so `java` must be on the PATH (/usr/bin/java here):

    python3 -m venv tools/.venv-captions
    tools/.venv-captions/bin/pip install pycocoevalcap==1.2
    tools/.venv-captions/bin/python tools/make_caption_metric_fixtures.py

It writes, under tests/data/caption_metrics/:

  ann.json       a COCO caption ground truth: images with 1 to 5 references of varied text
                 (punctuation, contractions, quotes, numbers, hyphens, parentheses, abbreviations,
                 Unicode, a newline), a few images with no result, one annotation of an image
                 that is not in "images".
  pred.json      a BLIP results file [{"image_id", "caption"}] for most of those images, in
                 another order: captions shorter and longer than the references, repeated words,
                 empty and punctuation-only ones, one identical to its reference.
  expected.json  what BLIP's coco_caption_eval gets from them with pycocoevalcap: the BLEU-1..4,
                 ROUGE-L and CIDEr scores (COCOEvalCap.evaluate without METEOR and SPICE, which
                 need more Java and, for SPICE, a download), and the tokenized text of every
                 caption. "images" lists the scored images in pycocoevalcap's order with their
                 raw and tokenized captions (all references form one tokenizer input, all
                 candidates another, in that order); "tokenizer_cases" are more strings for the
                 tokenizer alone, tokenized as one input in their order.

Nothing is random and nothing is downloaded, so reruns give the same files.
"""
import json
import os

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from pycocotools.coco import COCO

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "caption_metrics")

# (image id, references, candidate or None for an image without a result)
IMAGES = [
    (101, ["A man riding a wave on top of a surfboard.", "A surfer rides a large wave in the ocean.",
           "A man on a surfboard riding a wave.", "Surfer riding a wave on a sunny day!",
           "A person surfing on a big blue wave."], "a man riding a wave on top of a surfboard"),
    (102, ['A sign that says "STOP" on a pole.', "A red stop sign at an intersection.",
           "The stop sign is next to a 'One Way' sign."], 'a stop sign that says "stop"'),
    (103, ["The dog's toy isn't on the couch; it's on the floor.", "A dog's toy we're looking at.",
           "Dogs' toys: a ball, a bone and a rope."], "a dog's toy on the floor"),
    (104, ["Two men, ages 25-30, holding 1,000 balloons.", "Two guys hold about 3.5 dozen balloons.",
           "Men with balloons at 12:30 on 10/12/2010."], "two men holding 1,000 balloons"),
    (105, ["A cat (black and white) sleeping on a bed.", "A black & white cat sleeps [on a bed]."],
     "a black and white cat (sleeping) on a bed"),
    (106, ["A well-known X-ray machine -- very old - in a room.",
           "An old x-ray machine---rusty---stands in the corner."], "an x-ray machine in a room"),
    (107, ["A bowl of fruit on a wooden table.", "Fruit in a bowl."], "..."),
    (108, ["A kitchen with a stove and a sink.", "A small kitchen."], ""),
    (109, ["A dog on the grass.", "A brown dog lying on green grass."],
     "a a a a dog dog dog on on the the the grass grass grass grass"),
    (110, ["A large brown dog running through a grassy field.",
           "A dog runs across the field with a ball in its mouth."], "dog"),
    (111, ["A red fire hydrant on a sidewalk."], "a red fire hydrant on the sidewalk"),
    (112, ["Mr. Smith and Dr. Jones at St. Mary's Church with a U.S. flag.",
           "Two men by a church, e.g. a chapel, etc. The flag is American."],
     "mr. smith and a u.s. flag"),
    (113, ["A kid who cannot wait is gonna eat the cake.", "A child wanna eat a cake, y'all!"],
     "a kid gonna eat cake"),
    (114, ["Wow... what a view!!", "The view -- stunning. . . really?", "A view…"], "what a view"),
    (115, ["A caf\u00e9 with \u201cfancy\u201d chairs \u2014 tr\u00e8s chic.",
           "Chairs at a caf\u00e9 \u2013 outside."], "a cafe with fancy chairs"),
    (116, ["Salt & pepper shakers; 50% off @ the store.", "Salt &amp; pepper on a table."],
     "salt & pepper shakers"),
    (117, ["A [red] {blue} sign.", "A sign with (red and blue) colors."], "a red and blue sign"),
    (118, ["A bus driving down a city street."], "A bus driving down a city street."),
    (119, ["A DOG RUNNING IN THE PARK.", "A Dog Runs In A Park"], "A DOG RUNNING IN THE PARK"),
    (120, ["The players' jerseys are red.", "A man\u2019s hat on the player\u2019s head."],
     "the player's jersey is red"),
    (121, ["A picture of the letter I.", "A sign with the letter A. The sign is white."],
     "a picture of the letter i"),
    (122, ["A $5 bill and a \u00a310 note.", "Money: five dollars and ten pounds."],
     "a 5 dollar bill"),
    (123, ["A sign reading www.example.com and #1.", "A sign for foo@bar.com :) on a wall."],
     "a sign with a website"),
    (124, ["A\tcat\u00a0on a mat.", "A 2 1/2 year old boy eats \u00bd of a pizza."],
     "a cat on a mat"),
    (125, ["A dog\nin the snow.", "A dog playing in the snow."], "a dog in the snow"),
    (126, ["A plate with a sandwich and chips.", "A sandwich and chips on a plate.",
           "Lunch: a sandwich, chips and a pickle.", "A half-eaten sandwich.",
           "A ham sandwich on a white plate."], "a sandwich and chips on a white plate"),
    (127, ["A giraffe standing next to a tree.", "A tall giraffe eating leaves from a tree.",
           "A giraffe in a zoo enclosure."], "a giraffe standing next to a tall tree in a zoo"),
    (128, ["Two zebras grazing in a field.", "Zebras eating grass."], "two zebras standing in a field"),
    (129, ["A train on the tracks.", "A yellow train at the station."], None),
    (130, ["People walking on a beach.", "A crowded beach on a sunny day."], None),
    (131, ["A laptop on a desk.", "A computer and a mouse."], None),
    (132, ["A plane in the sky.", "An airplane flying over clouds."], "a plane flying in the sky"),
]
ORPHAN_ANNOTATION = (999, "An annotation of an image that is not in the list of images.")

TOKENIZER_CASES = [
    "A man's colour grey centre dog.", "Don't go (now) to the \"big\" house", "It's 5 o'clock",
    "They're here, we've gone, I'll stay, she'd go, I'm in, you'd", "can't won't isn't shouldn't",
    "cannot gonna gotta wanna lemme gimme", "'Tis the season; 'twas fun", "the '90s and 1990s",
    "rock'n'roll y'all ma'am o'clock ol' c'mon", "`single` and ``double'' quotes",
    "\u2018curly single\u2019 \u201ccurly double\u201d \u00abguillemets\u00bb",
    "Mr. Mrs. Ms. Dr. Prof. St. Jr. Sr. Gen. Sen.", "U.S. U.K. U.N. a.m. p.m. e.g. i.e.",
    "the U.S. The end", "the U.S. the end", "etc. The", "etc. the", "vs. Inc. Co. Corp. Ltd.",
    "Jan. Feb. Aug. Sept. Calif. Mass. Ill.", "No. 5, fig. 3, ca. 1900", "Pty. Ltd. co. ltd",
    "letter a. and I. and x.", "A. B. C.", "1,000 1,000,000 3.14 -5 +3 .5 10:30 1.2.3",
    "10/12/2010 1-2-2020 3/4 2 1/2 1\u20442", "\u00bd \u00bc \u00be \u2153 \u2154 \u2155",
    "555-1234 (555) 123-4567 +1 555 123 4567 555.123.4567", "$5 $5.99 US$ 5 # 3 #hashtag @user",
    "\u00a2 \u00a3 \u20ac \u00a5 \u00a4", "50% 3 * 4 2 + 2 = 4 a/b and/or 24/7",
    "re-use x-ray t-shirt well-known co-op anti-war pro-choice e-mail 3-D",
    "a - b -- c --- d ---- e ----- f \u2013 g \u2014 h", "wait... what . . . ok \u2026 .... .....",
    "Hi! Really?! No!! What??", "a, b; c: d", "(a) [b] {c} <d>", "-LRB- -RRB- -lrb-",
    "<b>bold</b> <a href='x'>link</a> <br/> <!DOCTYPE html>", "&amp; &quot;q&quot; &apos;s &lt; &gt; &nbsp; &#38;",
    "AT&T S&P-500 C++ c# F# R&D", "www.example.com http://a.b/c?d=1 https://x.org/ foo@bar.com",
    "file.jpg photo.png doc.pdf", ":) ;-) :D :( :-P ^_^ (^_^) <3", "a_b __init__ ** *** @@ ##",
    "caf\u00e9 na\u00efve se\u00f1or \u00fcber Stra\u00dfe \u65e5\u672c \u0645\u0631\u062d\u0628\u0627",
    "emoji \U0001F600 here \U0001F436dog", "\u00a0nbsp\u00a0inside\u200bzero\u00adsoft\u00adhyphen",
    "tab\there\x7fdel", "\u00b0 \u00d7 \u00f7 \u00a7 \u00a9 \u00ae \u2122 \u2192 \u2264",
    "ALL CAPS SENTENCE.", "\u0130stanbul \u2167 \u03a3\u039f\u03a3", "end with period.",
    "trailing spaces   ", "   leading spaces", "", "...", "  ", "!!!", "'", "\"",
    "a.b.c a.b. abc.def.", "The dog.The cat.", "hello.world", "Hello!World", "1st 2nd 3rd 4th",
    "'s 're 'll 've 'm 'd n't", "dogs' bones the boss's", "'hello' 'Hello'", "\"Hello\" \"hello",
    "d'Arc O'Neil l'amour", "Ph.D. M.D. B.A.", "ca. 5 ca.5", "approx. 10", "Ft. Worth Mt. Fuji",
    "the 5 dogs", "i.e., e.g., etc.,", "he said:\"go\"", "it\u2019s the dog\u2019s", "dont cant wont",
]


def coco_caption_eval(ann_path, pred_path):
    """BLIP's coco_caption_eval (train_caption.py) and COCOEvalCap.evaluate, without METEOR
    and SPICE; returns the scores and the tokenized references and candidates."""
    coco = COCO(ann_path)
    coco_result = coco.loadRes(pred_path)
    img_ids = coco_result.getImgIds()  # coco_eval.params['image_id'] in BLIP
    gts = {i: coco.imgToAnns[i] for i in img_ids}
    res = {i: coco_result.imgToAnns[i] for i in img_ids}
    tokenizer = PTBTokenizer()
    gts_tok, res_tok = tokenizer.tokenize(gts), tokenizer.tokenize(res)
    scores = {}
    for scorer, names in [(Bleu(4), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]),
                          (Rouge(), ["ROUGE_L"]), (Cider(), ["CIDEr"])]:
        score, _ = scorer.compute_score(gts_tok, res_tok)
        for name, value in zip(names, score if isinstance(score, list) else [score]):
            scores[name] = float(value)
    return img_ids, gts, res, gts_tok, res_tok, scores


def tokenize_as_one_text(strings):
    out = PTBTokenizer().tokenize({i: [{"caption": s}] for i, s in enumerate(strings)})
    return [out[i][0] for i in range(len(strings))]


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    ann_path, pred_path = os.path.join(OUT, "ann.json"), os.path.join(OUT, "pred.json")
    annotations = []
    for image_id, refs, _ in IMAGES:
        for ref in refs:
            annotations.append({"image_id": image_id, "caption": ref, "id": len(annotations) + 1})
    annotations.insert(7, {"image_id": ORPHAN_ANNOTATION[0], "caption": ORPHAN_ANNOTATION[1],
                           "id": len(annotations) + 1})
    write_json(ann_path, {"images": [{"id": i} for i, _, _ in IMAGES], "annotations": annotations})
    scored = [(i, c) for i, _, c in IMAGES if c is not None]
    order = scored[1::2] + scored[0::2]  # not the ground truth's order
    write_json(pred_path, [{"image_id": i, "caption": c} for i, c in order])

    img_ids, gts, res, gts_tok, res_tok, scores = coco_caption_eval(ann_path, pred_path)
    images = [{"image_id": i,
               "pred": {"raw": res[i][0]["caption"], "tok": res_tok[i][0]},
               "refs": [{"raw": a["caption"], "tok": t} for a, t in zip(gts[i], gts_tok[i])]}
              for i in img_ids]
    cases = [{"raw": s, "tok": t} for s, t in zip(TOKENIZER_CASES,
                                                   tokenize_as_one_text(TOKENIZER_CASES))]
    write_json(os.path.join(OUT, "expected.json"),
               {"pycocoevalcap": "1.2", "scores": scores, "images": images,
                "tokenizer_cases": cases})
    print(json.dumps(scores))


if __name__ == "__main__":
    main()
