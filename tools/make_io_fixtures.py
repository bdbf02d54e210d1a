#!/usr/bin/env python3
"""Writes the fixtures of tests/io/test_pth.c, test_safetensors.c, test_convert.c and
test_checkpoint.c into tests/data/io/, and the seed corpora of the checkpoint-side fuzz targets.

Run by hand, never by CI or the tests (they only read what this writes):

    tools/.venv/bin/python tools/make_io_fixtures.py

Needs torch (1.13 here), transformers (4.40), safetensors, h5py and numpy (tools/.venv has them).
torch 1.13 cannot hand tensors to numpy 2, so arrays go through tolist().

What it writes:
- torch.save files: plain.pth (an nn.Module state dict, with the _metadata BUILD, a 0-d parameter
  and an int64 buffer); wrapped.pth ({'model', 'optimizer', 'config', 'epoch'}, the optimizer
  state holding tensors under int keys); dtypes.pth (f32, f16, bf16, f64, i64, i32, 0-d, empty);
  views.pth (a transpose, rows, columns and a block of one shared storage, an expanded tensor);
  param.pth (an nn.Parameter, saved through _rebuild_parameter); proto4.pth (pickle protocol 4:
  FRAME, MEMOIZE, STACK_GLOBAL); v3.pth (hand-made: _rebuild_tensor_v3 over an UntypedStorage
  with a torch.float16 dtype, as torch 2.x writes for some dtypes); zip64.pth (plain.pth's
  entries re-packed with zip64 records, data descriptors and a folder name with spaces);
- files that must be refused: evil_global.pth (REDUCE of posix.system), evil_opcode.pth
  (NEWOBJ), legacy.pth (the pre-1.6 format);
- .safetensors files: dtypes.safetensors (F32, F16, BF16, F64, I64, I32, 0-d, empty, with
  __metadata__);
- tiny BLIP state dicts (vision 64 wide, 2 blocks, patch 4, image 8, so pos_embed has 5 entries;
  text 64 wide, 2 layers, vocab 100; projections to 16): blip_hf_itr.safetensors and
  blip_hf_itr.pth (transformers' BlipForImageTextRetrieval, its real key names) and, renamed from
  the same weights, blip_sf_pretrain.pth (Salesforce names: text_decoder with its tied decoder
  weight and bias, temp, momentum encoders, queues, position_ids, inside {'model': ...}) and
  blip_sf_retrieval.safetensors (momentum projections, idx_queue and ptr_queue);
- bert_tiny/model.safetensors and bert_tiny/config.json (transformers' BertModel, 64 wide with 4
  heads, so the head count must come from config.json), and vocab_tiny.txt;
- expected.h5: a petal checkpoint written here with h5py (the format of docs/checkpoint-format.md,
  header included) holding every tensor the .pth and .safetensors fixtures should read as, under
  "<fixture>.<name>" (bf16 values as f32), and "resize.pos_embed_16": the tiny pos_embed resized
  to a 16-pixel image (a 4x4 grid) by F.interpolate(mode='bicubic', align_corners=False) with the
  CLS entry kept, as Salesforce's interpolate_pos_embed does;
- h5py_written.h5: a small petal checkpoint written by h5py alone;
- seeds for tests/fuzz/corpus/{pth,safetensors,checkpoint} (for fuzz_pth, also each .pth's pickle
  and storages in the record form it zips itself).
"""
import collections
import json
import os
import shutil
import struct
import zipfile

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import BertConfig, BertModel, BlipConfig, BlipForConditionalGeneration
from transformers import BlipForImageTextRetrieval

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "data", "io")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")

# ---- petal checkpoints from Python (docs/checkpoint-format.md) ----

M64 = (1 << 64) - 1
P1, P2, P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
P4, P5 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5


def rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


def hash64(data):
    """petal's 64-bit content hash (io/fingerprint.c)."""
    acc = P5
    for (w,) in struct.iter_unpack("<Q", data + bytes(-len(data) % 8)):
        acc ^= rotl(w * P2 & M64, 31) * P1 & M64
        acc = (rotl(acc, 27) * P1 + P4) & M64
    acc ^= len(data)
    acc ^= acc >> 33
    acc = acc * P2 & M64
    acc ^= acc >> 29
    acc = acc * P3 & M64
    return acc ^ (acc >> 32)


DTYPE_NAMES = {np.dtype("float32"): "f32", np.dtype("float64"): "f64", np.dtype("float16"): "f16",
               np.dtype("int32"): "i32", np.dtype("int64"): "i64"}


