// BLIP's training transform (salesforce/BLIP data/__init__.py, transform/randaugment.py):
//
//     RandomResizedCrop(S, scale=(0.5, 1.0), bicubic) -> RandomHorizontalFlip()
//     -> RandomAugment(2, 5, isPIL=True, augs=[Identity, AutoContrast, Brightness, Sharpness,
//        Equalize, ShearX, ShearY, TranslateX, TranslateY, Rotate]) -> ToTensor -> Normalize
//
// with BLIP's own op implementations (numpy and OpenCV 4.10 arithmetic, reproduced exactly) and
// all randomness drawn from a petal Philox generator: the same seed gives the same crop, flip and
// ops. Sampling (augment_sample) and applying (augment_apply) are separate, so a draw can be
// inspected, logged or replayed.
#pragma once

#include <stdbool.h>

#include "io/image.h"
#include "tensor/rng.h"

typedef enum {
    AUGMENT_IDENTITY,
    AUGMENT_AUTOCONTRAST, // as BLIP's code runs it: see augment_op_apply
    AUGMENT_AUTOCONTRAST_PIL,
    AUGMENT_EQUALIZE,
    AUGMENT_BRIGHTNESS,
    AUGMENT_SHARPNESS,
    AUGMENT_SHEAR_X,
    AUGMENT_SHEAR_Y,
    AUGMENT_TRANSLATE_X,
    AUGMENT_TRANSLATE_Y,
    AUGMENT_ROTATE,
    AUGMENT_OP_COUNT
} augment_op;

const char *augment_op_name(augment_op op);

#define AUGMENT_MAX_OPS 8

typedef struct {
    int size;                    // S: the output is S x S
    double scale_min, scale_max; // RandomResizedCrop: fraction of the source area kept
    double ratio_min, ratio_max; // RandomResizedCrop: width / height of the box
    double flip_p;               // RandomHorizontalFlip: probability of a flip
    int n_ops;                   // RandAugment N: ops drawn, with replacement (<= AUGMENT_MAX_OPS)
    double magnitude;            // RandAugment M, on BLIP's scale of 0 to 10
    double op_p;                 // probability that a drawn op is applied
    int n_choices;               // the ops drawn from
    augment_op choices[AUGMENT_OP_COUNT];
} augment_config;

// BLIP's transform_train for S x S images (scale 0.5 to 1, ratio 3/4 to 4/3, flip 0.5, two ops at
// magnitude 5, each applied with probability 0.5, from BLIP's ten).
augment_config augment_blip_config(int size);
// PETAL_ERR_ARG naming the first field out of range (and what it holds), or PETAL_OK. The other
// functions abort with this message on an invalid config.
petal_status augment_config_check(const augment_config *cfg);

// One draw of the random transform for a width x height source.
typedef struct {
    image_box crop; // RandomResizedCrop's box in the source
    bool flip;
    int n_ops; // the drawn ops that passed their op_p draw, in order
    augment_op ops[AUGMENT_MAX_OPS];
    double args[AUGMENT_MAX_OPS]; // each op's argument (augment_op_arg)
} augment_draw;

// Draws a fixed number of Philox outputs from g (NULL: the default generator) per call, whatever
// the outcome, so the draws for consecutive images never depend on each other's sizes.
augment_draw augment_sample(const augment_config *cfg, int width, int height, rng_generator *g);
// Crops, resizes to S x S (Pillow bicubic), flips and applies the ops of `draw` to src.
void augment_apply(const augment_config *cfg, const augment_draw *draw, const image *src,
                   image *dst);
// augment_sample then augment_apply.
void augment_image(const augment_config *cfg, const image *src, rng_generator *g, image *dst);

// BLIP's training batch: image_load_batch with augment_image as the transform, so the images are
// decoded, augmented and normalised into (n, 3, S, S) in order, drawing from g.
petal_status augment_load_batch(const char *const *paths, int n, const augment_config *cfg,
                                rng_generator *g, tensor **out);

// ---- the pieces ----
// torchvision's RandomResizedCrop.get_params: up to 10 tries of (area fraction, log-uniform aspect
// ratio), rounded half to even like Python's round, then a uniform position; else the center crop
// clamped to the ratio range.
image_box augment_crop_box(const augment_config *cfg, int width, int height, rng_generator *g);
void augment_hflip(const image *src, image *dst);
// BLIP's arg_dict: the argument of `op` at `magnitude` (of 10), negated for the geometric ops when
// `negate` (BLIP draws that sign at random): the enhance factor 0.1 + 0.18 M for brightness and
// sharpness, the shear 0.03 M, the translation M pixels, the angle 3 M degrees; 0 for the others.
double augment_op_arg(augment_op op, double magnitude, bool negate);
// BLIP's func_dict: applies op with its argument. The geometric ops are OpenCV's warpAffine
// (bilinear, constant border of 128); rotation is about (W/2, H/2), positive counter-clockwise.
// AUGMENT_AUTOCONTRAST is BLIP's autocontrast_func as it runs: `-low` wraps around in uint8, so a
// channel whose minimum is above 0 comes out all 255; AUGMENT_AUTOCONTRAST_PIL is the
// ImageOps.autocontrast that BLIP's code means to reproduce.
void augment_op_apply(augment_op op, double arg, const image *src, image *dst);
// cv2.warpAffine(src, m, (W, H), flags=INTER_LINEAR, borderValue=(fill,)*3) with the forward
// 2x3 matrix m (row-major), in OpenCV <= 4.10's fixed-point arithmetic.
void augment_warp_affine(const image *src, const double m[6], uint8_t fill, image *dst);
