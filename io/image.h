// Images for BLIP (docs/architecture.md "io/"): JPEG and PNG decoding with stb_image, Pillow's
// antialiased bicubic resize, and ToTensor + Normalize into f32 tensors.
//
// BLIP's test transform is image_resize to S x S, then image_to_tensor with image_blip_mean and
// image_blip_std; image_load_batch does both for a list of files. The training transform (random
// crop, flip, RandAugment) is io/augment.h.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tensor/error.h"
#include "tensor/tensor.h"

// An 8-bit RGB image; data holds (H, W, 3) bytes, row-major.
typedef struct {
    int width, height;
    uint8_t *data;
} image;

// A rectangle of an image, in pixels.
typedef struct {
    int top, left, height, width;
} image_box;

// Allocates a zero-filled width x height image; aborts on a size <= 0 or too large for memory.
void image_init(image *im, int width, int height);
void image_free(image *im); // leaves an empty image; an empty one is fine
static inline uint8_t *image_pixel(const image *im, int x, int y) {
    return im->data + ((size_t)y * (size_t)im->width + (size_t)x) * 3;
}

// ---- decoding ----
// JPEG (baseline and progressive, grey or colour) and PNG (grey, grey + alpha, palette, RGB, RGBA,
// 1 to 16 bits) become RGB the way PIL's Image.convert('RGB') does: grey repeated into the three
// channels, alpha dropped, 16-bit samples cut to their high byte. (One exception: PIL opens 16-bit
// grey PNGs as 32-bit integers and clips them to 255; petal keeps the high byte.) A failure returns
// PETAL_ERR_IO (cannot read the file) or PETAL_ERR_FORMAT (not a JPEG or PNG, truncated, corrupt,
// too large) with a message that names the file and stb_image's reason. `out` is initialised only
// on success.
petal_status image_load(const char *path, image *out);
// The same from memory; `name` stands for the file in messages.
petal_status image_decode(const void *bytes, size_t nbytes, const char *name, image *out);
// The largest square side a model takes images at (--image-size, image_size): a ViT-B at 4096 px
// holds 65,537 tokens, 200 GiB of attention scores for one image.
#define IMAGE_MAX_MODEL_SIZE 4096

// The most pixels (width x height) decoding accepts, so that a small file declaring a huge image
// cannot exhaust memory. The default is PIL's: twice Image.MAX_IMAGE_PIXELS, where PIL raises
// DecompressionBombError. Returns the previous limit.
#define IMAGE_DEFAULT_MAX_PIXELS (2 * (int64_t)89478485)
int64_t image_set_max_pixels(int64_t max_pixels);

// ---- geometry; dst is initialised by the call (and must not be src) ----
void image_copy(const image *src, image *dst);
void image_crop(const image *src, image_box box, image *dst); // the box must lie inside src
// Pillow's Image.resize((width, height), Image.BICUBIC) (Pillow >= 7, no reducing_gap): separable,
// horizontal pass then vertical, each rounded to 8 bits, with the bicubic kernel (a = -0.5)
// stretched by the downscale factor (antialiasing).
void image_resize(const image *src, int width, int height, image *dst);

// ---- tensors ----
// BLIP's (and CLIP's) Normalize constants.
extern const float image_blip_mean[3], image_blip_std[3];
// torchvision's ToTensor then Normalize(mean, std), in f32 arithmetic like torch's:
// (v / 255 - mean[c]) / std[c], as a (3, H, W) f32 tensor.
tensor *image_to_tensor(const image *im, const float mean[3], const float std[3]);

// Makes the S x S image that goes into a batch from a decoded one (augment_load_batch in
// io/augment.h plugs BLIP's training transform in here); ctx is passed through.
typedef void (*image_transform)(const image *src, void *ctx, image *dst);
// Loads n files into one (n, 3, size, size) f32 tensor, normalised with BLIP's mean and std. Each
// image goes through `transform`, or, if it is NULL, image_resize to size x size (BLIP's test
// transform). On failure *out is NULL and the message names the file.
petal_status image_load_batch(const char *const *paths, int n, int size, image_transform transform,
                              void *ctx, tensor **out);
