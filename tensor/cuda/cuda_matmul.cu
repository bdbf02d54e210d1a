// c = alpha * a @ b + beta * c through cuBLAS: the plan of tensor/matmul_plan.h (transposes, batch
// folding: the same decisions as the CPU's OpenBLAS path) run as cublasGemmStridedBatchedEx calls.
//
// cuBLAS is column-major: the row-major product c = a b is the column-major product c^T = b^T a^T,
// and a row-major matrix with leading dimension ld is its own transpose seen column-major with
// the same ld. So the call swaps a and b (and m and n) and keeps each operand's transpose flag.
// Batch entries whose offsets step evenly in all three operands go in one strided-batched call;
// a batch whose strides do not (the (B, H) output of attention stored as (B, T, H, D)) takes one
// call per run of such entries. f64 is computed in f64; f32 in the precision backend_matmul passes
// (tensor/precision.h): F32 in IEEE f32 (no TF32), TF32 with CUBLAS_COMPUTE_32F_FAST_TF32 on the
// f32 operands, BF16 on bf16 copies of the operands (CUDA_R_16BF in, f32 accumulation, CUDA_R_32F
// out). The bf16 copies are rounded by dtype_convert.h's f32_to_bf16, whose bits the CPU's
// emulation of the mode (tensor/cpu/cpu_matmul.c, f32_round_bf16) reproduces (checked on the CPU by
// tests/tensor/test_precision.c), and keep each operand's layout (matmul_operand_span), so the plan
// is the one the f32 operands get.
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

static cudaDataType blas_type(petal_dtype dtype) {
    return dtype == PETAL_F64 ? CUDA_R_64F : (dtype == PETAL_BF16 ? CUDA_R_16BF : CUDA_R_32F);
}

static cublasComputeType_t blas_compute(petal_dtype c_dtype, petal_precision precision) {
    if (c_dtype == PETAL_F64) return CUBLAS_COMPUTE_64F;
    return precision == PETAL_PRECISION_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

// dst[i] = src[i] rounded to bf16, over an operand's span.
__global__ void round_bf16_kernel(uint16_t *dst, const float *src, int64_t n) {
    CUDA_FOR_EACH(i, n) dst[i] = f32_to_bf16(src[i]);
}

tensor *cuda_bf16_operand(const tensor *t, cudaStream_t stream) {
    int64_t first, count;
    tensor *r = matmul_operand_span(t, PETAL_BF16, &first, &count);
    cuda_launch(round_bf16_kernel, dim3(cuda_blocks(count)), dim3(CUDA_THREADS), 0, stream,
                (uint16_t *)r->storage->data, (const float *)t->storage->data + first, count);
    return r;
}

// Element `offset` of t's storage.
static const char *element_at(const tensor *t, long long offset) {
    return (const char *)t->storage->data + offset * (long long)dtype_size(t->dtype);
}

// `count` entries from `first`, the operands stepping by `stride` elements (each in its dtype).
static void gemm_run(const matmul_plan *p, const tensor *a, const tensor *b, tensor *c,
                     double alpha, double beta, petal_precision precision, batch_offsets first,
                     batch_offsets stride, int64_t count) {
    char msg[512];
    PETAL_CHECK(cuda_gemm_sizes_fit(p, count, a, b, c, msg, sizeof msg), "%s", msg);
    bool f32 = c->dtype == PETAL_F32;
    float alpha32 = (float)alpha, beta32 = (float)beta;
    CUBLAS_CHECK(cuda_cublas.GemmStridedBatchedEx(
        cuda_blas_handle(c->device.index), blas_op(p->trans_b), blas_op(p->trans_a), (int)p->n,
        (int)p->m, (int)p->k, f32 ? (const void *)&alpha32 : (const void *)&alpha,
        element_at(b, first.b), blas_type(b->dtype), (int)p->ldb, stride.b, element_at(a, first.a),
        blas_type(a->dtype), (int)p->lda, stride.a,
        f32 ? (const void *)&beta32 : (const void *)&beta, (char *)element_at(c, first.c),
        blas_type(c->dtype), (int)p->ldc, stride.c, (int)count, blas_compute(c->dtype, precision),
        CUBLAS_GEMM_DEFAULT));
}

// Runs of entries whose offsets are evenly spaced in a, b and c, each in one call.
static void gemm_batch(const matmul_plan *p, const tensor *a, const tensor *b, tensor *c,
                       double alpha, double beta, petal_precision precision) {
    cudaStream_t stream = cuda_stream_for("matmul", {c, a, b}); // c's device current, checks
    if (precision == PETAL_PRECISION_BF16 && c->dtype == PETAL_F32) {
        tensor *ra = cuda_bf16_operand(a, stream), *rb = cuda_bf16_operand(b, stream);
        gemm_batch(p, ra, rb, c, alpha, beta, PETAL_PRECISION_F32);
        tensor_free(ra);
        tensor_free(rb);
        return;
    }
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
        gemm_run(p, a, b, c, alpha, beta, precision, first, stride, count);
        start += count;
    }
}

void cuda_matmul(tensor *c, const tensor *a, const tensor *b, double alpha, double beta,
                 petal_precision precision) {
    PETAL_CHECK(dtype_is_float(c->dtype), "matmul: dtype %s is not supported",
                dtype_name(c->dtype));
    matmul_run(gemm_batch, c, a, b, alpha, beta, precision);
}
