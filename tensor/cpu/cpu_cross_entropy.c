// Cross-entropy of logits (N, C) against class targets (N), one loss per row.
//
// With label smoothing e over C classes the target distribution is (1 - e) onehot(y) + e / C, so
//   loss = lse - (1 - e) x_y - (e / C) sum_c x_c,   lse = log sum_c exp(x_c)
//   dloss/dx_c = softmax_c - (1 - e) [c == y] - e / C
// Rows whose target is ignore_index have loss 0 and gradient 0.
#include <inttypes.h>
#include <math.h>

#include "tensor/cpu/cpu_iter.h"
#include "tensor/cpu/cpu_kernels.h"
#include "tensor/error.h"

static int64_t checked_target(const tensor *target, int64_t row, int64_t classes,
                              int64_t ignore_index) {
    int64_t y = cpu_index_at(target, row);
    PETAL_CHECK(y == ignore_index || (y >= 0 && y < classes),
                "cross_entropy: target[%" PRId64 "] = %" PRId64 " is outside [0, %" PRId64
                ") and is not ignore_index (%" PRId64 ")",
                row, y, classes, ignore_index);
    return y;
}

#define CROSS_ENTROPY_DEFINE(T, S, EXP)                                                            \
    static void cross_entropy_##S(T *loss, T *lse, const T *x, const tensor *target, int64_t n,    \
                                  int64_t c, int64_t ignore, double eps) {                         \
        _Pragma("omp parallel for if (n * c >= CPU_PARALLEL_GRAIN)") for (int64_t i = 0; i < n;    \
                                                                          i++) {                   \
            const T *row = x + i * c;                                                              \
            int64_t y = checked_target(target, i, c, ignore);                                      \
            T m = row[0];                                                                          \
            for (int64_t j = 1; j < c; j++) m = row[j] > m ? row[j] : m;                           \
            double sum = 0, total = 0;                                                             \
            for (int64_t j = 0; j < c; j++) {                                                      \
                sum += EXP(row[j] - m);                                                            \
                total += row[j];                                                                   \
            }                                                                                      \
            double l = (double)m + log(sum);                                                       \
            lse[i] = (T)l;                                                                         \
            loss[i] = y == ignore ? (T)0 : (T)(l - (1 - eps) * row[y] - eps / (double)c * total);  \
        }                                                                                          \
    }                                                                                              \
    static void cross_entropy_backward_##S(T *gx, const T *gloss, const T *x, const T *lse,        \
                                           const tensor *target, int64_t n, int64_t c,             \
                                           int64_t ignore, double eps) {                           \
        _Pragma("omp parallel for if (n * c >= CPU_PARALLEL_GRAIN)") for (int64_t i = 0; i < n;    \
                                                                          i++) {                   \
            int64_t y = cpu_index_at(target, i);                                                   \
            T g = y == ignore ? (T)0 : gloss[i], off = (T)(eps / (double)c);                       \
            for (int64_t j = 0; j < c; j++) {                                                      \
                T p = EXP(x[i * c + j] - lse[i]);                                                  \
                gx[i * c + j] = g * (p - off - (j == y ? (T)(1 - eps) : (T)0));                    \
            }                                                                                      \
        }                                                                                          \
    }
CROSS_ENTROPY_DEFINE(float, f32, ew_expf)
CROSS_ENTROPY_DEFINE(double, f64, exp)

void cpu_cross_entropy(tensor *loss, tensor *lse, const tensor *logits, const tensor *target,
                       int64_t ignore_index, double smoothing) {
    int64_t n = logits->shape[0], c = logits->shape[1];
    if (logits->dtype == PETAL_F32)
        cross_entropy_f32(tensor_data_f32(loss), tensor_data_f32(lse), tensor_data_f32(logits),
                          target, n, c, ignore_index, smoothing);
    else
        cross_entropy_f64(tensor_data_f64(loss), tensor_data_f64(lse), tensor_data_f64(logits),
                          target, n, c, ignore_index, smoothing);
}

void cpu_cross_entropy_backward(tensor *glogits, const tensor *gloss, const tensor *logits,
                                const tensor *lse, const tensor *target, int64_t ignore_index,
                                double smoothing) {
    int64_t n = logits->shape[0], c = logits->shape[1];
    if (logits->dtype == PETAL_F32)
        cross_entropy_backward_f32(tensor_data_f32(glogits), tensor_data_f32(gloss),
                                   tensor_data_f32(logits), tensor_data_f32(lse), target, n, c,
                                   ignore_index, smoothing);
    else
        cross_entropy_backward_f64(tensor_data_f64(glogits), tensor_data_f64(gloss),
                                   tensor_data_f64(logits), tensor_data_f64(lse), target, n, c,
                                   ignore_index, smoothing);
}
