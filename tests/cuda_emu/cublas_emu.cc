// The host emulator's cuBLAS (cublas_api.h), built as libpetal_cublas_emu.so and opened by petal's
// own loader (tensor/cuda/cuda_libs.h) through PETAL_CUBLAS_LIBRARY. GEMMs run on OpenBLAS, one
// call per batch entry, after the checks cuBLAS makes (sizes, leading dimensions, types) and one
// a GPU makes: every matrix must lie in device memory of the current device, whole, or the GPU
// would fault. Which (A, B, C, compute) type combinations are supported is the table `gemm_kinds`:
// f32 and f64, TF32 (f32 inputs rounded to TF32) and bf16 inputs with f32 output and accumulation;
// the others return CUBLAS_STATUS_NOT_SUPPORTED.
#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "cublas_api.h"
#include "cublas_emu_gemm.h"
#include "cuda_emu_internal.h"
#include "tensor/dtype_convert.h"

struct cublasContext {
    cudaStream_t stream;
};

extern "C" cublasStatus_t cublasCreate_v2(cublasHandle_t *handle) {
    int device;
    if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
    if (cuda_emu_current_device(&device) != cudaSuccess) return CUBLAS_STATUS_NOT_INITIALIZED;
    *handle = new cublasContext{NULL};
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (cuda_emu_check_stream(stream) != cudaSuccess) return CUBLAS_STATUS_INVALID_VALUE;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

struct status_text {
    cublasStatus_t status;
    const char *name, *text;
};

static const status_text status_texts[] = {
    {CUBLAS_STATUS_SUCCESS, "CUBLAS_STATUS_SUCCESS", "success"},
    {CUBLAS_STATUS_NOT_INITIALIZED, "CUBLAS_STATUS_NOT_INITIALIZED",
     "the library was not initialized"},
    {CUBLAS_STATUS_ALLOC_FAILED, "CUBLAS_STATUS_ALLOC_FAILED", "the resource allocation failed"},
    {CUBLAS_STATUS_INVALID_VALUE, "CUBLAS_STATUS_INVALID_VALUE",
     "an invalid numeric value was used as an argument"},
    {CUBLAS_STATUS_ARCH_MISMATCH, "CUBLAS_STATUS_ARCH_MISMATCH",
     "an absent device architectural feature is required"},
    {CUBLAS_STATUS_MAPPING_ERROR, "CUBLAS_STATUS_MAPPING_ERROR",
     "an access to GPU memory space failed"},
    {CUBLAS_STATUS_EXECUTION_FAILED, "CUBLAS_STATUS_EXECUTION_FAILED",
     "the GPU program failed to execute"},
    {CUBLAS_STATUS_INTERNAL_ERROR, "CUBLAS_STATUS_INTERNAL_ERROR", "an internal operation failed"},
    {CUBLAS_STATUS_NOT_SUPPORTED, "CUBLAS_STATUS_NOT_SUPPORTED",
     "the functionality requested is not supported"},
    {CUBLAS_STATUS_LICENSE_ERROR, "CUBLAS_STATUS_LICENSE_ERROR",
     "there is an error with the license"},
};

extern "C" const char *cublasGetStatusName(cublasStatus_t status) {
    for (const status_text &s : status_texts)
        if (s.status == status) return s.name;
    return "CUBLAS_STATUS_UNKNOWN";
}

extern "C" const char *cublasGetStatusString(cublasStatus_t status) {
    for (const status_text &s : status_texts)
        if (s.status == status) return s.text;
    return "unknown error";
}

// ---- GEMM ----

static CBLAS_TRANSPOSE cblas_op(bool t) {
    return t ? CblasTrans : CblasNoTrans;
}

static void gemm_f32(bool ta, bool tb, int m, int n, int k, const void *alpha, const void *a,
                     int lda, const void *b, int ldb, const void *beta, void *c, int ldc) {
    cblas_sgemm(CblasColMajor, cblas_op(ta), cblas_op(tb), m, n, k, *(const float *)alpha,
                (const float *)a, lda, (const float *)b, ldb, *(const float *)beta, (float *)c,
                ldc);
}

static void gemm_f64(bool ta, bool tb, int m, int n, int k, const void *alpha, const void *a,
                     int lda, const void *b, int ldb, const void *beta, void *c, int ldc) {
    cblas_dgemm(CblasColMajor, cblas_op(ta), cblas_op(tb), m, n, k, *(const double *)alpha,
                (const double *)a, lda, (const double *)b, ldb, *(const double *)beta, (double *)c,
                ldc);
}

// A column-major rows x cols operand (leading dimension ld) as f32, element i of its storage span
// through to_f32, in a scratch copy with the same ld: what the f32 GEMM then reads.
static std::vector<float> widened(const void *p, int rows, int cols, int ld,
                                  float (*to_f32)(const void *p, long long i)) {
    long long extent = rows == 0 || cols == 0 ? 0 : (long long)(cols - 1) * ld + rows;
    std::vector<float> out((size_t)extent);
    for (long long i = 0; i < extent; i++) out[(size_t)i] = to_f32(p, i);
    return out;
}

// bf16 inputs are exact in f32; TF32 inputs are the f32 ones rounded as petal's CPU emulation
// rounds them (round to nearest even, tensor/dtype_convert.h). Real tensor cores' TF32 conversion
// is not documented; this is the rounding petal's tests compare against.
static float bf16_element(const void *p, long long i) {
    return bf16_to_f32(((const uint16_t *)p)[i]);
}

static float tf32_element(const void *p, long long i) {
    return f32_round_tf32(((const float *)p)[i]);
}

// Products of widened operands are exact in f32, so the f32 GEMM computes what the device's
// bf16 or TF32 GEMM computes, up to the order of the f32 sums.
static void gemm_widened(bool ta, bool tb, int m, int n, int k, const void *alpha, const void *a,
                         int lda, const void *b, int ldb, const void *beta, void *c, int ldc,
                         float (*to_f32)(const void *p, long long i)) {
    std::vector<float> wa = widened(a, ta ? k : m, ta ? m : k, lda, to_f32);
    std::vector<float> wb = widened(b, tb ? n : k, tb ? k : n, ldb, to_f32);
    gemm_f32(ta, tb, m, n, k, alpha, wa.data(), lda, wb.data(), ldb, beta, c, ldc);
}

static void gemm_bf16(bool ta, bool tb, int m, int n, int k, const void *alpha, const void *a,
                      int lda, const void *b, int ldb, const void *beta, void *c, int ldc) {
    gemm_widened(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bf16_element);
}

static void gemm_tf32(bool ta, bool tb, int m, int n, int k, const void *alpha, const void *a,
                      int lda, const void *b, int ldb, const void *beta, void *c, int ldc) {
    gemm_widened(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, tf32_element);
}

// What is supported (cublas_emu_gemm.h). A new combination is a row here and a gemm_fn that
// converts its inputs and calls one of the above.
static const gemm_kind gemm_kinds[] = {
    {CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, 4, 4, 4, gemm_f32},
    {CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_PEDANTIC, 4, 4, 4, gemm_f32},
    {CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, 4, 4, 4, gemm_tf32},
    {CUDA_R_16BF, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, 2, 4, 4, gemm_bf16},
    {CUDA_R_64F, CUDA_R_64F, CUDA_R_64F, CUBLAS_COMPUTE_64F, 8, 8, 8, gemm_f64},
    {CUDA_R_64F, CUDA_R_64F, CUDA_R_64F, CUBLAS_COMPUTE_64F_PEDANTIC, 8, 8, 8, gemm_f64},
};

const gemm_kind *gemm_kind_of(cudaDataType a, cudaDataType b, cudaDataType c,
                              cublasComputeType_t compute) {
    for (const gemm_kind &g : gemm_kinds)
        if (g.a == a && g.b == b && g.c == c && g.compute == compute) return &g;
    return NULL;
}

bool matrix_on_device(const void *p, size_t elem, int rows, int cols, int ld, long long stride,
                      int batch) {
    if (rows == 0 || cols == 0 || batch == 0) return true;
    int device;
    if (cuda_emu_current_device(&device) != cudaSuccess) return false;
    long long extent = (long long)(cols - 1) * ld + rows; // elements of one entry
    long long last = (long long)(batch - 1) * stride;
    long long lo = last < 0 ? last : 0, hi = (last > 0 ? last : 0) + extent;
    return cuda_emu_is_memory_of((const char *)p + lo * (long long)elem, (size_t)(hi - lo) * elem,
                                 device);
}

extern "C" cublasStatus_t cublasGemmStridedBatchedEx(
    cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
    const void *alpha, const void *A, cudaDataType Atype, int lda, long long int strideA,
    const void *B, cudaDataType Btype, int ldb, long long int strideB, const void *beta, void *C,
    cudaDataType Ctype, int ldc, long long int strideC, int batchCount,
    cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    const gemm_kind *g = gemm_kind_of(Atype, Btype, Ctype, computeType);
    if (!g || algo != CUBLAS_GEMM_DEFAULT) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (transa == CUBLAS_OP_C || transb == CUBLAS_OP_C) return CUBLAS_STATUS_NOT_SUPPORTED;
    bool ta = transa == CUBLAS_OP_T, tb = transb == CUBLAS_OP_T;
    int a_rows = ta ? k : m, b_rows = tb ? n : k;
    if (m < 0 || n < 0 || k < 0 || batchCount < 0 || lda < (a_rows > 1 ? a_rows : 1) ||
        ldb < (b_rows > 1 ? b_rows : 1) || ldc < (m > 1 ? m : 1) || !alpha || !beta)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0 || batchCount == 0) return CUBLAS_STATUS_SUCCESS;
    // alpha and beta are read on the host (CUBLAS_POINTER_MODE_HOST, the default).
    bool uses_ab = k > 0;
    if ((uses_ab &&
         !matrix_on_device(A, g->a_size, a_rows, ta ? m : k, lda, strideA, batchCount)) ||
        (uses_ab &&
         !matrix_on_device(B, g->a_size, b_rows, tb ? k : n, ldb, strideB, batchCount)) ||
        !matrix_on_device(C, g->c_size, m, n, ldc, strideC, batchCount))
        return CUBLAS_STATUS_EXECUTION_FAILED;
    bool beta_zero = g->scalar_size == 4 ? *(const float *)beta == 0 : *(const double *)beta == 0;
    for (int i = 0; i < batchCount; i++) {
        char *c = (char *)C + i * strideC * (long long)g->c_size;
        // beta == 0: C is written, never read (it may hold NaN), as cuBLAS guarantees.
        if (beta_zero)
            for (int col = 0; col < n; col++)
                memset(c + (size_t)col * ldc * g->c_size, 0, (size_t)m * g->c_size);
        g->fn(ta, tb, m, n, k, alpha, (const char *)A + i * strideA * (long long)g->a_size, lda,
              (const char *)B + i * strideB * (long long)g->a_size, ldb, beta, c, ldc);
    }
    return CUBLAS_STATUS_SUCCESS;
}
