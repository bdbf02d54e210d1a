#!/usr/bin/env python3
"""Writes the fixtures of tests/io/test_image.c and tests/io/test_augment.c into tests/data/image/.

Run by hand, never by CI or the tests (they only read what this writes):

    PYTHONPATH=/tmp/petal-cv2 tools/.venv/bin/python tools/make_image_fixtures.py

Needs Pillow (9.4 here), numpy and torch (tools/.venv has them) and OpenCV for BLIP's
RandAugment ops. The venv has no cv2; the fixtures were made with OpenCV 4.10, installed outside
the venv with `pip install --no-deps --target /tmp/petal-cv2 opencv-python-headless==4.10.0.84`
(4.10 keeps the fixed-point warpAffine that BLIP ran with; 4.11 rewrote it).

What it writes (every image a PNG, references exact unless said otherwise):
- src_{rgb,grey,grey_alpha,rgba,palette}.png, 97x61 images in five PNG modes, and the RGB pixels PIL's
  convert('RGB') gives for each, raw (H, W, 3) bytes in src_<mode>.rgb;
- photo.png (640x480) and Pillow's Image.resize(BICUBIC) of it to 384x384 and 224x224;
  src_rgb.png resized down (37x23), up (200x150), vertically only (97x30), horizontally only
  (50x61), in resize_<W>x<H>.png;
- JPEGs (colour 4:2:0, colour 4:4:4, progressive, grey) with PIL's decoded pixels, which libjpeg
  and stb_image may decode slightly differently (the test measures how much);
- normalize.png (16x16, every byte value in every channel) and the float32 (3, 16, 16) that
  torchvision's ToTensor + Normalize(BLIP's mean, std) make of it, raw in normalize.f32;
- aug_src.png (48x40) and the output of each BLIP RandAugment op at a few arguments, from BLIP's
  own functions (transform/randaugment.py at salesforce/BLIP 056a169, copied below);
- aug_pipeline.png: a fixed crop box, flip and op list applied the way BLIP's transform_train does;
- the seed corpus of tests/fuzz/fuzz_image.c, in tests/fuzz/corpus/image/.
The fuzz_*.jpg files in tests/data/image/ are not made here: they are inputs the fuzzer found that
stb_image mishandles, kept as regression tests (tests/io/test_image.c).
"""
import os

