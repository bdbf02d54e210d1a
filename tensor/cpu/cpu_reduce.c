// Reductions over one dim: sum, mean, max, min, logsumexp; arg-max/min; top-k.
//
// x is contiguous and seen as (outer, len, inner) around the reduced dim. Sums accumulate in double
// with a fixed order, so results do not depend on the thread count.
#include <math.h>
#include <stdlib.h>

#include "tensor/cpu/cpu_iter.h"
#include "tensor/cpu/cpu_kernels.h"
#include "tensor/error.h"

void cpu_split_dim(const tensor *x, int dim, int64_t *outer, int64_t *len, int64_t *inner) {
    *outer = *inner = 1;
    for (int d = 0; d < dim; d++) *outer *= x->shape[d];
    *len = x->shape[dim];
    for (int d = dim + 1; d < x->ndim; d++) *inner *= x->shape[d];
}

#define REDUCE_DEFINE(T, S, EXP, LOG)                                                              \
    /* One output: x[0], x[stride], ..., (len values). */                                          \
    static double reduce_one_##S(reduce_op op, const T *x, int64_t len, int64_t stride) {          \
        if (op == REDUCE_SUM || op == REDUCE_MEAN) {                                               \
            double acc[8] = {0};                                                                   \
            int64_t r = 0;                                                                         \
            for (; r + 8 <= len; r += 8)                                                           \
                for (int j = 0; j < 8; j++) acc[j] += x[(r + j) * stride];                         \
            for (; r < len; r++) acc[0] += x[r * stride];                                          \
            double s =                                                                             \
                ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])); \
            return op == REDUCE_MEAN ? s / (double)len : s;                                        \
        }                                                                                          \
        double best = x[0];                                                                        \
        for (int64_t r = 1; r < len && best == best; r++) {                                        \
            double v = x[r * stride];                                                              \
            bool better = op == REDUCE_MIN ? v < best : v > best;                                  \
            if (better || v != v) best = v;                                                        \
        }                                                                                          \
        if (op != REDUCE_LOGSUMEXP || isinf(best) || best != best) return best;                    \
        double s = 0;                                                                              \
        for (int64_t r = 0; r < len; r++) s += EXP((T)(x[r * stride] - best));                     \
        return best + LOG(s);                                                                      \
    }                                                                                              \
    /* Sums over a middle dim: blocks of COLS outputs advance together, reading rows in order. */  \
    static void sum_columns_##S(T *out, const T *x, int64_t outer, int64_t len, int64_t inner,     \
                                double scale) {                                                    \
        int64_t n_blocks = (inner + COLS - 1) / COLS;                                              \
        _Pragma(                                                                                   \
            "omp parallel for if (outer * len * inner >= CPU_PARALLEL_GRAIN)") for (int64_t ob =   \
                                                                                        0;         \
                                                                                    ob <           \
                                                                                    outer *        \
                                                                                        n_blocks;  \
                                                                                    ob++) {        \
            int64_t a = ob / n_blocks, c0 = (ob % n_blocks) * COLS;                                \
            int64_t w = inner - c0 < COLS ? inner - c0 : COLS;                                     \
            double acc[COLS] = {0};                                                                \
            const T *base = x + a * len * inner + c0;                                              \
            for (int64_t r = 0; r < len; r++)                                                      \
                for (int64_t j = 0; j < w; j++) acc[j] += base[r * inner + j];                     \
            for (int64_t j = 0; j < w; j++) out[a * inner + c0 + j] = (T)(acc[j] * scale);         \
        }                                                                                          \
    }                                                                                              \
    static void reduce_##S(reduce_op op, T *out, const T *x, int64_t outer, int64_t len,           \
                           int64_t inner) {                                                        \
        if (inner > 1 && (op == REDUCE_SUM || op == REDUCE_MEAN)) {                                \
            sum_columns_##S(out, x, outer, len, inner,                                             \
                            op == REDUCE_MEAN ? 1.0 / (double)len : 1.0);                          \
            return;                                                                                \
        }                                                                                          \
        int64_t n_out = outer * inner;                                                             \
        _Pragma("omp parallel for if (n_out * len >= CPU_PARALLEL_GRAIN && n_out > 1)") for (      \
            int64_t o = 0; o < n_out; o++) {                                                       \
            int64_t a = o / inner, c = o % inner;                                                  \
            out[o] = (T)reduce_one_##S(op, x + a * len * inner + c, len, inner);                   \
        }                                                                                          \
    }

#define COLS 64
REDUCE_DEFINE(float, f32, ew_expf, log)
REDUCE_DEFINE(double, f64, exp, log)

