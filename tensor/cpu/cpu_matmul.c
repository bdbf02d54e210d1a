// c = alpha * a @ b + beta * c through OpenBLAS: the plan of tensor/matmul_plan.h (transposes,
// batch folding) run as cblas_sgemm / cblas_dgemm calls.
//
// Under TF32 or BF16 (tensor/precision.h) the f32 operands are rounded into scratch copies first
// and the same sgemm runs on them: a product of two bf16 (or TF32) values is exact in f32, so this
// is what a GPU's bf16 / TF32 GEMM computes, up to the order of the f32 additions.
#include <cblas.h>

#include "tensor/blas.h"
#include "tensor/cpu/cpu_iter.h"
#include "tensor/cpu/cpu_kernels.h"
#include "tensor/matmul_plan.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static CBLAS_TRANSPOSE blas_trans(bool trans) {
    return trans ? CblasTrans : CblasNoTrans;
}

// Products under SMALL_GEMM multiply-adds each run on one thread (OpenBLAS takes its thread count
// from OpenMP's at each call): inside a training step, where the second thread has gone to sleep
// between products, waking it costs more than such a product takes (the rank-32 core products of
// Aurora's released code ran twice as long on two threads as on one). Returns the team size to
// restore with blas_restore_team, or 0.
#define SMALL_GEMM 4e6

static int blas_alone_if_small(double each) {
#ifdef _OPENMP
    int team = omp_get_max_threads();
    if (team > 1 && each < SMALL_GEMM) {
        omp_set_num_threads(1);
        return team;
    }
#endif
    (void)each;
    return 0;
}

static void blas_restore_team(int team) {
#ifdef _OPENMP
    if (team) omp_set_num_threads(team);
#endif
    (void)team;
}

// Batch entry i of c = a @ b.
static void gemm_entry(const matmul_plan *p, const tensor *a, const tensor *b, tensor *c,
                       double alpha, double beta, int64_t i) {
    size_t es = dtype_size(c->dtype);
    const void *pa = (char *)a->storage->data + matmul_batch_offset(a, c, i) * es;
    const void *pb = (char *)b->storage->data + matmul_batch_offset(b, c, i) * es;
    void *pc = (char *)c->storage->data + matmul_batch_offset(c, c, i) * es;
    CBLAS_TRANSPOSE ta = blas_trans(p->trans_a), tb = blas_trans(p->trans_b);
    // Rank-R products go to petal's own kernels (cpu_gemm_narrow.h); not inside the batched
    // parallel loop below, where they would allocate their packing buffers from many threads.
    if (c->dtype == PETAL_F32 && p->batch == 1 &&
        cpu_sgemm_narrow(p->trans_a, p->trans_b, p->m, p->n, p->k, (float)alpha, pa, p->lda, pb,
                         p->ldb, (float)beta, pc, p->ldc))
        return;
    if (c->dtype == PETAL_F32)
        cblas_sgemm(CblasRowMajor, ta, tb, (int)p->m, (int)p->n, (int)p->k, (float)alpha, pa,
                    (int)p->lda, pb, (int)p->ldb, (float)beta, pc, (int)p->ldc);
    else
        cblas_dgemm(CblasRowMajor, ta, tb, (int)p->m, (int)p->n, (int)p->k, alpha, pa, (int)p->lda,
                    pb, (int)p->ldb, beta, pc, (int)p->ldc);
}

// Operand t with each element rounded to `precision`, laid out as t (matmul_operand_span).
static tensor *rounded_operand(const tensor *t, petal_precision precision) {
    int64_t first, count;
    tensor *r = matmul_operand_span(t, PETAL_F32, &first, &count);
    const float *src = (const float *)t->storage->data + first;
    float *dst = r->storage->data;
    bool bf16 = precision == PETAL_PRECISION_BF16;
#pragma omp parallel for if (count >= CPU_PARALLEL_GRAIN)
    for (int64_t i = 0; i < count; i++)
        dst[i] = bf16 ? f32_round_bf16(src[i]) : f32_round_tf32(src[i]);
    return r;
}

static void gemm_batch(const matmul_plan *p, const tensor *a, const tensor *b, tensor *c,
                       double alpha, double beta, petal_precision precision) {
    if (precision != PETAL_PRECISION_F32 && c->dtype == PETAL_F32) {
        tensor *ra = rounded_operand(a, precision), *rb = rounded_operand(b, precision);
        gemm_batch(p, ra, rb, c, alpha, beta, PETAL_PRECISION_F32);
        tensor_free(ra);
        tensor_free(rb);
        return;
    }
    // Many small products (attention heads): one single-threaded GEMM per thread beats a
    // multi-threaded BLAS call on each. Large products: let BLAS use every thread. (BLAS is
    // never called inside an inactive `parallel if(0)` region: libgomp would then start a fresh
    // nested team for BLAS on every call.)
    double each = (double)p->m * (double)p->n * (double)p->k;
    bool small = each <= 64.0 * 64 * 64 * 16;
    // Below ~a quarter million multiply-adds in all, waking the team costs more than it saves.
    bool worth_threads = each * (double)p->batch >= 262144.0;
#ifdef _OPENMP
    if (small && worth_threads && p->batch >= omp_get_max_threads() && omp_get_max_threads() > 1) {
#pragma omp parallel for
        for (int64_t i = 0; i < p->batch; i++) gemm_entry(p, a, b, c, alpha, beta, i);
        return;
    }
#endif
    int team = blas_alone_if_small(each);
    for (int64_t i = 0; i < p->batch; i++) gemm_entry(p, a, b, c, alpha, beta, i);
    blas_restore_team(team);
}

void cpu_matmul(tensor *c, const tensor *a, const tensor *b, double alpha, double beta,
                petal_precision precision) {
    blas_core_warn_once();
    matmul_run(gemm_batch, c, a, b, alpha, beta, precision);
}
