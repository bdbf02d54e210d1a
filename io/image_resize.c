// Pillow rounds every product and sum on its own; contraction into fused multiply-adds stays off.
#pragma STDC FP_CONTRACT OFF

// Pillow's antialiased resampling (libImaging/Resample.c, ImagingResample with the BICUBIC
// filter), reproduced operation for operation so that results match Pillow to the grey level:
// coefficients in double, normalised per output pixel, converted to 22-bit fixed point, and each
// pass rounded and clipped to 8 bits.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/image.h"

// Pillow: 8 bits for the result and 2 for sums that overshoot (the kernel has negative lobes).
#define RESAMPLE_PRECISION_BITS (32 - 8 - 2)
#define BICUBIC_SUPPORT         2.0

static double bicubic_filter(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

// For each output index o: inputs first[o] .. first[o] + count[o] - 1 weighted by
// k[o * ksize + t], in fixed point.
typedef struct {
    int ksize;
    int *first, *count; // (out)
    int32_t *k;         // (out, ksize)
} resample_coeffs;

static void coeffs_init(resample_coeffs *c, int in_size, int out_size) {
    // Pillow's box edges are floats: (in1 - in0) is a float before the division.
    double scale = (double)(float)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale; // downscaling stretches the kernel
    double support = BICUBIC_SUPPORT * filterscale;
    c->ksize = (int)ceil(support) * 2 + 1;
    c->first = malloc((size_t)out_size * sizeof *c->first);
    c->count = malloc((size_t)out_size * sizeof *c->count);
    c->k = calloc((size_t)out_size * (size_t)c->ksize, sizeof *c->k);
    double *w = malloc((size_t)c->ksize * sizeof *w);
    PETAL_CHECK(c->first && c->count && c->k && w,
                "image_resize: out of memory for %d x %d coefficients", out_size, c->ksize);
    for (int o = 0; o < out_size; o++) {
        double center = (o + 0.5) * scale, ss = 1.0 / filterscale, ww = 0.0;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in_size) hi = in_size;
        int n = hi - lo;
        for (int t = 0; t < n; t++) {
            w[t] = bicubic_filter((t + lo - center + 0.5) * ss);
            ww += w[t];
        }
        for (int t = 0; t < n; t++) {
            double v = ww != 0.0 ? w[t] / ww : w[t];
            double fixed = v * (1 << RESAMPLE_PRECISION_BITS);
            c->k[(size_t)o * c->ksize + t] = (int32_t)(v < 0 ? fixed - 0.5 : fixed + 0.5);
        }
        c->first[o] = lo;
        c->count[o] = n;
    }
    free(w);
}

static void coeffs_free(resample_coeffs *c) {
    free(c->first);
    free(c->count);
    free(c->k);
}

static uint8_t clip8(int64_t acc) {
    if (acc < 0) return 0;
    acc >>= RESAMPLE_PRECISION_BITS;
    return acc > 255 ? 255 : (uint8_t)acc;
}

// One output pixel: n input pixels `step` bytes apart, weighted by k.
static void resample_pixel(const uint8_t *in, ptrdiff_t step, const int32_t *k, int n,
                           uint8_t *out) {
    for (int ch = 0; ch < 3; ch++) {
        int64_t acc = 1 << (RESAMPLE_PRECISION_BITS - 1);
        for (int t = 0; t < n; t++) acc += (int64_t)in[t * step + ch] * k[t];
        out[ch] = clip8(acc);
    }
}

// Rows src_row0 .. src_row0 + dst->height - 1 of src, resampled along x into dst.
static void resample_horizontal(const image *src, int src_row0, const resample_coeffs *c,
                                image *dst) {
    for (int y = 0; y < dst->height; y++)
        for (int x = 0; x < dst->width; x++)
            resample_pixel(image_pixel(src, c->first[x], src_row0 + y), 3,
                           c->k + (size_t)x * c->ksize, c->count[x], image_pixel(dst, x, y));
}

// src resampled along y into dst; row first[y] - row_shift of src is input row first[y].
static void resample_vertical(const image *src, int row_shift, const resample_coeffs *c,
                              image *dst) {
    ptrdiff_t stride = (ptrdiff_t)src->width * 3;
    for (int y = 0; y < dst->height; y++)
        for (int x = 0; x < dst->width; x++)
            resample_pixel(image_pixel(src, x, c->first[y] - row_shift), stride,
                           c->k + (size_t)y * c->ksize, c->count[y], image_pixel(dst, x, y));
}

void image_resize(const image *src, int width, int height, image *dst) {
    PETAL_CHECK(src->data && width > 0 && height > 0, "image_resize: %d x %d image to %d x %d",
                src->width, src->height, width, height);
    if (width == src->width && height == src->height) {
        image_copy(src, dst);
        return;
    }
    resample_coeffs vert;
    coeffs_init(&vert, src->height, height);
    if (width == src->width) {
        image_init(dst, width, height);
        resample_vertical(src, 0, &vert, dst);
        coeffs_free(&vert);
        return;
    }
    // The horizontal pass covers only the rows the vertical pass reads.
    int row0 = vert.first[0];
    int row_end = vert.first[height - 1] + vert.count[height - 1];
    resample_coeffs horiz;
    coeffs_init(&horiz, src->width, width);
    image tmp;
    image_init(&tmp, width, row_end - row0);
    resample_horizontal(src, row0, &horiz, &tmp);
    coeffs_free(&horiz);
    if (height == src->height) {
        *dst = tmp;
    } else {
        image_init(dst, width, height);
        resample_vertical(&tmp, row0, &vert, dst);
        image_free(&tmp);
    }
    coeffs_free(&vert);
}
