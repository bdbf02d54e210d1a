// LayerNorm over one contiguous f32 row for one CPU path, forward and backward, included (by
// tensor/cpu/cpu_path_table.h) once into each path's translation unit (tensor/cpu/cpu_path_*.c),
// after tensor/cpu/cpu_path_row.h. cpu_layer_norm (cpu_layer_norm.c) has the formulas and runs
// them on every row.
//
// Forward: one pass for the f64 sums of x - x[0] and of its square, one for y. The shift by an
// element of the row keeps the one-pass variance exact enough: |x[0] - mean| <= sqrt(d) std, so
// sum((x - x[0])^2) - d (mean - x[0])^2 cancels at most log2(d) of the f64's 53 bits.
// Backward: one pass for the two f64 sums and the row's share of gw and gb, one for gx.
#include <math.h>

#include "tensor/cpu/cpu_path.h"

// y (d) = (x - mean) * rstd * w + b; w and b may be NULL.
static void layer_norm_row(float *y, float *mean_out, float *rstd_out, const float *x,
                           const float *w, const float *b, int64_t d, double eps) {
    float x0 = x[0];
    dvec s1[2] = {0}, s2[2] = {0}; // sums of x - x0 and (x - x0)^2 (low and high lanes)
    for (int64_t i = 0; i < d; i += VEC) {
        vec v = row_load(x + i, row_lanes(d, i), x0); // padding adds 0 to both sums
        dvec lo = widen_lo(v) - x0, hi = widen_hi(v) - x0;
        s1[0] += lo, s1[1] += hi;
        s2[0] += lo * lo, s2[1] += hi * hi;
    }
    double shift = row_total(s1) / (double)d, var = row_total(s2) / (double)d - shift * shift;
    float m = (float)(x0 + shift), r = (float)(1.0 / sqrt((var < 0 ? 0 : var) + eps));
    for (int64_t i = 0; i < d; i += VEC) {
        int64_t n = row_lanes(d, i);
        vec v = (row_load(x + i, n, 0) - m) * r;
        if (w) v *= row_load(w + i, n, 0);
        if (b) v += row_load(b + i, n, 0);
        row_store(y + i, n, v);
    }
    *mean_out = m;
    *rstd_out = r;
}

// gx (d) of one row, skipped when gx is NULL, and the row's gy * xh and gy added into the f64
// accumulators gw and gb (each may be NULL); w may be NULL.
static void layer_norm_backward_row(float *gx, double *gw, double *gb, const float *gy,
                                    const float *x, float mean, float rstd, const float *w,
                                    int64_t d) {
    dvec s1[2] = {0}, s2[2] = {0}; // sums of gxh = gy * w and of gxh * xh
    for (int64_t i = 0; i < d; i += VEC) {
        int64_t n = row_lanes(d, i);
        vec g = row_load(gy + i, n, 0), xh = (row_load(x + i, n, 0) - mean) * rstd;
        vec gxh = w ? g * row_load(w + i, n, 0) : g;
        row_accumulate(s1, gxh);
        row_accumulate(s2, gxh * xh);
        if (gw) row_add_f64(gw + i, n, g * xh);
        if (gb) row_add_f64(gb + i, n, g);
    }
    if (!gx) return;
    float m1 = (float)(row_total(s1) / (double)d), m2 = (float)(row_total(s2) / (double)d);
    for (int64_t i = 0; i < d; i += VEC) {
        int64_t n = row_lanes(d, i);
        vec g = row_load(gy + i, n, 0), xh = (row_load(x + i, n, 0) - mean) * rstd;
        vec gxh = w ? g * row_load(w + i, n, 0) : g;
        row_store(gx + i, n, rstd * (gxh - m1 - xh * m2));
    }
}
