// LayerNorm over the last dim, forward and backward (rows of contiguous tensors).
//
//   y = (x - mean) * rstd * w + b,  rstd = 1 / sqrt(var + eps)  (biased variance, as torch)
//   gx = rstd * (gxh - mean(gxh) - xh * mean(gxh * xh)),  xh = (x - mean) * rstd, gxh = gy * w
//   gw = sum_rows(gy * xh),  gb = sum_rows(gy)
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/cpu/cpu_iter.h"
#include "tensor/cpu/cpu_kernels.h"
#include "tensor/cpu/cpu_path.h"
#include "tensor/error.h"

#ifdef _OPENMP
#include <omp.h>
#endif

// The f64 rows; f32 rows run the CPU path's vector kernels (tensor/cpu/cpu_path_layer_norm.h).
static void layer_norm_row_f64(double *y, double *mean_out, double *rstd_out, const double *x,
                               const double *w, const double *b, int64_t d, double eps) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < d; i++) sum += x[i];
    double mean = sum / (double)d;
    for (int64_t i = 0; i < d; i++) sq += (x[i] - mean) * (x[i] - mean);
    double rstd = 1.0 / sqrt(sq / (double)d + eps);
    for (int64_t i = 0; i < d; i++) {
        double v = (x[i] - mean) * rstd;
        if (w) v *= w[i];
        if (b) v += b[i];
        y[i] = v;
    }
    *mean_out = mean;
    *rstd_out = rstd;
}

// gx for one row; adds this row's share of gw and gb into the accumulators.
static void layer_norm_backward_row_f64(double *gx, double *gw, double *gb, const double *gy,
                                        const double *x, double mean, double rstd, const double *w,
                                        int64_t d) {
    double s1 = 0, s2 = 0; // sum(gxh), sum(gxh * xh)
    for (int64_t i = 0; i < d; i++) {
        double xh = (x[i] - mean) * rstd, g = w ? gy[i] * w[i] : gy[i];
        s1 += g;
        s2 += g * xh;
        if (gw) gw[i] += gy[i] * xh;
        if (gb) gb[i] += gy[i];
    }
    if (!gx) return;
    double m1 = s1 / (double)d, m2 = s2 / (double)d;
    for (int64_t i = 0; i < d; i++) {
        double xh = (x[i] - mean) * rstd, g = w ? gy[i] * w[i] : gy[i];
        gx[i] = rstd * (g - m1 - xh * m2);
    }
}

// Typed pointer to the first element of an optional CPU tensor.
#define DATA_OR_NULL(t, S) ((t) ? tensor_data_##S(t) : NULL)

void cpu_layer_norm(tensor *y, tensor *mean, tensor *rstd, const tensor *x, const tensor *w,
                    const tensor *b, double eps) {
    int64_t d = x->shape[x->ndim - 1], rows = d ? tensor_numel(x) / d : 0;
    cpu_layer_norm_row_fn row_f32 = cpu_path_kernels_active()->layer_norm_row;
#pragma omp parallel for if (rows * d >= CPU_PARALLEL_GRAIN)
    for (int64_t r = 0; r < rows; r++) {
        if (x->dtype == PETAL_F32)
            row_f32(tensor_data_f32(y) + r * d, tensor_data_f32(mean) + r,
                    tensor_data_f32(rstd) + r, tensor_data_f32(x) + r * d, DATA_OR_NULL(w, f32),
                    DATA_OR_NULL(b, f32), d, eps);
        else
            layer_norm_row_f64(tensor_data_f64(y) + r * d, tensor_data_f64(mean) + r,
                               tensor_data_f64(rstd) + r, tensor_data_f64(x) + r * d,
                               DATA_OR_NULL(w, f64), DATA_OR_NULL(b, f64), d, eps);
    }
}

void cpu_layer_norm_backward(tensor *gx, tensor *gw, tensor *gb, const tensor *gy, const tensor *x,
                             const tensor *mean, const tensor *rstd, const tensor *w) {
    int64_t d = x->shape[x->ndim - 1], rows = d ? tensor_numel(x) / d : 0;
    int n_threads = 1;
#ifdef _OPENMP
    if (rows * d >= CPU_PARALLEL_GRAIN) n_threads = omp_get_max_threads();
#endif
    // Each thread accumulates gw and gb for its rows in its own slice; the slices are then added
    // in thread order, so the result is deterministic for a given thread count.
    cpu_layer_norm_backward_row_fn row_f32 = cpu_path_kernels_active()->layer_norm_backward_row;
    bool affine_grad = gw || gb;
    double *acc = affine_grad ? calloc((size_t)n_threads * 2 * (size_t)d, sizeof *acc) : NULL;
    PETAL_CHECK(!affine_grad || acc != NULL, "layer_norm backward: out of host memory");
#pragma omp parallel num_threads(n_threads)
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        double *tgw = gw ? acc + (size_t)t * 2 * d : NULL,
               *tgb = gb ? acc + ((size_t)t * 2 + 1) * d : NULL;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (x->dtype == PETAL_F32)
                row_f32(gx ? tensor_data_f32(gx) + r * d : NULL, tgw, tgb,
                        tensor_data_f32(gy) + r * d, tensor_data_f32(x) + r * d,
                        tensor_data_f32(mean)[r], tensor_data_f32(rstd)[r], DATA_OR_NULL(w, f32),
                        d);
            else
                layer_norm_backward_row_f64(gx ? tensor_data_f64(gx) + r * d : NULL, tgw, tgb,
                                            tensor_data_f64(gy) + r * d, tensor_data_f64(x) + r * d,
                                            tensor_data_f64(mean)[r], tensor_data_f64(rstd)[r],
                                            DATA_OR_NULL(w, f64), d);
        }
    }
    for (int which = 0; which < 2 && affine_grad; which++) {
        tensor *out = which == 0 ? gw : gb;
        if (!out) continue;
        for (int64_t i = 0; i < d; i++) {
            double s = 0;
            for (int t = 0; t < n_threads; t++) s += acc[((size_t)t * 2 + which) * d + i];
            if (out->dtype == PETAL_F32)
                tensor_data_f32(out)[i] = (float)s;
            else
                tensor_data_f64(out)[i] = s;
        }
    }
    free(acc);
}