// A sum of many elements into one output: fixed-size blocks in parallel, then the block sums in
// order, so the result is the same for any thread count.
#define SUM_BLOCK 16384
static double sum_all(const tensor *x, int64_t len) {
    int64_t n_blocks = (len + SUM_BLOCK - 1) / SUM_BLOCK;
    double *partial = malloc((size_t)n_blocks * sizeof *partial);
    PETAL_CHECK(partial != NULL, "reduce: out of host memory");
#pragma omp parallel for if (len >= CPU_PARALLEL_GRAIN)
    for (int64_t b = 0; b < n_blocks; b++) {
        int64_t start = b * SUM_BLOCK, n = len - start < SUM_BLOCK ? len - start : SUM_BLOCK;
        partial[b] = x->dtype == PETAL_F32
                         ? reduce_one_f32(REDUCE_SUM, tensor_data_f32(x) + start, n, 1)
                         : reduce_one_f64(REDUCE_SUM, tensor_data_f64(x) + start, n, 1);
    }
    double s = 0;
    for (int64_t b = 0; b < n_blocks; b++) s += partial[b];
    free(partial);
    return s;
}

void cpu_reduce(reduce_op op, tensor *out, const tensor *x, int dim) {
    int64_t outer, len, inner;
    cpu_split_dim(x, dim, &outer, &len, &inner);
    PETAL_CHECK(len > 0 || op == REDUCE_SUM || op == REDUCE_MEAN,
                "reduce: max/min/logsumexp over an empty dim");
    if (outer * inner == 1 && len > 2 * SUM_BLOCK && (op == REDUCE_SUM || op == REDUCE_MEAN)) {
        double s = sum_all(x, len);
        tensor_fill_(out, op == REDUCE_MEAN ? s / (double)len : s);
        return;
    }
    if (x->dtype == PETAL_F32)
        reduce_f32(op, tensor_data_f32(out), tensor_data_f32(x), outer, len, inner);
    else
        reduce_f64(op, tensor_data_f64(out), tensor_data_f64(x), outer, len, inner);
}

// Element i of a contiguous f32/f64 tensor, as a double.
static inline double value_at(const tensor *x, int64_t i) {
    return x->dtype == PETAL_F32 ? (double)tensor_data_f32(x)[i] : tensor_data_f64(x)[i];
}

static inline void store_value(tensor *t, int64_t i, double v) {
    if (t->dtype == PETAL_F32)
        tensor_data_f32(t)[i] = (float)v;
    else
        tensor_data_f64(t)[i] = v;
}

void cpu_arg_reduce(reduce_op op, tensor *values, tensor *indices, const tensor *x, int dim) {
    int64_t outer, len, inner;
    cpu_split_dim(x, dim, &outer, &len, &inner);
    PETAL_CHECK(len > 0, "arg reduce over an empty dim");
    int64_t *ind = tensor_data_i64(indices);
#pragma omp parallel for if (outer * inner * len >= CPU_PARALLEL_GRAIN)
    for (int64_t o = 0; o < outer * inner; o++) {
        int64_t base = (o / inner) * len * inner + o % inner, best_r = 0;
        double best = value_at(x, base);
        for (int64_t r = 1; r < len && best == best; r++) {
            double v = value_at(x, base + r * inner);
            bool better = op == REDUCE_MIN ? v < best : v > best;
            if (better || v != v) {
                best = v;
                best_r = r;
            }
        }
        ind[o] = best_r;
        store_value(values, o, best);
    }
}

typedef struct {
    double value;
    int64_t index;
} ranked;

// Descending by value, NaN first (as the largest), ties by ascending index.
static int rank_desc(const void *pa, const void *pb) {
    const ranked *a = pa, *b = pb;
    bool na = a->value != a->value, nb = b->value != b->value;
    if (na != nb) return na ? -1 : 1;
    if (a->value != b->value && !na) return a->value > b->value ? -1 : 1;
    return a->index < b->index ? -1 : (a->index > b->index);
}

static int rank_asc(const void *pa, const void *pb) {
    const ranked *a = pa, *b = pb;
    bool na = a->value != a->value, nb = b->value != b->value;
    if (na != nb) return na ? 1 : -1;
    if (a->value != b->value && !na) return a->value < b->value ? -1 : 1;
    return a->index < b->index ? -1 : (a->index > b->index);
}

void cpu_topk(tensor *values, tensor *indices, const tensor *x, int64_t k, bool largest) {
    int64_t n = x->shape[x->ndim - 1], rows = tensor_numel(x) / (n ? n : 1);
    int64_t *ind = tensor_data_i64(indices);
#pragma omp parallel if (rows * n >= CPU_PARALLEL_GRAIN)
    {
        ranked *buf = malloc((size_t)(n ? n : 1) * sizeof *buf);
        PETAL_CHECK(buf != NULL, "topk: out of host memory");
#pragma omp for
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t i = 0; i < n; i++) {
                buf[i].value = value_at(x, r * n + i);
                buf[i].index = i;
            }
            qsort(buf, (size_t)n, sizeof *buf, largest ? rank_desc : rank_asc);
            for (int64_t j = 0; j < k; j++) {
                ind[r * k + j] = buf[j].index;
                store_value(values, r * k + j, buf[j].value);
            }
        }
        free(buf);
    }
}
