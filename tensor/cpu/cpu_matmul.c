// c = alpha * a @ b + beta * c through OpenBLAS, over the last two dims with broadcast batch dims.
//
// Operands reach BLAS through their strides: a row-major or a transposed (column-major) matrix is
// passed as is, with the matching transpose flag, so x @ W^T never copies W. Only a matrix whose
// strides are neither (e.g. a slice with a step in both dims) is copied first.
#include <cblas.h>
#include <string.h>

#include "tensor/cpu/cpu_iter.h"
#include "tensor/cpu/cpu_kernels.h"
#include "tensor/error.h"
#include "tensor/view.h"

#ifdef _OPENMP
#include <omp.h>
#endif

// How BLAS sees the last two dims of an operand.
typedef struct {
    CBLAS_TRANSPOSE trans;
    int64_t ld;
} blas_layout;

static bool blas_layout_of(const tensor *t, blas_layout *out) {
    int64_t rows = t->shape[t->ndim - 2], cols = t->shape[t->ndim - 1];
    int64_t rs = t->strides[t->ndim - 2], cs = t->strides[t->ndim - 1];
    if ((cs == 1 || cols == 1) && (rs >= (cols > 1 ? cols : 1) || rows == 1)) {
        *out = (blas_layout){CblasNoTrans, rows == 1 ? (cols > 1 ? cols : 1) : rs};
        return true;
    }
    if ((rs == 1 || rows == 1) && (cs >= (rows > 1 ? rows : 1) || cols == 1)) {
        *out = (blas_layout){CblasTrans, cols == 1 ? (rows > 1 ? rows : 1) : cs};
        return true;
    }
    return false;
}

// Per-operand element offset of each batch entry of c, with broadcasting (stride 0 on size-1 dims).
static int64_t batch_offset(const tensor *t, const tensor *c, int64_t batch) {
    int nb_c = c->ndim - 2, nb_t = t->ndim - 2;
    int64_t off = t->offset;
    for (int d = nb_c - 1; d >= 0; d--) {
        int64_t i = batch % c->shape[d];
        batch /= c->shape[d];
        int td = d - (nb_c - nb_t);
        if (td >= 0 && t->shape[td] != 1) off += i * t->strides[td];
    }
    return off;
}

typedef struct {
    CBLAS_TRANSPOSE ta, tb;
    int64_t m, n, k, lda, ldb, ldc;
    double alpha, beta;
} gemm_args;

static void gemm(const gemm_args *g, petal_dtype dt, const void *a, const void *b, void *c) {
    if (dt == PETAL_F32)
        cblas_sgemm(CblasRowMajor, g->ta, g->tb, (int)g->m, (int)g->n, (int)g->k, (float)g->alpha,
                    a, (int)g->lda, b, (int)g->ldb, (float)g->beta, c, (int)g->ldc);
    else
        cblas_dgemm(CblasRowMajor, g->ta, g->tb, (int)g->m, (int)g->n, (int)g->k, g->alpha, a,
                    (int)g->lda, b, (int)g->ldb, g->beta, c, (int)g->ldc);
}

// Batch entry i of c = a @ b.
static void gemm_entry(const gemm_args *g, const tensor *a, const tensor *b, tensor *c, int64_t i) {
    size_t es = dtype_size(c->dtype);
    gemm(g, c->dtype, (char *)a->storage->data + batch_offset(a, c, i) * es,
         (char *)b->storage->data + batch_offset(b, c, i) * es,
         (char *)c->storage->data + batch_offset(c, c, i) * es);
}

// True when the batch dims of a and c fold into their row dim (one tall GEMM) because b is the
// same matrix for every batch entry: the x @ W^T of every Linear layer.
static bool folds_into_rows(const tensor *a, const tensor *b, const tensor *c) {
    for (int d = 0; d < b->ndim - 2; d++)
        if (b->shape[d] != 1) return false;
    if (a->ndim != c->ndim || a->strides[a->ndim - 1] != 1) return false;
    for (const tensor *t = a;; t = c) {
        for (int d = 0; d < t->ndim - 2; d++)
            if (t->shape[d] != 1 && t->strides[d] != t->shape[d + 1] * t->strides[d + 1])
                return false;
        if (t == c) break;
    }
    return true;
}

static void matmul_strided(tensor *c, const tensor *a, const tensor *b, double alpha, double beta) {
    blas_layout la, lb, lc;
    PETAL_CHECK(blas_layout_of(a, &la) && blas_layout_of(b, &lb), "matmul: unexpected strides");
    PETAL_CHECK(blas_layout_of(c, &lc) && lc.trans == CblasNoTrans,
                "matmul: the output must be row-major in its last two dims");
    gemm_args g = {la.trans,
                   lb.trans,
                   c->shape[c->ndim - 2],
                   c->shape[c->ndim - 1],
                   a->shape[a->ndim - 1],
                   la.ld,
                   lb.ld,
                   lc.ld,
                   alpha,
                   beta};
    int64_t batch = tensor_numel(c) / (g.m * g.n);
    if (batch > 1 && la.trans == CblasNoTrans && folds_into_rows(a, b, c)) {
        g.m *= batch;
        gemm_entry(&g, a, b, c, 0);
        return;
    }
    // Many small products (attention heads): one single-threaded GEMM per thread beats a
    // multi-threaded BLAS call on each. Large products: let BLAS use every thread. (BLAS is
    // never called inside an inactive `parallel if(0)` region: libgomp would then start a fresh
    // nested team for BLAS on every call.)
    bool small = (double)g.m * (double)g.n * (double)g.k <= 64.0 * 64 * 64 * 16;
#ifdef _OPENMP
    if (small && batch >= omp_get_max_threads() && omp_get_max_threads() > 1) {
#pragma omp parallel for
        for (int64_t i = 0; i < batch; i++) gemm_entry(&g, a, b, c, i);
        return;
    }
#endif
    for (int64_t i = 0; i < batch; i++) gemm_entry(&g, a, b, c, i);
}

void cpu_matmul(tensor *c, const tensor *a, const tensor *b, double alpha, double beta) {
    if (tensor_numel(c) == 0) return;
    if (a->shape[a->ndim - 1] == 0) { // an empty sum: c = beta * c
        if (beta == 0)
            cpu_fill(c, 0.0);
        else
            cpu_unary(UNARY_MUL_SCALAR, c, c, beta, 0);
        return;
    }
    blas_layout unused;
    tensor *ac = blas_layout_of(a, &unused) ? NULL : tensor_clone_data(a);
    tensor *bc = blas_layout_of(b, &unused) ? NULL : tensor_clone_data(b);
    matmul_strided(c, ac ? ac : a, bc ? bc : b, alpha, beta);
    tensor_free(ac);
    tensor_free(bc);
}
