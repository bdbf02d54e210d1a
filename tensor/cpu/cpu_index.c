// Indexing kernels over contiguous tensors seen as (outer, len, inner) around `dim`:
//   index_select: out[a, l, c] = x[a, idx[l], c]        index_add:   out[a, idx[l], c] += src[a, l,
//   c] gather:       out[a, l, c] = x[a, idx[a, l, c], c]   scatter_add: out[a, idx[a, l, c], c] +=
//   src[a, l, c]
// Every index is checked; a bad one aborts with its position and value.
#include <inttypes.h>
#include <string.h>

#include "tensor/cpu/cpu_iter.h"
#include "tensor/cpu/cpu_kernels.h"
#include "tensor/error.h"

static int64_t checked_index(const char *op, const tensor *idx, int64_t pos, int64_t size) {
    int64_t i = cpu_index_at(idx, pos);
    PETAL_CHECK(i >= 0 && i < size,
                "%s: index %" PRId64 " at position %" PRId64 " is out of range [0, %" PRId64 ")",
                op, i, pos, size);
    return i;
}

void cpu_index_select(tensor *out, const tensor *x, int dim, const tensor *idx) {
    int64_t outer, len, inner, n_idx = tensor_numel(idx);
    cpu_split_dim(x, dim, &outer, &len, &inner);
    size_t es = dtype_size(x->dtype), row = (size_t)inner * es;
    const char *src = tensor_data(x);
    char *dst = tensor_data(out);
#pragma omp parallel for collapse(2) if (outer * n_idx * inner >= CPU_PARALLEL_GRAIN)
    for (int64_t a = 0; a < outer; a++)
        for (int64_t l = 0; l < n_idx; l++) {
            int64_t i = checked_index("index_select", idx, l, len);
            memcpy(dst + ((size_t)(a * n_idx + l)) * row, src + ((size_t)(a * len + i)) * row, row);
        }
}

#define ACCUMULATE_DEFINE(T, S)                                                                    \
    static void add_row_##S(T *dst, const T *src, int64_t n) {                                     \
        for (int64_t c = 0; c < n; c++) dst[c] += src[c];                                          \
    }
ACCUMULATE_DEFINE(float, f32)
ACCUMULATE_DEFINE(double, f64)

static void add_row(petal_dtype dt, char *dst, const char *src, int64_t n) {
    if (dt == PETAL_F32)
        add_row_f32((float *)dst, (const float *)src, n);
    else
        add_row_f64((double *)dst, (const double *)src, n);
}

void cpu_index_add(tensor *out, int dim, const tensor *idx, const tensor *src) {
    int64_t outer, len, inner, n_idx = tensor_numel(idx);
    cpu_split_dim(out, dim, &outer, &len, &inner);
    PETAL_CHECK(dtype_is_float(out->dtype), "index_add: dtype %s is not supported",
                dtype_name(out->dtype));
    for (int64_t l = 0; l < n_idx; l++) checked_index("index_add", idx, l, len);
    size_t es = dtype_size(out->dtype);
    char *dst = tensor_data(out);
    const char *s = tensor_data(src);
    // Threads own disjoint column blocks, so repeated indices never race.
    const int64_t block = 256;
    int64_t n_blocks = (inner + block - 1) / block;
#pragma omp parallel for collapse(2) if (outer * n_idx * inner >= CPU_PARALLEL_GRAIN)
    for (int64_t a = 0; a < outer; a++)
        for (int64_t cb = 0; cb < n_blocks; cb++) {
            int64_t c0 = cb * block, w = inner - c0 < block ? inner - c0 : block;
            for (int64_t l = 0; l < n_idx; l++) {
                int64_t i = cpu_index_at(idx, l);
                add_row(out->dtype, dst + ((size_t)((a * len + i) * inner + c0)) * es,
                        s + ((size_t)((a * n_idx + l) * inner + c0)) * es, w);
            }
        }
}

void cpu_gather(tensor *out, const tensor *x, int dim, const tensor *idx) {
    int64_t outer, len, inner, n_len;
    cpu_split_dim(x, dim, &outer, &len, &inner);
    n_len = idx->shape[dim];
    size_t es = dtype_size(x->dtype);
    const char *src = tensor_data(x);
    char *dst = tensor_data(out);
#pragma omp parallel for if (tensor_numel(idx) >= CPU_PARALLEL_GRAIN)
    for (int64_t p = 0; p < tensor_numel(idx); p++) {
        int64_t a = p / (n_len * inner), c = p % inner;
        int64_t i = checked_index("gather", idx, p, len);
        memcpy(dst + (size_t)p * es, src + ((size_t)((a * len + i) * inner + c)) * es, es);
    }
}

void cpu_scatter_add(tensor *out, int dim, const tensor *idx, const tensor *src) {
    int64_t outer, len, inner, n_len;
    cpu_split_dim(out, dim, &outer, &len, &inner);
    PETAL_CHECK(dtype_is_float(out->dtype), "scatter_add: dtype %s is not supported",
                dtype_name(out->dtype));
    n_len = idx->shape[dim];
    for (int64_t p = 0; p < tensor_numel(idx); p++) checked_index("scatter_add", idx, p, len);
        // Threads own disjoint (a, c) columns; within a column the adds run in index order.
#pragma omp parallel for if (tensor_numel(idx) >= CPU_PARALLEL_GRAIN)
    for (int64_t ac = 0; ac < outer * inner; ac++) {
        int64_t a = ac / inner, c = ac % inner;
        for (int64_t l = 0; l < n_len; l++) {
            int64_t p = (a * n_len + l) * inner + c, i = cpu_index_at(idx, p);
            int64_t q = (a * len + i) * inner + c;
            if (out->dtype == PETAL_F32)
                tensor_data_f32(out)[q] += tensor_data_f32(src)[p];
            else
                tensor_data_f64(out)[q] += tensor_data_f64(src)[p];
        }
    }
}
