// Softmax and log-softmax over one contiguous f32 row for one CPU path, forward and backward,
// included (by tensor/cpu/cpu_path_table.h) once into each path's translation unit
// (tensor/cpu/cpu_path_*.c), after tensor/cpu/cpu_path_row.h. cpu_softmax (cpu_softmax.c) runs
// them on every row of a softmax over the last dim: attention's softmax, 4 x 12 x 197 rows of 197
// in a ViT-B block.
//
// Forward: one pass for the max, one for exp(x - max) and its f64 sum (softmax stores the exps),
// one to scale (softmax) or shift (log-softmax: (x - max) - log sum, read from x again so that y
// may be x; x - (max + log sum) would round the shift at max's magnitude). The tail is padded with
// -inf where exp reads it (exp(-inf) = 0). Backward: one pass for the f64 sum, one for gx.
#include <math.h>

#include "tensor/cpu/cpu_path.h"

static float row_max(const float *x, int64_t len) {
    vec mv = (vec){0} - INFINITY;
    for (int64_t i = 0; i < len; i += VEC) {
        vec v = row_load(x + i, row_lanes(len, i), -INFINITY);
        mv = vec_select(v > mv, v, mv);
    }
    return row_max_lane(mv);
}

// y = softmax(x) or log_softmax(x) over len elements; y may be x. With want_lse, returns the
// row's log-sum-exp (the fused attention keeps it; one more log a row, so only on request).
__attribute__((always_inline)) static inline float
softmax_row_body(float *y, const float *x, int64_t len, bool as_log, bool want_lse) {
    float m = row_max(x, len);
    if (m == -INFINITY) m = 0; // an all -inf row: keep x - m at -inf, not NaN
    dvec acc[2] = {0};
    for (int64_t i = 0; i < len; i += VEC) {
        int64_t n = row_lanes(len, i);
        vec e = vec_exp(row_load(x + i, n, -INFINITY) - m);
        row_accumulate(acc, e);
        if (!as_log) row_store(y + i, n, e);
    }
    double sum = row_total(acc);
    float k = as_log ? (float)log(sum) : (float)(1.0 / sum);
    for (int64_t i = 0; i < len; i += VEC) {
        int64_t n = row_lanes(len, i);
        vec v = as_log ? (row_load(x + i, n, 0) - m) - k : row_load(y + i, n, 0) * k;
        row_store(y + i, n, v);
    }
    return want_lse ? m + (float)log(sum) : 0;
}

static void softmax_row(float *y, const float *x, int64_t len, bool as_log) {
    softmax_row_body(y, x, len, as_log, false);
}

// y = softmax(x), returning the row's log-sum-exp.
static float softmax_row_lse(float *y, const float *x, int64_t len) {
    return softmax_row_body(y, x, len, false, true);
}

// softmax: gx = y (gy - sum(gy y));  log-softmax: gx = gy - exp(y) sum(gy). gx may be gy.
static void softmax_backward_row(float *gx, const float *gy, const float *y, int64_t len,
                                 bool as_log) {
    dvec acc[2] = {0};
    for (int64_t i = 0; i < len; i += VEC) {
        int64_t n = row_lanes(len, i);
        vec g = row_load(gy + i, n, 0);
        row_accumulate(acc, as_log ? g : g * row_load(y + i, n, 0));
    }
    float d = (float)row_total(acc);
    for (int64_t i = 0; i < len; i += VEC) {
        int64_t n = row_lanes(len, i);
        vec g = row_load(gy + i, n, 0), yv = row_load(y + i, n, 0);
        row_store(gx + i, n, as_log ? g - vec_exp(yv) * d : yv * (g - d));
    }
}