import cv2
import numpy as np
import torch
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "image")
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def natural(w, h, seed, noise):
    """Gradients, a disc, a rectangle, a black-and-white checkerboard (full-range edges make the
    bicubic kernel overshoot, so clipping is exercised) and Gaussian noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / w * 3.1 + 0.5) * np.cos(y / h * 2.3)
    g = 200 * x / w + 30
    b = 180 * (1 - y / h) + 40 * np.sin((x + y) / 17)
    img = np.stack([r, g, b], -1)
    img[(x - 0.3 * w) ** 2 + (y - 0.6 * h) ** 2 < (0.2 * min(w, h)) ** 2] = [230, 40, 60]
    img[(x > 0.55 * w) & (x < 0.85 * w) & (y > 0.15 * h) & (y < 0.45 * h)] = [20, 200, 90]
    board = (x < 0.25 * w) & (y < 0.25 * h)
    cell = max(2, w // 40)
    img[board] = (((x[board] // cell + y[board] // cell) % 2) * 255)[:, None]
    img += rng.normal(0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def save(name, im, **kw):
    im.save(os.path.join(OUT, name), **kw)


def save_raw(name, array):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(np.ascontiguousarray(array).tobytes())


def png_modes():
    rgb = natural(97, 61, 1, 6)
    alpha = np.fromfunction(lambda y, x: (x * 3 + y * 5) % 256, (61, 97)).astype(np.uint8)
    images = {
        "rgb": Image.fromarray(rgb, "RGB"),
        "grey": Image.fromarray(rgb, "RGB").convert("L"),
        "grey_alpha": Image.fromarray(np.dstack([np.asarray(Image.fromarray(rgb).convert("L")),
                                                 alpha]), "LA"),
        "rgba": Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
        "palette": Image.fromarray(rgb, "RGB").quantize(colors=50),
    }
    for mode, im in images.items():
        save(f"src_{mode}.png", im)
        save_raw(f"src_{mode}.rgb", np.asarray(Image.open(os.path.join(OUT, f"src_{mode}.png"))
                                               .convert("RGB")))
    return images["rgb"]


def resizes(src):
    photo = Image.fromarray(natural(640, 480, 2, 2), "RGB")
    save("photo.png", photo, optimize=True)
    for s in (384, 224):
        save(f"photo_{s}.png", photo.resize((s, s), Image.BICUBIC), optimize=True)
    for w, h in ((37, 23), (200, 150), (97, 30), (50, 61)):
        save(f"resize_{w}x{h}.png", src.resize((w, h), Image.BICUBIC))


def jpegs():
    photo = Image.fromarray(natural(160, 120, 3, 4), "RGB")
    variants = {
        "jpeg_420": (photo, dict(quality=90)),
        "jpeg_444": (photo, dict(quality=90, subsampling=0)),
        "jpeg_progressive": (photo, dict(quality=85, progressive=True)),
        "jpeg_grey": (photo.convert("L"), dict(quality=90)),
    }
    for name, (im, kw) in variants.items():
        save(f"{name}.jpg", im, **kw)
        save(f"{name}.pil.png", Image.open(os.path.join(OUT, f"{name}.jpg")).convert("RGB"))


def normalize():
    v = np.arange(256, dtype=np.uint8).reshape(16, 16)
    pixels = np.dstack([v, 255 - v, (v.astype(np.int32) * 7 % 256).astype(np.uint8)])
    save("normalize.png", Image.fromarray(pixels, "RGB"))
    # torchvision's ToTensor and Normalize, line for line (torchvision is not in the venv). Debian's
    # torch was built against numpy 1, so the pixels cross over as Python lists.
    t = torch.tensor(pixels.tolist(), dtype=torch.uint8).permute(2, 0, 1).contiguous()
    t = t.to(torch.float32).div(255)
    mean = torch.as_tensor(MEAN, dtype=torch.float32)[:, None, None]
    std = torch.as_tensor(STD, dtype=torch.float32)[:, None, None]
    save_raw("normalize.f32", np.array(t.sub_(mean).div_(std).tolist(), dtype="<f4"))


# ---- BLIP's RandAugment ops (salesforce/BLIP transform/randaugment.py, BSD-3-Clause), verbatim
# except for formatting; only the ten ops BLIP's transform_train uses. ----


def autocontrast_func(img, cutoff=0):
    n_bins = 256

    def tune_channel(ch):
        n = ch.size
        cut = cutoff * n // 100
        if cut == 0:
            high, low = ch.max(), ch.min()
        else:
            hist = cv2.calcHist([ch], [0], None, [n_bins], [0, n_bins])
            low = np.argwhere(np.cumsum(hist) > cut)
            low = 0 if low.shape[0] == 0 else low[0]
            high = np.argwhere(np.cumsum(hist[::-1]) > cut)
            high = n_bins - 1 if high.shape[0] == 0 else n_bins - 1 - high[0]
        if high <= low:
            table = np.arange(n_bins)
        else:
            scale = (n_bins - 1) / (high - low)
            offset = -low * scale
            table = np.arange(n_bins) * scale + offset
            table[table < 0] = 0
            table[table > n_bins - 1] = n_bins - 1
        table = table.clip(0, 255).astype(np.uint8)
        return table[ch]

    channels = [tune_channel(ch) for ch in cv2.split(img)]
    return cv2.merge(channels)


def equalize_func(img):
    n_bins = 256

    def tune_channel(ch):
        hist = cv2.calcHist([ch], [0], None, [n_bins], [0, n_bins])
        non_zero_hist = hist[hist != 0].reshape(-1)
        step = np.sum(non_zero_hist[:-1]) // (n_bins - 1)
        if step == 0:
            return ch
        n = np.empty_like(hist)
        n[0] = step // 2
        n[1:] = hist[:-1]
        table = (np.cumsum(n) // step).clip(0, 255).astype(np.uint8)
        return table[ch]

    channels = [tune_channel(ch) for ch in cv2.split(img)]
    return cv2.merge(channels)


def rotate_func(img, degree, fill=(0, 0, 0)):
    H, W = img.shape[0], img.shape[1]
    center = W / 2, H / 2
    M = cv2.getRotationMatrix2D(center, degree, 1)
    return cv2.warpAffine(img, M, (W, H), borderValue=fill)


def brightness_func(img, factor):
    table = (np.arange(256, dtype=np.float32) * factor).clip(0, 255).astype(np.uint8)
    return table[img]


def sharpness_func(img, factor):
    kernel = np.ones((3, 3), dtype=np.float32)
    kernel[1][1] = 5
    kernel /= 13
    degenerate = cv2.filter2D(img, -1, kernel)
    if factor == 0.0:
        out = degenerate
    elif factor == 1.0:
        out = img
    else:
        out = img.astype(np.float32)
        degenerate = degenerate.astype(np.float32)[1:-1, 1:-1, :]
        out[1:-1, 1:-1, :] = degenerate + factor * (out[1:-1, 1:-1, :] - degenerate)
        out = out.astype(np.uint8)
    return out


def shear_x_func(img, factor, fill=(0, 0, 0)):
    H, W = img.shape[0], img.shape[1]
    M = np.float32([[1, factor, 0], [0, 1, 0]])
    return cv2.warpAffine(img, M, (W, H), borderValue=fill, flags=cv2.INTER_LINEAR).astype(np.uint8)


def translate_x_func(img, offset, fill=(0, 0, 0)):
    H, W = img.shape[0], img.shape[1]
    M = np.float32([[1, 0, -offset], [0, 1, 0]])
    return cv2.warpAffine(img, M, (W, H), borderValue=fill, flags=cv2.INTER_LINEAR).astype(np.uint8)


def translate_y_func(img, offset, fill=(0, 0, 0)):
    H, W = img.shape[0], img.shape[1]
    M = np.float32([[1, 0, 0], [0, 1, -offset]])
    return cv2.warpAffine(img, M, (W, H), borderValue=fill, flags=cv2.INTER_LINEAR).astype(np.uint8)


def shear_y_func(img, factor, fill=(0, 0, 0)):
    H, W = img.shape[0], img.shape[1]
    M = np.float32([[1, 0, 0], [factor, 1, 0]])
    return cv2.warpAffine(img, M, (W, H), borderValue=fill, flags=cv2.INTER_LINEAR).astype(np.uint8)


FILL = (128, 128, 128)
# (file name, function, argument): BLIP's arguments at magnitude 5 (brightness and sharpness are
# then 1.0, the identity) plus other magnitudes, so that every formula is exercised. Sharpness
# factors stay where numpy's float-to-uint8 cast does not wrap (see io/augment.c).
AUG_CASES = [
    ("identity", lambda im: im),
    ("autocontrast", autocontrast_func),
    ("equalize", equalize_func),
    ("brightness_0.46", lambda im: brightness_func(im, 0.46)),
    ("brightness_1.0", lambda im: brightness_func(im, 1.0)),
    ("brightness_1.72", lambda im: brightness_func(im, 1.72)),
    ("sharpness_0.0", lambda im: sharpness_func(im, 0.0)),
    ("sharpness_0.28", lambda im: sharpness_func(im, 0.28)),
    ("sharpness_1.0", lambda im: sharpness_func(im, 1.0)),
    ("shear_x_0.15", lambda im: shear_x_func(im, 0.15, FILL)),
    ("shear_x_-0.15", lambda im: shear_x_func(im, -0.15, FILL)),
    ("shear_y_0.27", lambda im: shear_y_func(im, 0.27, FILL)),
    ("shear_y_-0.15", lambda im: shear_y_func(im, -0.15, FILL)),
    ("translate_x_5", lambda im: translate_x_func(im, 5.0, FILL)),
    ("translate_x_-3.5", lambda im: translate_x_func(im, -3.5, FILL)),
    ("translate_y_-5", lambda im: translate_y_func(im, -5.0, FILL)),
    ("translate_y_2.2", lambda im: translate_y_func(im, 2.2, FILL)),
    ("rotate_15", lambda im: rotate_func(im, 15.0, FILL)),
    ("rotate_-15", lambda im: rotate_func(im, -15.0, FILL)),
    ("rotate_-27", lambda im: rotate_func(im, -27.0, FILL)),
]


def augment_src():
    img = natural(48, 40, 4, 8)
    # Channel 0 has its minimum above 0 and channel 1 reaches 0, so AutoContrast's two
    # behaviours (BLIP's uint8 wrap of -low, and the PIL formula) both show.
    img[..., 0] = np.maximum(img[..., 0], 17)
    img[0, 0, 1] = 0
    return img


def augments():
    src = augment_src()
    save("aug_src.png", Image.fromarray(src, "RGB"))
    for name, fn in AUG_CASES:
        save(f"aug_{name}.png", Image.fromarray(fn(src.copy()), "RGB"))


def pipeline():
    """BLIP's transform_train with its random draws fixed: RandomResizedCrop's box (top 31,
    left 57, height 301, width 389) resized to 96x96 bicubic, a horizontal flip, then ShearX -0.15
    and Equalize (RandomAugment's ops that passed their 0.5 draw)."""
    photo = Image.open(os.path.join(OUT, "photo.png"))
    top, left, h, w = 31, 57, 301, 389
    im = photo.crop((left, top, left + w, top + h)).resize((96, 96), Image.BICUBIC)
    im = np.array(im.transpose(Image.FLIP_LEFT_RIGHT))
    im = equalize_func(shear_x_func(im, -0.15, FILL))
    save("aug_pipeline.png", Image.fromarray(im, "RGB"))


def fuzz_corpus():
    """Small seeds for tests/fuzz/fuzz_image.c: every PNG mode and JPEG flavour, a few bytes each."""
    out = os.path.join(OUT, "..", "..", "fuzz", "corpus", "image")
    os.makedirs(out, exist_ok=True)
    rgb = natural(9, 7, 5, 10)
    im = Image.fromarray(rgb, "RGB")
    seeds = {
        "rgb.png": (im, {}),
        "grey.png": (im.convert("L"), {}),
        "bilevel.png": (im.convert("1"), {}),
        "grey_alpha.png": (im.convert("LA"), {}),
        "rgba.png": (im.convert("RGBA"), {}),
        "palette.png": (im.quantize(colors=7), {}),
        "grey16.png": (Image.fromarray((rgb[..., 0].astype(np.uint16) * 257), "I;16"), {}),
        "baseline.jpg": (im, dict(quality=75)),
        "progressive.jpg": (Image.fromarray(natural(17, 9, 6, 10), "RGB"),
                            dict(quality=75, progressive=True)),
        "grey.jpg": (im.convert("L"), dict(quality=75)),
        "444.jpg": (im, dict(quality=90, subsampling=0)),
    }
    for name, (image, kw) in seeds.items():
        image.save(os.path.join(out, name), **kw)


def main():
    os.makedirs(OUT, exist_ok=True)
    fuzz_corpus()
    src = png_modes()
    resizes(src)
    jpegs()
    normalize()
    augments()
    pipeline()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, into {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