def fingerprint(tensors):
    """The fingerprint of named arrays: sorted names, dtype, shape, size and bytes of each."""
    stream = bytearray()
    for name in sorted(tensors, key=lambda n: n.encode()):
        a = np.asarray(tensors[name])  # not ascontiguousarray: it makes 0-d arrays 1-d
        data = a.astype(a.dtype.newbyteorder("<")).tobytes(order="C")
        stream += name.encode() + b"\0" + DTYPE_NAMES[a.dtype].encode() + b"\0"
        stream += struct.pack("<Q", a.ndim) + struct.pack(f"<{a.ndim}Q", *a.shape)
        stream += struct.pack("<Q", len(data)) + data
    return hash64(bytes(stream))


def seal(path):
    """Writes petal's header into the 512-byte user block: size and hash of the rest."""
    with open(path, "r+b") as f:
        data = f.read()
        header = f"petal checkpoint\nsize {len(data)}\nhash {hash64(data[512:]):016x}\n".encode()
        f.seek(0)
        f.write(header + bytes(512 - len(header)))


def write_checkpoint(path, tensors, config="{}", vocab=None):
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, a in tensors.items():
            f.create_dataset("/" + name.replace(".", "/"), data=a)
        f.attrs["petal_format_version"] = np.int32(1)
        f.attrs["kind"] = "full"
        f.attrs["config"] = config
        if vocab is not None:
            f.attrs["vocab"] = vocab
        f.attrs["fingerprint"] = np.uint64(fingerprint(tensors))
    seal(path)


# ---- torch tensors as numpy arrays (through lists: torch 1.13 predates numpy 2) ----

NP_OF = {torch.float32: np.float32, torch.float64: np.float64, torch.int64: np.int64,
         torch.int32: np.int32, torch.float16: np.float16, torch.bfloat16: np.float32}


def to_np(t):
    t = t.detach().contiguous()
    values = t.float().tolist() if t.dtype in (torch.float16, torch.bfloat16) else t.tolist()
    return np.array(values, dtype=NP_OF[t.dtype]).reshape(tuple(t.shape))


expected = {}


def expect(fixture, state_dict):
    for name, t in state_dict.items():
        expected[f"{fixture}.{name}"] = to_np(t)


def path(name):
    return os.path.join(OUT, name)


# ---- .pth files ----

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 4)
        self.norm = nn.LayerNorm(4)
        self.temp = nn.Parameter(torch.tensor(0.07))
        self.register_buffer("position_ids", torch.arange(6).unsqueeze(0))


