// numpy and OpenCV round every product and every sum; a fused multiply-add would round once and
// could move a result across an integer boundary, so contraction stays off in this file.
#pragma STDC FP_CONTRACT OFF

#include "io/augment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/philox.h"

#define BLIP_MAX_LEVEL 10.0
#define BLIP_FILL      128 // randaugment.py's replace_value, the border of the geometric ops
#define CROP_TRIES     10  // torchvision's RandomResizedCrop

// Philox outputs per augment_sample: 4 per crop try (area, ratio, top, left), then the flip, then
// 3 per op (which op, whether it applies, its sign).
#define CROP_DRAWS   (4 * CROP_TRIES)
#define SAMPLE_DRAWS (CROP_DRAWS + 1 + 3 * AUGMENT_MAX_OPS)

// OpenCV's warpAffine: coordinates in 1/1024 pixel, interpolation weights on a 1/32 grid, 15-bit
// weights (imgwarp.cpp: AB_BITS, INTER_BITS, INTER_REMAP_COEF_BITS).
#define WARP_AB_BITS    10
#define WARP_INTER_BITS 5
#define WARP_TAB_SIZE   (1 << WARP_INTER_BITS)
#define WARP_COEF_BITS  15

static const char *const op_names[AUGMENT_OP_COUNT] = {
    "Identity", "AutoContrast", "AutoContrastPIL", "Equalize",   "Brightness", "Sharpness",
    "ShearX",   "ShearY",       "TranslateX",      "TranslateY", "Rotate",
};

const char *augment_op_name(augment_op op) {
    PETAL_CHECK(op >= 0 && op < AUGMENT_OP_COUNT, "augment_op_name: no op %d", (int)op);
    return op_names[op];
}

// ---- configuration ----

augment_config augment_blip_config(int size) {
    return (augment_config){
        .size = size,
        .scale_min = 0.5,
        .scale_max = 1.0,
        .ratio_min = 3.0 / 4.0,
        .ratio_max = 4.0 / 3.0,
        .flip_p = 0.5,
        .n_ops = 2,
        .magnitude = 5,
        .op_p = 0.5,
        .n_choices = 10,
        .choices = {AUGMENT_IDENTITY, AUGMENT_AUTOCONTRAST, AUGMENT_BRIGHTNESS, AUGMENT_SHARPNESS,
                    AUGMENT_EQUALIZE, AUGMENT_SHEAR_X, AUGMENT_SHEAR_Y, AUGMENT_TRANSLATE_X,
                    AUGMENT_TRANSLATE_Y, AUGMENT_ROTATE},
    };
}

static bool is_probability(double p) {
    return p >= 0 && p <= 1;
}

#define CONFIG_REQUIRE(cond, ...)                                                                  \
    do {                                                                                           \
        if (!(cond)) return petal_error(PETAL_ERR_ARG, "augment config: " __VA_ARGS__);            \
    } while (0)

petal_status augment_config_check(const augment_config *cfg) {
    CONFIG_REQUIRE(cfg->size > 0, "size must be positive, got %d", cfg->size);
    CONFIG_REQUIRE(cfg->scale_min > 0 && cfg->scale_min <= cfg->scale_max,
                   "scale needs 0 < scale_min <= scale_max, got (%g, %g)", cfg->scale_min,
                   cfg->scale_max);
    CONFIG_REQUIRE(
        cfg->ratio_min > 0 && cfg->ratio_min <= cfg->ratio_max && isfinite(cfg->ratio_max),
        "ratio needs 0 < ratio_min <= ratio_max, got (%g, %g)", cfg->ratio_min, cfg->ratio_max);
    CONFIG_REQUIRE(is_probability(cfg->flip_p), "flip_p must be in [0, 1], got %g", cfg->flip_p);
    CONFIG_REQUIRE(is_probability(cfg->op_p), "op_p must be in [0, 1], got %g", cfg->op_p);
    CONFIG_REQUIRE(cfg->n_ops >= 0 && cfg->n_ops <= AUGMENT_MAX_OPS,
                   "n_ops must be in [0, %d], got %d", AUGMENT_MAX_OPS, cfg->n_ops);
    CONFIG_REQUIRE(isfinite(cfg->magnitude) && cfg->magnitude >= 0,
                   "magnitude must be finite and >= 0, got %g", cfg->magnitude);
    CONFIG_REQUIRE(cfg->n_ops == 0 || (cfg->n_choices > 0 && cfg->n_choices <= AUGMENT_OP_COUNT),
                   "n_choices must be in [1, %d] when ops are drawn, got %d", AUGMENT_OP_COUNT,
                   cfg->n_choices);
    for (int i = 0; i < cfg->n_choices && i < AUGMENT_OP_COUNT; i++)
        CONFIG_REQUIRE(cfg->choices[i] >= 0 && cfg->choices[i] < AUGMENT_OP_COUNT,
                       "choices[%d] is %d, not an augment_op", i, (int)cfg->choices[i]);
    return PETAL_OK;
}

