"""Shared by tools/make_blip_fixtures.py and tools/make_petl_fixtures.py: imports the Salesforce
BLIP code (without fairscale or the Hugging Face hub), the tiny MED config, an HDF5 writer and
token-id helpers. Reference scripts only; nothing of petal's build or tests imports Python."""
import json
import sys
import types

import h5py
import torch

TOK = dict(pad=0, cls=1, sep=2, dec=126, enc=127)


class Encoding(dict):
    """A BatchEncoding look-alike: attribute access and .to(device)."""
    __getattr__ = dict.__getitem__

    def to(self, device):
        return self


def import_blip(repo):
    """Imports the BLIP modules without fairscale (grad checkpointing is unused) or the hub."""
    for name in ["fairscale", "fairscale.nn", "fairscale.nn.checkpoint",
                 "fairscale.nn.checkpoint.checkpoint_activations"]:
        sys.modules[name] = types.ModuleType(name)
    sys.modules["fairscale.nn.checkpoint.checkpoint_activations"].checkpoint_wrapper = lambda m: m
    sys.path.insert(0, repo)
    import models.blip as blip
    import models.blip_retrieval as retrieval
    import models.blip_vqa as vqa
    from models.vit import VisionTransformer

    class Tokenizer:
        """Stands in for BertTokenizer: fixtures give token ids, not text. Each call returns the
        next queued (ids, mask) pair; BLIP's prompt 'a picture of ' is [CLS] 10 11 12 [SEP]."""
        enc_token_id, bos_token_id = TOK["enc"], TOK["dec"]
        pad_token_id, sep_token_id = TOK["pad"], TOK["sep"]
        queue = []

        def __call__(self, text, **kwargs):
            if text == "a picture of " or text == ["a picture of "] * len(text):
                n = 1 if isinstance(text, str) else len(text)
                ids = torch.tensor([[TOK["cls"], 10, 11, 12, TOK["sep"]]] * n)
                return Encoding(input_ids=ids, attention_mask=torch.ones_like(ids))
            ids, mask = self.queue.pop(0)
            return Encoding(input_ids=ids.clone(), attention_mask=mask.clone())

        def decode(self, ids, skip_special_tokens=True):
            return ""

    def tiny_vit(vit, image_size, use_grad_checkpointing=False, ckpt_layer=0, drop_path_rate=0):
        return VisionTransformer(img_size=image_size, patch_size=16, embed_dim=32, depth=2,
                                 num_heads=2, mlp_ratio=2.0, drop_path_rate=drop_path_rate), 32

    for mod in (blip, retrieval, vqa):
        mod.init_tokenizer = lambda: Tokenizer()
        mod.create_vit = tiny_vit
    retrieval.concat_all_gather = lambda t: t  # one process
    return blip, retrieval, vqa


def med_config(path):
    cfg = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1,
           "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 32,
           "initializer_range": 0.02, "intermediate_size": 64, "layer_norm_eps": 1e-12,
           "max_position_embeddings": 64, "model_type": "bert", "num_attention_heads": 2,
           "num_hidden_layers": 2, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": 128,
           "encoder_width": 32, "add_cross_attention": True}
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


class Writer:
    def __init__(self, path):
        self.f = h5py.File(path, "w")

    def put(self, group, name, t):
        t = t.detach().cpu() if torch.is_tensor(t) else torch.as_tensor(t)
        if t.is_floating_point():
            t = t.float()
        self.f.create_dataset(f"{group}/{name}", data=t.numpy())

    def weights(self, model):
        for k, v in model.state_dict().items():
            self.put("weights", k, v)

    def close(self):
        self.f.close()


def text_ids(rng, lengths, total):
    """[CLS] w... [SEP] [PAD]... rows (ids in 4..120) and their 0/1 masks."""
    ids = torch.zeros(len(lengths), total, dtype=torch.long)
    mask = torch.zeros(len(lengths), total, dtype=torch.long)
    for b, n in enumerate(lengths):
        words = torch.tensor(rng.integers(4, 120, n - 2))
        ids[b, :n] = torch.cat([torch.tensor([TOK["cls"]]), words, torch.tensor([TOK["sep"]])])
        mask[b, :n] = 1
    return ids, mask