def write_pth_fixtures():
    torch.manual_seed(1)
    sd = Tiny().state_dict()
    torch.save(sd, path("plain.pth"))
    expect("plain", sd)

    model = Tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.linear.weight.sum().backward()
    opt.step()
    config = {"lr": 1e-4, "name": "blip", "layers": [1, 2], "flag": True, "none": None,
              "raw": b"\x00\x01", "big": 2**40, "neg": -5}
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "config": config,
                "epoch": 3}, path("wrapped.pth"))
    expect("wrapped", model.state_dict())

    dtypes = {"f32": torch.randn(2, 3), "f16": torch.randn(3, 2).half(),
              "bf16": torch.randn(4).bfloat16(), "f64": torch.randn(2, 2).double(),
              "i64": torch.tensor([[-3, 0, 2**40]]), "i32": torch.tensor([7, -8], dtype=torch.int32),
              "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3)}
    torch.save(dtypes, path("dtypes.pth"))
    expect("dtypes", dtypes)

    base = torch.arange(24.0).reshape(4, 6)
    views = {"base": base, "t": base.t(), "row": base[1], "col": base[:, 2],
             "block": base[1:3, 2:5], "expand": torch.tensor([[1.0, 2.0, 3.0]]).expand(4, 3)}
    torch.save(views, path("views.pth"))
    expect("views", views)

    param = {"w": nn.Parameter(torch.randn(2, 2))}
    torch.save(param, path("param.pth"))
    expect("param", param)

    torch.save(sd, path("proto4.pth"), pickle_protocol=4)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo petal should never run this",))

    torch.save({"x": Evil()}, path("evil_global.pth"))
    torch.save(sd, path("legacy.pth"), _use_new_zipfile_serialization=False)


def global_op(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def unicode_op(s):
    return b"X" + struct.pack("<I", len(s)) + s.encode()


def write_handmade_pth():
    # {'h': _rebuild_tensor_v3(UntypedStorage of 12 bytes, 0, (2, 3), (3, 1), False,
    #                          OrderedDict(), torch.float16)}
    h = torch.tensor([[1.5, -2.0, 0.25], [3.0, 65504.0, -0.0]], dtype=torch.float16)
    storage = struct.pack("<6h", *h.view(torch.int16).flatten().tolist())
    pkl = (b"\x80\x02}(" + unicode_op("h") + global_op("torch._utils", "_rebuild_tensor_v3") +
           b"((" + unicode_op("storage") + global_op("torch", "UntypedStorage") +
           unicode_op("0") + unicode_op("cpu") + b"K\x0ct" + b"QK\x00K\x02K\x03\x86K\x03K\x01\x86"
           + b"\x89" + global_op("collections", "OrderedDict") + b")R" +
           global_op("torch", "float16") + b"tRu.")
    with zipfile.ZipFile(path("v3.pth"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("v3/data.pkl", pkl)
        z.writestr("v3/data/0", storage)
        z.writestr("v3/version", "3\n")
    expected["v3.h"] = to_np(h)

    # A pickle that builds an object with NEWOBJ: refused by opcode.
    with zipfile.ZipFile(path("evil_opcode.pth"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("evil_opcode/data.pkl", b"\x80\x02}" + global_op("collections", "OrderedDict")
                   + b")\x81.")
        z.writestr("evil_opcode/version", "3\n")

    with zipfile.ZipFile(path("plain.pth")) as z:
        members = [(i.filename.replace("plain/", "my model v2/"), z.read(i)) for i in z.infolist()]
    with open(path("zip64.pth"), "wb") as f:
        f.write(zip64_archive(members))


def zip64_archive(members):
    """A stored zip whose central directory puts every size and offset in zip64 extra fields,
    with data descriptors after each entry, as large torch.save files have."""
    out, central = bytearray(), bytearray()
    for name, data in members:
        crc, offset, raw = zipfile.crc32(data) & 0xFFFFFFFF, len(out), name.encode()
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0x808, 0, 0, 0, 0, 0, 0, len(raw), 0)
        out += raw + data + struct.pack("<IIQQ", 0x08074B50, crc, len(data), len(data))
        extra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0x808, 0, 0, 0, crc,
                               0xFFFFFFFF, 0xFFFFFFFF, len(raw), len(extra), 0, 0, 0, 0,
                               0xFFFFFFFF) + raw + extra
    cd_offset = len(out)
    out += central
    eocd64 = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(members), len(members),
                       len(central), cd_offset)
    out += struct.pack("<IIQI", 0x07064B50, 0, eocd64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return bytes(out)


# ---- .safetensors ----

def write_safetensors_fixtures():
    torch.manual_seed(2)
    tensors = {"f32": torch.randn(2, 3), "f16": torch.randn(3).half(),
               "bf16": torch.randn(2, 2).bfloat16(), "f64": torch.randn(3).double(),
               "i64": torch.tensor([-1, 2**33]), "i32": torch.tensor([[5], [-6]], dtype=torch.int32),
               "scalar": torch.tensor(-1.25), "empty": torch.zeros(2, 0)}
    save_file(tensors, path("dtypes.safetensors"), metadata={"format": "pt", "note": "petal"})
    expect("dtypes_st", tensors)


# ---- tiny BLIP state dicts ----

def blip_config():
    vision = dict(hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=1,
                  image_size=8, patch_size=4)
    text = dict(hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=1,
                vocab_size=100, max_position_embeddings=16, encoder_hidden_size=64)
    return BlipConfig(vision_config=vision, text_config=text, image_text_hidden_size=16)


HF_TO_SF = [("vision_model.embeddings.class_embedding", "visual_encoder.cls_token"),
            ("vision_model.embeddings.position_embedding", "visual_encoder.pos_embed"),
            ("vision_model.embeddings.patch_embedding", "visual_encoder.patch_embed.proj"),
            ("vision_model.post_layernorm", "visual_encoder.norm"),
            ("vision_model.encoder.layers", "visual_encoder.blocks"),
            (".self_attn.projection", ".attn.proj"), (".self_attn.qkv", ".attn.qkv"),
            (".layer_norm1", ".norm1"), (".layer_norm2", ".norm2")]


def sf_name(hf):
    for a, b in HF_TO_SF:
        hf = hf.replace(a, b)
    return hf


def write_blip_fixtures():
    torch.manual_seed(3)
    itr = BlipForImageTextRetrieval(blip_config()).eval()
    with torch.no_grad():  # HF initialises these at std 1e-10: make the resize test see values
        itr.vision_model.embeddings.position_embedding.normal_()
        itr.vision_model.embeddings.class_embedding.normal_()
    hf = {k: v.clone() for k, v in itr.state_dict().items()}
    save_file(hf, path("blip_hf_itr.safetensors"), metadata={"format": "pt"})
    torch.save(hf, path("blip_hf_itr.pth"))

    sf = collections.OrderedDict((sf_name(k), v.clone()) for k, v in hf.items())
    caption = BlipForConditionalGeneration(blip_config()).eval()
    for k, v in caption.state_dict().items():
        if k.startswith("text_decoder."):
            sf[k] = v  # decoder.bias shares its storage with cls.predictions.bias
    # Salesforce's decoder ties its output weight to the word embeddings: one storage, two keys.
    sf["text_decoder.cls.predictions.decoder.weight"] = \
        sf["text_decoder.bert.embeddings.word_embeddings.weight"]
    sf["temp"] = torch.tensor(0.07)
    sf["text_encoder.embeddings.position_ids"] = torch.arange(16).unsqueeze(0)
    sf["text_decoder.bert.embeddings.position_ids"] = torch.arange(16).unsqueeze(0)
    momentum = {}
    for k, v in list(sf.items()):
        for part in ("visual_encoder.", "text_encoder.", "vision_proj.", "text_proj."):
            if k.startswith(part):
                momentum[k.replace(part[:-1], part[:-1] + "_m", 1)] = v.clone()
    sf.update(momentum)
    sf["image_queue"] = F.normalize(torch.randn(16, 8), dim=0)
    sf["text_queue"] = F.normalize(torch.randn(16, 8), dim=0)
    sf["queue_ptr"] = torch.zeros(1, dtype=torch.long)
    sf._metadata = collections.OrderedDict({"": {"version": 1}})
    torch.save({"model": sf, "config": {"image_size": 8}, "epoch": 19},
               path("blip_sf_pretrain.pth"))

    # Momentum copies of the projections only: the encoders' copies would double the file.
    retrieval = {k: v.clone() for k, v in sf.items()
                 if not k.startswith(("text_decoder.", "visual_encoder_m.", "text_encoder_m."))
                 and k != "queue_ptr"}
    retrieval["idx_queue"] = torch.full((1, 8), -100)
    retrieval["ptr_queue"] = torch.zeros(1, dtype=torch.long)
    save_file(retrieval, path("blip_sf_retrieval.safetensors"), metadata={"format": "pt"})

    pos = sf["visual_encoder.pos_embed"]
    grid = pos[:, 1:].reshape(1, 2, 2, 64).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False)
    resized = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).flatten(1, 2)], dim=1)
    expected["resize.pos_embed_16"] = to_np(resized)

    with open(path("vocab_tiny.txt"), "w") as f:
        f.write("".join(f"[unused{i}]\n" for i in range(98)) + "[DEC]\n[ENC]\n")