static void config_require(const augment_config *cfg, const char *fn) {
    PETAL_CHECK(augment_config_check(cfg) == PETAL_OK, "%s: %s", fn, petal_error_message());
}

// ---- random draws ----

// Outputs begin .. end - 1 of one reservation.
typedef struct {
    rng_state s;
    int64_t next, end;
} draw_stream;

static double stream_uniform(draw_stream *d) {
    PETAL_CHECK(d->next < d->end, "augment: drew more than the %lld random numbers reserved",
                (long long)d->end);
    return philox_uniform(d->s.seed, d->s.offset, (uint64_t)d->next++);
}

// torchvision's fallback: the whole image, narrowed to the nearest allowed ratio, centred.
static image_box center_crop(const augment_config *cfg, int width, int height) {
    double in_ratio = (double)width / height;
    int w = width, h = height;
    if (in_ratio < cfg->ratio_min)
        h = (int)fmax(1, nearbyint(w / cfg->ratio_min));
    else if (in_ratio > cfg->ratio_max)
        w = (int)fmax(1, nearbyint(h * cfg->ratio_max));
    return (image_box){.top = (height - h) / 2, .left = (width - w) / 2, .height = h, .width = w};
}

static image_box crop_box_draw(const augment_config *cfg, int width, int height, draw_stream *d) {
    double area = (double)width * height;
    double log_lo = log(cfg->ratio_min), log_hi = log(cfg->ratio_max);
    for (int t = 0; t < CROP_TRIES; t++) {
        double target =
            area * (cfg->scale_min + (cfg->scale_max - cfg->scale_min) * stream_uniform(d));
        double aspect = exp(log_lo + (log_hi - log_lo) * stream_uniform(d));
        double w = nearbyint(sqrt(target * aspect)), h = nearbyint(sqrt(target / aspect));
        double u_top = stream_uniform(d), u_left = stream_uniform(d);
        if (w > 0 && w <= width && h > 0 && h <= height)
            return (image_box){.top = (int)(u_top * (height - h + 1)),
                               .left = (int)(u_left * (width - w + 1)),
                               .height = (int)h,
                               .width = (int)w};
    }
    return center_crop(cfg, width, height);
}

image_box augment_crop_box(const augment_config *cfg, int width, int height, rng_generator *g) {
    config_require(cfg, "augment_crop_box");
    PETAL_CHECK(width > 0 && height > 0, "augment_crop_box: image size %d x %d", width, height);
    draw_stream d = {rng_reserve(g, CROP_DRAWS), 0, CROP_DRAWS};
    return crop_box_draw(cfg, width, height, &d);
}

augment_draw augment_sample(const augment_config *cfg, int width, int height, rng_generator *g) {
    config_require(cfg, "augment_sample");
    PETAL_CHECK(width > 0 && height > 0, "augment_sample: image size %d x %d", width, height);
    rng_state s = rng_reserve(g, SAMPLE_DRAWS);
    draw_stream crop = {s, 0, CROP_DRAWS}, rest = {s, CROP_DRAWS, SAMPLE_DRAWS};
    augment_draw draw = {.crop = crop_box_draw(cfg, width, height, &crop)};
    draw.flip = stream_uniform(&rest) < cfg->flip_p;
    for (int i = 0; i < cfg->n_ops; i++) {
        augment_op op = cfg->choices[(int)(stream_uniform(&rest) * cfg->n_choices)];
        bool apply = stream_uniform(&rest) < cfg->op_p;
        bool negate = stream_uniform(&rest) < 0.5;
        if (!apply) continue;
        draw.ops[draw.n_ops] = op;
        draw.args[draw.n_ops++] = augment_op_arg(op, cfg->magnitude, negate);
    }
    return draw;
}

// ---- the ops ----

