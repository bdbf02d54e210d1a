// c = alpha * a @ b + beta * c through cuBLAS: the plan of tensor/matmul_plan.h (transposes, batch
// folding: the same decisions as the CPU's OpenBLAS path) run as cublasGemmStridedBatchedEx calls.
//
// cuBLAS is column-major: the row-major product c = a b is the column-major product c^T = b^T a^T,
// and a row-major matrix with leading dimension ld is its own transpose seen column-major with
// the same ld. So the call swaps a and b (and m and n) and keeps each operand's transpose flag.
// Batch entries whose offsets step evenly in all three operands go in one strided-batched call;
// a batch whose strides do not (the (B, H) output of attention stored as (B, T, H, D)) takes one
// call per run of such entries. f32 is computed in f32 (no TF32), f64 in f64.
#include <stdlib.h>

#include "tensor/cuda/cuda_kernels.cuh"
extern "C" {
#include "tensor/cuda/cuda_limits.h"
#include "tensor/matmul_plan.h"
}

typedef struct {
    long long a, b, c;
} batch_offsets;

static batch_offsets offsets_of(const tensor *a, const tensor *b, const tensor *c, int64_t i) {
    return batch_offsets{matmul_batch_offset(a, c, i), matmul_batch_offset(b, c, i),
                         matmul_batch_offset(c, c, i)};
}

static cublasOperation_t blas_op(bool trans) {
    return trans ? CUBLAS_OP_T : CUBLAS_OP_N;
}

// `count` entries from `first`, the operands stepping by `stride` elements (in c's dtype).
static void gemm_run(const matmul_plan *p, const tensor *a, const tensor *b, tensor *c,
                     double alpha, double beta, batch_offsets first, batch_offsets stride,
                     int64_t count) {
    char msg[512];
    PETAL_CHECK(cuda_gemm_sizes_fit(p, count, a, b, c, msg, sizeof msg), "%s", msg);
    bool f32 = c->dtype == PETAL_F32;
    size_t es = dtype_size(c->dtype);
    float alpha32 = (float)alpha, beta32 = (float)beta;
    cudaDataType type = f32 ? CUDA_R_32F : CUDA_R_64F;
    CUBLAS_CHECK(cuda_cublas.GemmStridedBatchedEx(
        cuda_blas_handle(c->device.index), blas_op(p->trans_b), blas_op(p->trans_a), (int)p->n,
        (int)p->m, (int)p->k, f32 ? (const void *)&alpha32 : (const void *)&alpha,
        (const char *)b->storage->data + first.b * (long long)es, type, (int)p->ldb, stride.b,
        (const char *)a->storage->data + first.a * (long long)es, type, (int)p->lda, stride.a,
        f32 ? (const void *)&beta32 : (const void *)&beta,
        (char *)c->storage->data + first.c * (long long)es, type, (int)p->ldc, stride.c, (int)count,
        f32 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT));
}

// Runs of entries whose offsets are evenly spaced in a, b and c, each in one call.
static void gemm_batch(const matmul_plan *p, const tensor *a, const tensor *b, tensor *c,
                       double alpha, double beta) {
    cuda_stream_for("matmul", {c, a, b}); // makes c's device current, checks the others
    int64_t start = 0;
    while (start < p->batch) {
        batch_offsets first = offsets_of(a, b, c, start), stride = {0, 0, 0};
        int64_t count = 1;
        if (start + 1 < p->batch) {
            batch_offsets next = offsets_of(a, b, c, start + 1);
            stride = batch_offsets{next.a - first.a, next.b - first.b, next.c - first.c};
            for (; start + count < p->batch; count++) {
                batch_offsets o = offsets_of(a, b, c, start + count);
                if (o.a != first.a + count * stride.a || o.b != first.b + count * stride.b ||
                    o.c != first.c + count * stride.c)
                    break;
            }
        }
        gemm_run(p, a, b, c, alpha, beta, first, stride, count);
        start += count;
    }
}

void cuda_matmul(tensor *c, const tensor *a, const tensor *b, double alpha, double beta) {
    PETAL_CHECK(dtype_is_float(c->dtype), "matmul: dtype %s is not supported",
                dtype_name(c->dtype));
    matmul_run(gemm_batch, c, a, b, alpha, beta);
}
