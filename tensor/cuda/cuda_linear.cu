// Linear's bias inside its GEMM: y = x W^T + b as one cublasLtMatmul with CUBLASLT_EPILOGUE_BIAS,
// instead of a pass copying b into y and a GEMM reading y back with beta = 1 (docs/cuda.md,
// "cuBLASLt epilogues"). The operands are cuda_matmul.cu's: the plan of tensor/matmul_plan.h with
// a and b swapped into cuBLAS's column-major order, so y (N, out) is D (out, N) and b runs along
// D's rows, the vector the epilogue broadcasts over D's columns. Precision as cuda_matmul.cu: F32
// with CUBLAS_COMPUTE_32F, TF32 with CUBLAS_COMPUTE_32F_FAST_TF32, BF16 on bf16 copies of x and W
// with f32 accumulation, output and bias (the bias has D's type, cublasLt.h's default).
//
// Only f32 tensors take this path: f64 products stay on cuBLAS, the reference gradcheck and the
// CPU comparisons rely on (cublasLt.h names no restriction of the bias epilogue to some types, and
// none is needed here). Whatever cannot run as one epilogue GEMM (a batch that does not fold into
// rows, an empty sum, a bias with a stride, sizes beyond INT_MAX, cuBLASLt missing or without an
// algorithm for the shape) returns false and ops/matmul.c takes the cuBLAS path.
//
// Determinism: the heuristic may only return algorithms without split-K reductions
// (CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK = CUBLASLT_REDUCTION_SCHEME_NONE: each dot product
// is summed in one sequence, never by atomics or a separate reduction of partial sums) and gets
// no workspace; the algorithm is chosen once per shape (cuda_lt_cache.h) and reused, so two runs
// give the same bits.
#ifdef PETAL_HAVE_CUBLASLT // an emulated build without the toolkit's cublasLt.h has no epilogue
#include <stdio.h>

#include "tensor/cuda/cuda_backend.h"
#include "tensor/cuda/cuda_kernels.cuh"
extern "C" {
#include "tensor/cuda/cuda_limits.h"
#include "tensor/cuda/cuda_lt_cache.h"
#include "tensor/matmul_plan.h"
}

#define LT_CHECK(call)                                                                             \
    PETAL_LIB_CHECK(cublasStatus_t, call, CUBLAS_STATUS_SUCCESS, "cuBLASLt",                       \
                    cuda_cublaslt.GetStatusName, cuda_cublaslt.GetStatusString)

// The descriptors of one GEMM shape and the algorithm chosen for them.
typedef struct {
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d; // cuBLAS's A (W^T's storage), B (x's), C = D (y)
    cublasLtMatmulAlgo_t algo;
    bool usable; // the heuristic found an algorithm
} lt_plan;

typedef struct {
    cublasLtHandle_t handle; // created at the device's first epilogue GEMM
    lt_cache cache;
    lt_plan plans[LT_CACHE_SLOTS];
} lt_device;

static lt_device lt_devices[CUDA_MAX_DEVICES];

static void warn_unavailable(void) {
    fprintf(stderr, "petal: warning: %s; Linear on CUDA adds its bias in a separate pass\n",
            petal_error_message());
}

// Whether cuBLASLt is loaded; the first failure is reported once, as a warning: Linear still runs.
static bool lt_loaded(void) {
    static pthread_once_t warned = PTHREAD_ONCE_INIT;
    if (cuda_cublaslt_load() == PETAL_OK) return true;
    pthread_once(&warned, warn_unavailable);
    return false;
}

template <typename T>
static void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, T value) {
    LT_CHECK(cuda_cublaslt.MatmulDescSetAttribute(desc, attr, &value, sizeof value));
}

template <typename T>
static void set_pref(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
                     T value) {
    LT_CHECK(cuda_cublaslt.MatmulPreferenceSetAttribute(pref, attr, &value, sizeof value));
}

static cublasOperation_t lt_op(bool trans) {
    return trans ? CUBLAS_OP_T : CUBLAS_OP_N;
}

// A column-major layout of a matrix op(M) is rows x cols of: stored transposed when trans.
static cublasLtMatrixLayout_t lt_layout(cudaDataType type, int64_t rows, int64_t cols, bool trans,
                                        int64_t ld) {
    cublasLtMatrixLayout_t l;
    LT_CHECK(cuda_cublaslt.MatrixLayoutCreate(&l, type, (uint64_t)(trans ? cols : rows),
                                              (uint64_t)(trans ? rows : cols), ld));
    return l;
}

