// Softmax and log-softmax along one dim of contiguous tensors, forward and backward.
// Rows are the `len` elements along the dim, `inner` apart; sums accumulate in double. f32 rows
// along the last dim (inner 1: attention's softmax) run the CPU path's vector row kernels
// (tensor/cpu/cpu_path_softmax.h); other dims and f64 run the loops below.
#include <math.h>

#include "tensor/cpu/cpu_iter.h"
#include "tensor/cpu/cpu_kernels.h"
#include "tensor/cpu/cpu_path.h"

// y = exp(x - m) along a row of len elements st apart: f32 through the CPU path's vector exp
// (attention's softmax is the largest exp of a ViT block), f64 with libm.
static void exp_shifted_f32(float *y, const float *x, int64_t len, int64_t st, float m) {
    for (int64_t r = 0; r < len; r++) y[r * st] = x[r * st] - m;
    char *p[2] = {(char *)y, (char *)y};
    const int64_t bytes[2] = {st * (int64_t)sizeof(float), st * (int64_t)sizeof(float)};
    cpu_path_kernels_active()->unary_f32[UNARY_EXP](len, p, bytes, NULL);
}

static void exp_shifted_f64(double *y, const double *x, int64_t len, int64_t st, double m) {
    for (int64_t r = 0; r < len; r++) y[r * st] = exp(x[r * st] - m);
}

#define SOFTMAX_DEFINE(T, S, EXP, LOG)                                                             \
    static void softmax_row_##S(T *y, const T *x, int64_t len, int64_t st, bool as_log) {          \
        T m = x[0];                                                                                \
        for (int64_t r = 1; r < len; r++) m = x[r * st] > m ? x[r * st] : m;                       \
        if (isinf(m) && m < 0) m = 0; /* an all -inf row: keep exp(x - m) finite */                \
        /* exp into y first (vector code), then sum it in double */                                \
        exp_shifted_##S(y, x, len, st, m);                                                         \
        double acc[4] = {0};                                                                       \
        int64_t r = 0;                                                                             \
        for (; r + 4 <= len; r += 4)                                                               \
            for (int j = 0; j < 4; j++) acc[j] += y[(r + j) * st];                                 \
        for (; r < len; r++) acc[0] += y[r * st];                                                  \
        double sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);                                        \
        if (as_log) {                                                                              \
            T shift = m + (T)LOG(sum);                                                             \
            for (int64_t i = 0; i < len; i++) y[i * st] = x[i * st] - shift;                       \
        } else {                                                                                   \
            T inv = (T)(1.0 / sum);                                                                \
            for (int64_t i = 0; i < len; i++) y[i * st] *= inv;                                    \
        }                                                                                          \
    }                                                                                              \
    /* softmax: gx = y (gy - sum(gy y));  log-softmax: gx = gy - exp(y) sum(gy) */                 \
    static void softmax_backward_row_##S(T *gx, const T *gy, const T *y, int64_t len, int64_t st,  \
                                         bool as_log) {                                            \
        double dot = 0;                                                                            \
        for (int64_t r = 0; r < len; r++) dot += as_log ? gy[r * st] : gy[r * st] * y[r * st];     \
        T d = (T)dot;                                                                              \
        for (int64_t r = 0; r < len; r++)                                                          \
            gx[r * st] = as_log ? gy[r * st] - EXP(y[r * st]) * d : y[r * st] * (gy[r * st] - d);  \
    }
SOFTMAX_DEFINE(float, f32, ew_expf, log)
SOFTMAX_DEFINE(double, f64, exp, log)

void cpu_softmax(tensor *y, const tensor *x, int dim, bool as_log) {
    // The scalar rows write exp(x - max) into y before log-softmax reads x again.
    PETAL_CHECK(!as_log || tensor_data(y) != tensor_data(x),
                "log_softmax: the output may not be the input (softmax may run in place)");
    int64_t outer, len, inner;
    cpu_split_dim(x, dim, &outer, &len, &inner);
    if (len == 0) return;
    cpu_softmax_row_fn path_row =
        x->dtype == PETAL_F32 && inner == 1 ? cpu_path_kernels_active()->softmax_row : NULL;
#pragma omp parallel for if (outer * len * inner >= CPU_PARALLEL_GRAIN)
    for (int64_t o = 0; o < outer * inner; o++) {
        int64_t base = (o / inner) * len * inner + o % inner;
        if (path_row)
            path_row(tensor_data_f32(y) + base, tensor_data_f32(x) + base, len, as_log);
        else if (x->dtype == PETAL_F32)
            softmax_row_f32(tensor_data_f32(y) + base, tensor_data_f32(x) + base, len, inner,
                            as_log);
        else
            softmax_row_f64(tensor_data_f64(y) + base, tensor_data_f64(x) + base, len, inner,
                            as_log);
    }
}

void cpu_softmax_backward(tensor *gx, const tensor *gy, const tensor *y, int dim, bool as_log) {
    int64_t outer, len, inner;
    cpu_split_dim(y, dim, &outer, &len, &inner);
    if (len == 0) return;
    cpu_softmax_backward_row_fn path_row = y->dtype == PETAL_F32 && inner == 1
                                               ? cpu_path_kernels_active()->softmax_backward_row
                                               : NULL;
#pragma omp parallel for if (outer * len * inner >= CPU_PARALLEL_GRAIN)
    for (int64_t o = 0; o < outer * inner; o++) {
        int64_t base = (o / inner) * len * inner + o % inner;
        if (path_row)
            path_row(tensor_data_f32(gx) + base, tensor_data_f32(gy) + base,
                     tensor_data_f32(y) + base, len, as_log);
        else if (y->dtype == PETAL_F32)
            softmax_backward_row_f32(tensor_data_f32(gx) + base, tensor_data_f32(gy) + base,
                                     tensor_data_f32(y) + base, len, inner, as_log);
        else
            softmax_backward_row_f64(tensor_data_f64(gx) + base, tensor_data_f64(gy) + base,
                                     tensor_data_f64(y) + base, len, inner, as_log);
    }
}