def write_bert_fixture():
    torch.manual_seed(4)
    config = BertConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, vocab_size=100, max_position_embeddings=16)
    bert = BertModel(config).eval()
    sd = {k: v.clone() for k, v in bert.state_dict().items()}
    sd["embeddings.position_ids"] = torch.arange(16).unsqueeze(0)  # as older saves have it
    os.makedirs(path("bert_tiny"), exist_ok=True)
    save_file(sd, path("bert_tiny/model.safetensors"), metadata={"format": "pt"})
    with open(path("bert_tiny/config.json"), "w") as f:
        json.dump(config.to_dict(), f, indent=2)


def pth_records(name):
    """fuzz_pth's record form of a .pth: 0x01, then data.pkl and each storage as [u16 len][bytes]."""
    with zipfile.ZipFile(path(name)) as z:
        prefix = z.namelist()[0].split("/")[0]
        keys = sorted((n.split("/")[-1] for n in z.namelist() if "/data/" in n), key=int)
        members = [z.read(f"{prefix}/data.pkl")] + [z.read(f"{prefix}/data/{k}") for k in keys]
    return b"\x01" + b"".join(struct.pack("<H", len(m)) + m for m in members)


def write_corpora():
    os.makedirs(os.path.join(CORPUS, "pth"), exist_ok=True)
    for name in ["plain.pth", "views.pth", "dtypes.pth", "wrapped.pth", "param.pth", "v3.pth"]:
        with open(os.path.join(CORPUS, "pth", name.replace(".pth", ".records")), "wb") as f:
            f.write(pth_records(name))
    seeds = {"pth": ["plain.pth", "views.pth", "v3.pth", "zip64.pth", "evil_opcode.pth",
                     "proto4.pth", "param.pth"],
             "safetensors": ["dtypes.safetensors"],
             "checkpoint": ["h5py_written.h5", "expected.h5"]}
    for target, names in seeds.items():
        os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
        for name in names:
            shutil.copy(path(name), os.path.join(CORPUS, target, name))


def main():
    os.makedirs(OUT, exist_ok=True)
    write_pth_fixtures()
    write_handmade_pth()
    write_safetensors_fixtures()
    write_blip_fixtures()
    write_bert_fixture()
    write_checkpoint(path("expected.h5"), expected)
    small = {"layer.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
             "layer.bias": np.array([0.5, -0.5], dtype=np.float16),
             "ids": np.array([[1, 2, 3]], dtype=np.int64)}
    write_checkpoint(path("h5py_written.h5"), small, config='{"model": "bert"}',
                     vocab="[PAD]\nhello\n")
    write_corpora()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {len(expected)} expected tensors; tests/data/io holds {total} bytes")


if __name__ == "__main__":
    main()