double augment_op_arg(augment_op op, double magnitude, bool negate) {
    PETAL_CHECK(op >= 0 && op < AUGMENT_OP_COUNT, "augment_op_arg: no op %d", (int)op);
    double level = magnitude / BLIP_MAX_LEVEL, sign = negate ? -1.0 : 1.0;
    switch (op) {
    case AUGMENT_BRIGHTNESS:
    case AUGMENT_SHARPNESS: {
        double f = level * 1.8;
        return f + 0.1;
    }
    case AUGMENT_SHEAR_X:
    case AUGMENT_SHEAR_Y:
        return sign * (level * 0.3);
    case AUGMENT_TRANSLATE_X:
    case AUGMENT_TRANSLATE_Y:
        return sign * (level * 10.0); // randaugment.py's translate_const
    case AUGMENT_ROTATE:
        return sign * (level * 30.0);
    default:
        return 0.0;
    }
}

void augment_hflip(const image *src, image *dst) {
    image_init(dst, src->width, src->height);
    for (int y = 0; y < src->height; y++)
        for (int x = 0; x < src->width; x++)
            memcpy(image_pixel(dst, x, y), image_pixel(src, src->width - 1 - x, y), 3);
}

// dst = table[c][src] per channel c.
static void apply_tables(const image *src, uint8_t table[3][256], image *dst) {
    image_init(dst, src->width, src->height);
    size_t n = (size_t)src->width * (size_t)src->height * 3;
    for (size_t i = 0; i < n; i++) dst->data[i] = table[i % 3][src->data[i]];
}

static void identity_table(uint8_t table[256]) {
    for (int v = 0; v < 256; v++) table[v] = (uint8_t)v;
}

// numpy's clip(0, 255).astype(uint8): clamp, then truncate toward zero.
static uint8_t clip_trunc(double v) {
    return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v;
}

static void autocontrast_table(const image *src, int c, bool wrap, uint8_t table[256]) {
    int lo = 255, hi = 0;
    size_t n = (size_t)src->width * (size_t)src->height;
    for (size_t i = 0; i < n; i++) {
        int v = src->data[i * 3 + c];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    if (hi <= lo) {
        identity_table(table);
        return;
    }
    double scale = 255.0 / (hi - lo);
    // BLIP negates `low` while it is still a numpy uint8, which wraps 20 to 236.
    double offset = wrap ? (double)((256 - lo) & 255) * scale : -(double)lo * scale;
    for (int v = 0; v < 256; v++) {
        double t = v * scale;
        table[v] = clip_trunc(t + offset);
    }
}

// PIL's equalize as BLIP writes it with numpy: the last used bin does not count towards the step.
// numpy sums the histogram in float32, exactly for images below 2^24 pixels; this sums in integers.
static void equalize_table(const image *src, int c, uint8_t table[256]) {
    int64_t hist[256] = {0};
    size_t n = (size_t)src->width * (size_t)src->height;
    for (size_t i = 0; i < n; i++) hist[src->data[i * 3 + c]]++;
    int last = 255;
    while (hist[last] == 0) last--;
    int64_t step = ((int64_t)n - hist[last]) / 255;
    if (step == 0) {
        identity_table(table);
        return;
    }
    int64_t cum = step / 2;
    for (int v = 0; v < 256; v++) {
        int64_t t = cum / step;
        table[v] = (uint8_t)(t > 255 ? 255 : t);
        cum += hist[v];
    }
}

static void brightness_table(double factor, uint8_t table[256]) {
    for (int v = 0; v < 256; v++) table[v] = clip_trunc((float)v * (float)factor); // float32
}

static void table_op(augment_op op, double arg, const image *src, image *dst) {
    uint8_t table[3][256];
    for (int c = 0; c < 3; c++) {
        if (op == AUGMENT_EQUALIZE)
            equalize_table(src, c, table[c]);
        else if (op == AUGMENT_BRIGHTNESS)
            brightness_table(arg, table[c]);
        else
            autocontrast_table(src, c, op == AUGMENT_AUTOCONTRAST, table[c]);
    }
    apply_tables(src, table, dst);
}

// OpenCV's BORDER_REFLECT_101 for the 3x3 neighbourhood: -1 -> 1, n -> n - 2.
static int reflect101(int i, int n) {
    if (n == 1) return 0;
    return i < 0 ? -i : i >= n ? 2 * n - 2 - i : i;
}

// cv2.filter2D with BLIP's kernel (ones, 5 in the middle, / 13) and rounding to nearest. The exact
// sum S / 13 is never within 1/26 of a half, so OpenCV's float accumulation rounds like this.
static void smooth(const image *src, image *dst) {
    image_init(dst, src->width, src->height);
    for (int y = 0; y < src->height; y++)
        for (int x = 0; x < src->width; x++)
            for (int c = 0; c < 3; c++) {
                int s = 4 * image_pixel(src, x, y)[c];
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++)
                        s += image_pixel(src, reflect101(x + dx, src->width),
                                         reflect101(y + dy, src->height))[c];
                image_pixel(dst, x, y)[c] = (uint8_t)((2 * s + 13) / 26);
            }
}

