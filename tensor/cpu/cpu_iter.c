#include "tensor/cpu/cpu_iter.h"

#include <string.h>

#include "tensor/error.h"

#ifdef _OPENMP
#include <omp.h>
#endif

void cpu_iter_build(cpu_iter *it, int n_ops, const tensor *const *ops) {
    PETAL_CHECK(n_ops >= 1 && n_ops <= CPU_ITER_MAX_OPS, "cpu_iter: %d operands", n_ops);
    const tensor *out = ops[0];
    int64_t full[CPU_ITER_MAX_OPS][PETAL_MAX_DIMS];
    for (int k = 0; k < n_ops; k++) {
        const tensor *t = ops[k];
        int lead = out->ndim - t->ndim;
        PETAL_CHECK(lead >= 0, "cpu_iter: operand %d has more dims than the output", k);
        size_t es = dtype_size(t->dtype);
        for (int d = 0; d < out->ndim; d++) {
            int64_t size = d < lead ? 1 : t->shape[d - lead];
            PETAL_CHECK(size == out->shape[d] || size == 1,
                        "cpu_iter: operand %d does not broadcast to the output", k);
            bool repeat = d < lead || (size == 1 && out->shape[d] != 1);
            full[k][d] = repeat ? 0 : t->strides[d - lead] * (int64_t)es;
        }
        it->data[k] = (char *)t->storage->data + t->offset * (int64_t)es;
    }
    it->n_ops = n_ops;
    it->numel = tensor_numel(out);
    // Drop size-1 dims, then merge dim d into the following one when every operand steps over
    // dim d exactly as far as over the whole following dim.
    it->ndim = 0;
    for (int d = 0; d < out->ndim; d++) {
        if (out->shape[d] == 1) continue;
        int n = it->ndim;
        bool merge = n > 0;
        for (int k = 0; k < n_ops && merge; k++)
            merge = it->strides[k][n - 1] == full[k][d] * out->shape[d];
        if (merge) {
            it->shape[n - 1] *= out->shape[d];
            for (int k = 0; k < n_ops; k++) it->strides[k][n - 1] = full[k][d];
        } else {
            it->shape[n] = out->shape[d];
            for (int k = 0; k < n_ops; k++) it->strides[k][n] = full[k][d];
            it->ndim++;
        }
    }
    if (it->ndim == 0) { // a single element
        it->ndim = 1;
        it->shape[0] = 1;
        for (int k = 0; k < n_ops; k++) it->strides[k][0] = 0;
    }
}

// Runs elements [begin, end) of the iteration space in row-major order.
static void run_range(const cpu_iter *it, int64_t begin, int64_t end, cpu_span_fn fn,
                      const void *ctx) {
    int nd = it->ndim, inner = nd - 1;
    int64_t idx[PETAL_MAX_DIMS], rem = begin;
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = rem % it->shape[d];
        rem /= it->shape[d];
    }
    char *ptrs[CPU_ITER_MAX_OPS];
    int64_t inner_strides[CPU_ITER_MAX_OPS];
    for (int k = 0; k < it->n_ops; k++) inner_strides[k] = it->strides[k][inner];
    int64_t pos = begin;
    while (pos < end) {
        for (int k = 0; k < it->n_ops; k++) {
            ptrs[k] = it->data[k];
            for (int d = 0; d < nd; d++) ptrs[k] += idx[d] * it->strides[k][d];
        }
        int64_t n = it->shape[inner] - idx[inner];
        if (n > end - pos) n = end - pos;
        fn(n, ptrs, inner_strides, ctx);
        pos += n;
        idx[inner] += n;
        for (int d = inner; d > 0 && idx[d] == it->shape[d]; d--) {
            idx[d] = 0;
            idx[d - 1]++;
        }
    }
}

void cpu_iter_run(const cpu_iter *it, cpu_span_fn fn, const void *ctx) {
    int64_t numel = it->numel;
    if (numel == 0) return;
#ifdef _OPENMP
    if (numel >= CPU_PARALLEL_GRAIN && omp_get_max_threads() > 1 && !omp_in_parallel()) {
#pragma omp parallel
        {
            int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
            int64_t begin = numel * t / nt, end = numel * (t + 1) / nt;
            run_range(it, begin, end, fn, ctx);
        }
        return;
    }
#endif
    run_range(it, 0, numel, fn, ctx);
}
