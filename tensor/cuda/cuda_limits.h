// cuBLAS takes every size as an int: m, n, k, the leading dimensions and the batch count. petal's
// sizes are int64_t, and a cast of one beyond INT_MAX would hand cuBLAS a negative or wrapped
// size (a wrong product, or a fault) instead of an error. The check is plain C on the host, so
// tensor/cuda/cuda_matmul.cu calls it before each GEMM and the CPU suites test it
// (tests/cuda/test_cuda_host.c).
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tensor/matmul_plan.h"
#include "tensor/tensor.h"

// Whether every size of one cuBLAS GEMM call (the plan's m, n, k, leading dimensions, and `count`
// batch entries) fits an int. If one does not, writes into msg (cap bytes) the op, the operands'
// shapes and the first size that does not fit, e.g. "matmul: a [2147483648, 8] @ b [8, 4] -> c
// [2147483648, 4] needs a cuBLAS GEMM with m = 2147483648, more than INT_MAX (2147483647)".
static inline bool cuda_gemm_sizes_fit(const matmul_plan *p, int64_t count, const tensor *a,
                                       const tensor *b, const tensor *c, char *msg, size_t cap) {
    const struct {
        const char *name;
        int64_t value;
    } sizes[] = {{"m", p->m},     {"n", p->n},     {"k", p->k},           {"lda", p->lda},
                 {"ldb", p->ldb}, {"ldc", p->ldc}, {"batch count", count}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (sizes[i].value <= INT_MAX) continue;
        char sa[SHAPE_STR_MAX], sb[SHAPE_STR_MAX], sc[SHAPE_STR_MAX];
        snprintf(msg, cap,
                 "matmul: a %s @ b %s -> c %s needs a cuBLAS GEMM with %s = %lld, more than "
                 "INT_MAX (%d)",
                 shape_str(a->ndim, a->shape, sa, sizeof sa),
                 shape_str(b->ndim, b->shape, sb, sizeof sb),
                 shape_str(c->ndim, c->shape, sc, sizeof sc), sizes[i].name,
                 (long long)sizes[i].value, INT_MAX);
        return false;
    }
    return true;
}