// BLIP's sharpness_func: blend the smoothed image and the original in float32 inside a one-pixel
// frame that keeps the original. numpy's astype(uint8) wraps values outside [0, 255] around
// (factors above 1 at strong edges); this clamps them instead.
static void sharpness(const image *src, double factor, image *dst) {
    if (factor == 1.0) {
        image_copy(src, dst);
        return;
    }
    smooth(src, dst);
    if (factor == 0.0) return;
    image blur = *dst;
    image_copy(src, dst);
    for (int y = 1; y < src->height - 1; y++)
        for (int x = 1; x < src->width - 1; x++)
            for (int c = 0; c < 3; c++) {
                float d = image_pixel(&blur, x, y)[c];
                float diff = (float)image_pixel(src, x, y)[c] - d;
                float step = (float)factor * diff;
                image_pixel(dst, x, y)[c] = clip_trunc(d + step);
            }
    image_free(&blur);
}

// Arithmetic shift right that floors for negative values too.
static int64_t floor_shift(int64_t v, int bits) {
    return v >= 0 ? v >> bits : -((-v - 1) >> bits) - 1;
}

static uint8_t sample_or_fill(const image *src, int64_t x, int64_t y, int c, uint8_t fill) {
    if (x < 0 || y < 0 || x >= src->width || y >= src->height) return fill;
    return image_pixel(src, (int)x, (int)y)[c];
}

// One output pixel at source position (X, Y) in 1/32 pixel: OpenCV's remapBilinear with a
// constant border. (OpenCV's weight table holds 32767 and 1 instead of 32768 and 0 at offset
// (0, 0); the rounded result is the same.)
static void warp_pixel(const image *src, int64_t X, int64_t Y, uint8_t fill, uint8_t *out) {
    int tx = (int)(X & (WARP_TAB_SIZE - 1)), ty = (int)(Y & (WARP_TAB_SIZE - 1));
    int64_t sx = floor_shift(X, WARP_INTER_BITS), sy = floor_shift(Y, WARP_INTER_BITS);
    int scale = (1 << WARP_COEF_BITS) / (WARP_TAB_SIZE * WARP_TAB_SIZE);
    int w00 = (WARP_TAB_SIZE - tx) * (WARP_TAB_SIZE - ty) * scale;
    int w01 = tx * (WARP_TAB_SIZE - ty) * scale;
    int w10 = (WARP_TAB_SIZE - tx) * ty * scale, w11 = tx * ty * scale;
    for (int c = 0; c < 3; c++) {
        int acc = sample_or_fill(src, sx, sy, c, fill) * w00 +
                  sample_or_fill(src, sx + 1, sy, c, fill) * w01 +
                  sample_or_fill(src, sx, sy + 1, c, fill) * w10 +
                  sample_or_fill(src, sx + 1, sy + 1, c, fill) * w11;
        out[c] = (uint8_t)((acc + (1 << (WARP_COEF_BITS - 1))) >> WARP_COEF_BITS);
    }
}

void augment_warp_affine(const image *src, const double m[6], uint8_t fill, image *dst) {
    // OpenCV inverts the forward map, then walks the output: source = inv * (x, y, 1).
    double det = m[0] * m[4] - m[1] * m[3];
    double d = det != 0 ? 1.0 / det : 0;
    double inv[6] = {m[4] * d, m[1] * -d, 0, m[3] * -d, m[0] * d, 0};
    inv[2] = -inv[0] * m[2] - inv[1] * m[5];
    inv[5] = -inv[3] * m[2] - inv[4] * m[5];
    const double ab_scale = 1 << WARP_AB_BITS;
    const int64_t round_delta = (1 << WARP_AB_BITS) / WARP_TAB_SIZE / 2;
    int64_t *delta = malloc(2 * (size_t)src->width * sizeof *delta); // (W, 2): x's share of X, Y
    PETAL_CHECK(delta, "augment_warp_affine: out of memory");
    for (int x = 0; x < src->width; x++) {
        delta[2 * x] = llrint(inv[0] * x * ab_scale);
        delta[2 * x + 1] = llrint(inv[3] * x * ab_scale);
    }
    image_init(dst, src->width, src->height);
    for (int y = 0; y < src->height; y++) {
        int64_t x0 = llrint((inv[1] * y + inv[2]) * ab_scale) + round_delta;
        int64_t y0 = llrint((inv[4] * y + inv[5]) * ab_scale) + round_delta;
        for (int x = 0; x < src->width; x++)
            warp_pixel(src, floor_shift(x0 + delta[2 * x], WARP_AB_BITS - WARP_INTER_BITS),
                       floor_shift(y0 + delta[2 * x + 1], WARP_AB_BITS - WARP_INTER_BITS), fill,
                       image_pixel(dst, x, y));
    }
    free(delta);
}