// The descriptors for key (p's shape) and the heuristic's algorithm for them, the bias at `bias`
// (its alignment is part of what the heuristic is told).
static void plan_make(lt_device *dev, lt_plan *pl, const matmul_plan *p, const lt_key *key,
                      const void *bias) {
    cudaDataType in = key->dtype == PETAL_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasComputeType_t compute =
        key->precision == PETAL_PRECISION_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    LT_CHECK(cuda_cublaslt.MatmulDescCreate(&pl->desc, compute, CUDA_R_32F));
    set_desc(pl->desc, CUBLASLT_MATMUL_DESC_TRANSA, (int32_t)lt_op(p->trans_b));
    set_desc(pl->desc, CUBLASLT_MATMUL_DESC_TRANSB, (int32_t)lt_op(p->trans_a));
    set_desc(pl->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, (uint32_t)CUBLASLT_EPILOGUE_BIAS);
    set_desc(pl->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
    // cuBLAS's m, n, k are the plan's n, m, k (a and b swapped)
    pl->a = lt_layout(in, p->n, p->k, p->trans_b, p->ldb);
    pl->b = lt_layout(in, p->k, p->m, p->trans_a, p->lda);
    pl->d = lt_layout(CUDA_R_32F, p->n, p->m, false, p->ldc);
    cublasLtMatmulPreference_t pref;
    LT_CHECK(cuda_cublaslt.MatmulPreferenceCreate(&pref));
    set_pref(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, (uint64_t)0);
    set_pref(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
             (uint32_t)CUBLASLT_REDUCTION_SCHEME_NONE);
    const cublasLtMatmulPreferenceAttributes_t aligns[] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (cublasLtMatmulPreferenceAttributes_t attr : aligns)
        set_pref(pref, attr, (uint32_t)key->align);
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    cublasStatus_t st = cuda_cublaslt.MatmulAlgoGetHeuristic(
        dev->handle, pl->desc, pl->a, pl->b, pl->d, pl->d, pref, 1, &result, &found);
    LT_CHECK(cuda_cublaslt.MatmulPreferenceDestroy(pref));
    if (st != CUBLAS_STATUS_NOT_SUPPORTED) LT_CHECK(st); // NOT_SUPPORTED: no algorithm
    pl->usable = st == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS;
    if (pl->usable) pl->algo = result.algo;
}

static void plan_destroy(lt_plan *pl) {
    LT_CHECK(cuda_cublaslt.MatrixLayoutDestroy(pl->a));
    LT_CHECK(cuda_cublaslt.MatrixLayoutDestroy(pl->b));
    LT_CHECK(cuda_cublaslt.MatrixLayoutDestroy(pl->d));
    LT_CHECK(cuda_cublaslt.MatmulDescDestroy(pl->desc));
}

static const void *data_at(const tensor *t) {
    return (const char *)t->storage->data + t->offset * (int64_t)dtype_size(t->dtype);
}

// y = x @ wt + b in one cublasLtMatmul on `stream`, x and wt already in the GEMM's input type;
// false (nothing queued) when the heuristic has no algorithm for the shape.
static bool lt_run(const matmul_plan *p, const tensor *x, const tensor *wt, tensor *y,
                   const tensor *b, petal_precision precision, cudaStream_t stream) {
    lt_device *dev = &lt_devices[y->device.index];
    if (!dev->handle) LT_CHECK(cuda_cublaslt.Create(&dev->handle));
    const void *px = data_at(x), *pw = data_at(wt), *pb = data_at(b);
    void *py = (void *)data_at(y);
    const void *ptrs[] = {px, pw, py, pb};
    lt_key key = {.device = y->device.index,
                  .dtype = (int)x->dtype,
                  .precision = (int)precision,
                  .trans_a = p->trans_a,
                  .trans_b = p->trans_b,
                  .m = p->m,
                  .n = p->n,
                  .k = p->k,
                  .lda = p->lda,
                  .ldb = p->ldb,
                  .ldc = p->ldc,
                  .align = lt_alignment(ptrs, 4)};
    bool hit, evict;
    int slot = lt_cache_slot(&dev->cache, &key, &hit, &evict);
    lt_plan *pl = &dev->plans[slot];
    if (evict) plan_destroy(pl);
    if (!hit) plan_make(dev, pl, p, &key, pb);
    if (!pl->usable) return false;
    set_desc(pl->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, pb);
    float one = 1, zero = 0; // beta = 0: y is written, never read
    LT_CHECK(cuda_cublaslt.Matmul(dev->handle, pl->desc, &one, pw, pl->a, px, pl->b, &zero, py,
                                  pl->d, py, pl->d, &pl->algo, NULL, 0, stream));
    return true;
}

bool cuda_linear_bias(tensor *y, const tensor *x, const tensor *wt, const tensor *b,
                      petal_precision precision) {
    matmul_plan p;
    char msg[512];
    if (y->dtype != PETAL_F32 || (b->shape[0] > 1 && b->strides[0] != 1) ||
        !matmul_plan_make(y, x, wt, &p) || p.batch != 1 ||
        !cuda_gemm_sizes_fit(&p, 1, x, wt, y, msg, sizeof msg) || !lt_loaded())
        return false; // the cuBLAS path (it reports sizes beyond INT_MAX)
    cudaStream_t stream = cuda_stream_for("linear", {y, x, wt, b}); // y's device current, checks
    if (precision != PETAL_PRECISION_BF16) return lt_run(&p, x, wt, y, b, precision, stream);
    tensor *rx = cuda_bf16_operand(x, stream), *rw = cuda_bf16_operand(wt, stream);
    bool done = lt_run(&p, rx, rw, y, b, precision, stream);
    tensor_free(rx);
    tensor_free(rw);
    return done;
}

extern "C" cuda_linear_cache_stats cuda_linear_cache_get_stats(int device_index) {
    PETAL_CHECK(device_index >= 0 && device_index < CUDA_MAX_DEVICES,
                "cuda_linear_cache_get_stats: no device cuda:%d", device_index);
    const lt_device *dev = &lt_devices[device_index];
    int usable = 0;
    for (int i = 0; i < LT_CACHE_SLOTS; i++)
        usable += dev->cache.last_use[i] != 0 && dev->plans[i].usable;
    return cuda_linear_cache_stats{dev->cache.hits, dev->cache.misses, dev->cache.evictions,
                                   lt_cache_entries(&dev->cache), usable};
}
#endif
