// The host emulator's cuBLAS (cublas_api.h), built as libpetal_cublas_emu.so and opened by petal's
// own loader (tensor/cuda/cuda_libs.h) through PETAL_CUBLAS_LIBRARY. GEMMs run on OpenBLAS, one
// call per batch entry, after the checks cuBLAS makes (sizes, leading dimensions, types) and one
// a GPU makes: every matrix must lie in device memory of the current device, whole, or the GPU
// would fault. Which (A, B, C, compute) type combinations are supported is the table `gemm_kinds`:
// f32 and f64, TF32 (f32 inputs rounded to TF32) and bf16 inputs with f32 output and accumulation.
#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_emu_internal.h"
#include "cublas_api.h"

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

// One column-major GEMM of the batch: C = alpha op(A) op(B) + beta C, pointers already offset.
typedef void (*gemm_fn)(bool ta, bool tb, int m, int n, int k, const void *alpha, const void *a,
                        int lda, const void *b, int ldb, const void *beta, void *c, int ldc);

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

// The tensor-core paths: inputs converted to f32 (the elements of each matrix's whole extent,
// leading dimension included), then an f32 GEMM, as the GPU accumulates in f32.
static size_t extent(bool trans, int rows_n, int rows_t, int cols_n, int cols_t, int ld) {
    int rows = trans ? rows_t : rows_n, cols = trans ? cols_t : cols_n;
    return rows == 0 || cols == 0 ? 0 : (size_t)(cols - 1) * ld + rows;
}

// bf16 to f32 is exact: the bf16 bits are the f32's high half.
static float *widen_bf16(const void *p, size_t n) {
    float *out = (float *)malloc((n ? n : 1) * sizeof *out);
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
        memcpy(&out[i], &u, 4);
    }
    return out;
}

// f32 to TF32 (10 mantissa bits), to nearest with ties to even, NaN kept a NaN. The rounding of
// the GPU's own conversion is not documented to the bit; this is what the emulator assumes.
static float *round_tf32(const void *p, size_t n) {
    float *out = (float *)malloc((n ? n : 1) * sizeof *out);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, (const float *)p + i, 4);
        if ((u & 0x7fffffffu) <= 0x7f800000u) u = (u + 0xfffu + ((u >> 13) & 1u)) & 0xffffe000u;
        memcpy(&out[i], &u, 4);
    }
    return out;
}

template <float *(*CONVERT)(const void *, size_t)>
static void gemm_converted(bool ta, bool tb, int m, int n, int k, const void *alpha, const void *a,
                           int lda, const void *b, int ldb, const void *beta, void *c, int ldc) {
    float *fa = CONVERT(a, extent(ta, m, k, k, m, lda)),
          *fb = CONVERT(b, extent(tb, k, n, n, k, ldb));
    gemm_f32(ta, tb, m, n, k, alpha, fa, lda, fb, ldb, beta, c, ldc);
    free(fa);
    free(fb);
}

// What is supported; anything else is CUBLAS_STATUS_NOT_SUPPORTED.
struct gemm_kind {
    cudaDataType a, b, c;
    cublasComputeType_t compute;
    size_t a_size, c_size; // bytes per element of A and B, of C
    size_t scalar_size;    // bytes of alpha and beta
    gemm_fn fn;
};

static const gemm_kind gemm_kinds[] = {
    {CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, 4, 4, 4, gemm_f32},
    {CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_PEDANTIC, 4, 4, 4, gemm_f32},
    {CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, 4, 4, 4,
     gemm_converted<round_tf32>},
    {CUDA_R_16BF, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, 2, 4, 4, gemm_converted<widen_bf16>},
    {CUDA_R_64F, CUDA_R_64F, CUDA_R_64F, CUBLAS_COMPUTE_64F, 8, 8, 8, gemm_f64},
    {CUDA_R_64F, CUDA_R_64F, CUDA_R_64F, CUBLAS_COMPUTE_64F_PEDANTIC, 8, 8, 8, gemm_f64},
};

static const gemm_kind *gemm_kind_of(cudaDataType a, cudaDataType b, cudaDataType c,
                                     cublasComputeType_t compute) {
    for (const gemm_kind &g : gemm_kinds)
        if (g.a == a && g.b == b && g.c == c && g.compute == compute) return &g;
    return NULL;
}

// Whether every batch entry of a rows x cols column-major matrix (leading dimension ld, entries
// stride elements apart) lies in one allocation of device memory of the current device.
static bool matrix_on_device(const void *p, size_t elem, int rows, int cols, int ld,
                             long long stride, int batch) {
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