// BLIP builds the shear and translation matrices with np.float32, so their entries are rounded to
// float; cv2.getRotationMatrix2D works in double about the float center (W / 2, H / 2).
static void geometric_op(augment_op op, double arg, const image *src, image *dst) {
    double m[6] = {1, 0, 0, 0, 1, 0};
    if (op == AUGMENT_SHEAR_X) m[1] = (float)arg;
    if (op == AUGMENT_SHEAR_Y) m[3] = (float)arg;
    if (op == AUGMENT_TRANSLATE_X) m[2] = (float)-arg;
    if (op == AUGMENT_TRANSLATE_Y) m[5] = (float)-arg;
    if (op == AUGMENT_ROTATE) {
        double angle = arg * (M_PI / 180), cx = (float)(src->width / 2.0),
               cy = (float)(src->height / 2.0);
        double alpha = cos(angle), beta = sin(angle);
        double m_rot[6] = {alpha, beta, 0, -beta, alpha, 0};
        m_rot[2] = (1 - alpha) * cx - beta * cy;
        m_rot[5] = beta * cx + (1 - alpha) * cy;
        memcpy(m, m_rot, sizeof m);
    }
    augment_warp_affine(src, m, BLIP_FILL, dst);
}

void augment_op_apply(augment_op op, double arg, const image *src, image *dst) {
    PETAL_CHECK(op >= 0 && op < AUGMENT_OP_COUNT, "augment_op_apply: no op %d", (int)op);
    PETAL_CHECK(src->data, "augment_op_apply: %s of an empty image", op_names[op]);
    switch (op) {
    case AUGMENT_IDENTITY:
        image_copy(src, dst);
        break;
    case AUGMENT_AUTOCONTRAST:
    case AUGMENT_AUTOCONTRAST_PIL:
    case AUGMENT_EQUALIZE:
    case AUGMENT_BRIGHTNESS:
        table_op(op, arg, src, dst);
        break;
    case AUGMENT_SHARPNESS:
        sharpness(src, arg, dst);
        break;
    default:
        geometric_op(op, arg, src, dst);
    }
}

// ---- the whole transform ----

// Frees *cur and makes *next the current image.
static void advance(image *cur, image *next) {
    image_free(cur);
    *cur = *next;
}

void augment_apply(const augment_config *cfg, const augment_draw *draw, const image *src,
                   image *dst) {
    config_require(cfg, "augment_apply");
    PETAL_CHECK(draw->n_ops >= 0 && draw->n_ops <= AUGMENT_MAX_OPS,
                "augment_apply: the draw has %d ops", draw->n_ops);
    image cur, next;
    image_crop(src, draw->crop, &next);
    image_resize(&next, cfg->size, cfg->size, &cur);
    image_free(&next);
    if (draw->flip) {
        augment_hflip(&cur, &next);
        advance(&cur, &next);
    }
    for (int i = 0; i < draw->n_ops; i++) {
        augment_op_apply(draw->ops[i], draw->args[i], &cur, &next);
        advance(&cur, &next);
    }
    *dst = cur;
}

void augment_image(const augment_config *cfg, const image *src, rng_generator *g, image *dst) {
    augment_draw draw = augment_sample(cfg, src->width, src->height, g);
    augment_apply(cfg, &draw, src, dst);
}

typedef struct {
    const augment_config *cfg;
    rng_generator *rng;
} batch_context;

static void batch_transform(const image *src, void *ctx, image *dst) {
    const batch_context *b = ctx;
    augment_image(b->cfg, src, b->rng, dst);
}

petal_status augment_load_batch(const char *const *paths, int n, const augment_config *cfg,
                                rng_generator *g, tensor **out) {
    config_require(cfg, "augment_load_batch");
    batch_context ctx = {cfg, g};
    return image_load_batch(paths, n, cfg->size, batch_transform, &ctx, out);
}
