// The host emulator's cuBLASLt, in libpetal_cublas_emu.so beside the cuBLAS stand-in (tests point
// PETAL_CUBLASLT_LIBRARY at that file): exactly the functions tensor/cuda/cuda_libs.h's
// cuda_cublaslt table names, compiled against the toolkit's own cublasLt.h, so the types, the enum
// values and the prototypes are NVIDIA's. Semantics as cublasLt.h documents them: column-major
// layouts (rows, cols, leading dimension), D = alpha op(A) op(B) + beta C with op from
// CUBLASLT_MATMUL_DESC_TRANSA/B, and CUBLASLT_EPILOGUE_BIAS adding a packed vector (D's type, one
// element per row of D) to every column of D. The GEMM is the cuBLAS stand-in's (cublas_emu_gemm.h:
// the same (A, B, C, compute) table, bf16 and TF32 inputs rounded as petal's CPU emulation does),
// then the bias is added in f32.
//
// Only what petal sets is modelled; any other attribute, value, compute type or layout type
// returns CUBLAS_STATUS_NOT_SUPPORTED, so a caller that starts using something new fails here
// instead of being computed wrongly. The stand-in has one algorithm: no split-K (reduction scheme
// NONE, which every CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK admits), no workspace, any
// alignment of at least the element size. The heuristic records in the algorithm the alignments it
// was told (the preference's CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES, 256 by default, and the
// bias pointer's own); cublasLtMatmul refuses pointers less aligned than that with
// CUBLAS_STATUS_INVALID_VALUE, as an algorithm chosen for aligned operands cannot run on others.
#include <stdint.h>
#include <string.h>

#include <initializer_list>

#include "cublasLt.h"
#include "cublas_emu_gemm.h"
#include "cuda_emu_internal.h"

struct cublasLtContext {
    int device;
};

namespace {

struct lt_desc {
    cublasComputeType_t compute;
    cublasOperation_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    const void *bias = NULL;
};

struct lt_layout {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
};

struct lt_pref {
    uint64_t workspace = 0;
    uint32_t reduction_mask = CUBLASLT_REDUCTION_SCHEME_MASK;
    uint32_t align[4] = {256, 256, 256, 256}; // A, B, C, D
};

// The stand-in's algorithm as cublasLtMatmulAlgo_t carries it: a tag, and the alignments the
// heuristic chose it for.
struct lt_algo {
    uint64_t tag;
    uint32_t align[4]; // A, B, C, D
    uint32_t bias_align;
};
static_assert(sizeof(lt_algo) <= sizeof(cublasLtMatmulAlgo_t), "lt_algo fits the opaque algo");
const uint64_t ALGO_TAG = 0x70657461'6c4c7431; // "petalLt1"

lt_desc *desc_of(cublasLtMatmulDesc_t d) {
    return reinterpret_cast<lt_desc *>(d);
}
lt_layout *layout_of(cublasLtMatrixLayout_t l) {
    return reinterpret_cast<lt_layout *>(l);
}
lt_pref *pref_of(cublasLtMatmulPreference_t p) {
    return reinterpret_cast<lt_pref *>(p);
}

// *out = the value in buf when it is exactly a T; INVALID_VALUE otherwise, as cuBLASLt checks.
template <typename T> cublasStatus_t read_attr(const void *buf, size_t size, T *out) {
    if (!buf || size != sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(out, buf, sizeof(T));
    return CUBLAS_STATUS_SUCCESS;
}

// The largest power of two, at most 256, dividing p.
uint32_t alignment_of(const void *p) {
    uintptr_t bits = (uintptr_t)p | 256;
    return (uint32_t)(bits & (~bits + 1));
}

// The problem the descriptors describe, checked as cuBLASLt checks it: op(A) m x k, op(B) k x n,
// C and D m x n of one type, leading dimensions at least the rows, a supported type combination
// and epilogue (with its bias).
struct problem {
    const gemm_kind *kind;
    bool ta, tb;
    int m, n, k;
};

cublasStatus_t problem_of(const lt_desc *d, const lt_layout *a, const lt_layout *b,
                          const lt_layout *c, const lt_layout *dd, problem *p) {
    if (!d || !a || !b || !c || !dd) return CUBLAS_STATUS_INVALID_VALUE;
    p->kind = gemm_kind_of(a->type, b->type, dd->type, d->compute);
    if (!p->kind || c->type != dd->type) return CUBLAS_STATUS_NOT_SUPPORTED;
    p->ta = d->transa == CUBLAS_OP_T;
    p->tb = d->transb == CUBLAS_OP_T;
    uint64_t m = dd->rows, n = dd->cols, k = p->ta ? a->rows : a->cols;
    if ((p->ta ? a->cols : a->rows) != m || (p->tb ? b->cols : b->rows) != k ||
        (p->tb ? b->rows : b->cols) != n || c->rows != m || c->cols != n)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX) return CUBLAS_STATUS_NOT_SUPPORTED;
    for (const lt_layout *l : {a, b, c, dd})
        if (l->ld < (int64_t)(l->rows > 1 ? l->rows : 1) || l->ld > INT32_MAX)
            return CUBLAS_STATUS_INVALID_VALUE;
    if (d->epilogue == CUBLASLT_EPILOGUE_BIAS && !d->bias) return CUBLAS_STATUS_INVALID_VALUE;
    p->m = (int)m;
    p->n = (int)n;
    p->k = (int)k;
    return CUBLAS_STATUS_SUCCESS;
}

bool aligned(const void *p, uint32_t align) {
    return (uintptr_t)p % align == 0;
}

} // namespace

extern "C" cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle) {
    int device;
    if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
    if (cuda_emu_current_device(&device) != cudaSuccess) return CUBLAS_STATUS_NOT_INITIALIZED;
    *handle = new cublasLtContext{device};
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" const char *cublasLtGetStatusName(cublasStatus_t status) {
    return cublasGetStatusName(status);
}

extern "C" const char *cublasLtGetStatusString(cublasStatus_t status) {
    return cublasGetStatusString(status);
}

// ---- descriptors ----

extern "C" cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc,
                                                   cublasComputeType_t compute,
                                                   cudaDataType_t scale) {
    if (!desc) return CUBLAS_STATUS_INVALID_VALUE;
    if ((compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32) ||
        scale != CUDA_R_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    lt_desc *d = new lt_desc;
    d->compute = compute;
    *desc = reinterpret_cast<cublasLtMatmulDesc_t>(d);
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
    delete desc_of(desc);
    return CUBLAS_STATUS_SUCCESS;
}

static cublasStatus_t read_op(const void *buf, size_t size, cublasOperation_t *op) {
    int32_t v;
    cublasStatus_t st = read_attr(buf, size, &v);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    if (v != CUBLAS_OP_N && v != CUBLAS_OP_T) return CUBLAS_STATUS_NOT_SUPPORTED;
    *op = (cublasOperation_t)v;
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                                         cublasLtMatmulDescAttributes_t attr,
                                                         const void *buf, size_t size) {
    lt_desc *d = desc_of(desc);
    if (!d) return CUBLAS_STATUS_INVALID_VALUE;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
        return read_op(buf, size, &d->transa);
    case CUBLASLT_MATMUL_DESC_TRANSB:
        return read_op(buf, size, &d->transb);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        return read_attr(buf, size, &d->bias);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: {
        uint32_t v;
        cublasStatus_t st = read_attr(buf, size, &v);
        if (st != CUBLAS_STATUS_SUCCESS) return st;
        if (v != CUBLASLT_EPILOGUE_DEFAULT && v != CUBLASLT_EPILOGUE_BIAS)
            return CUBLAS_STATUS_NOT_SUPPORTED;
        d->epilogue = (cublasLtEpilogue_t)v;
        return CUBLAS_STATUS_SUCCESS;
    }
    default:
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}

extern "C" cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout,
                                                     cudaDataType type, uint64_t rows,
                                                     uint64_t cols, int64_t ld) {
    if (!layout) return CUBLAS_STATUS_INVALID_VALUE;
    if (type != CUDA_R_32F && type != CUDA_R_16BF) return CUBLAS_STATUS_NOT_SUPPORTED;
    *layout = reinterpret_cast<cublasLtMatrixLayout_t>(new lt_layout{type, rows, cols, ld});
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    delete layout_of(layout);
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref) {
    if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
    *pref = reinterpret_cast<cublasLtMatmulPreference_t>(new lt_pref);
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    delete pref_of(pref);
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t
cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                     cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                     size_t size) {
    lt_pref *p = pref_of(pref);
    if (!p) return CUBLAS_STATUS_INVALID_VALUE;
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
        return read_attr(buf, size, &p->workspace);
    case CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK:
        return read_attr(buf, size, &p->reduction_mask);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
        return read_attr(buf, size, &p->align[0]);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
        return read_attr(buf, size, &p->align[1]);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
        return read_attr(buf, size, &p->align[2]);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
        return read_attr(buf, size, &p->align[3]);
    default:
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}

// ---- heuristic and matmul ----

extern "C" cublasStatus_t
cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                               cublasLtMatrixLayout_t adesc, cublasLtMatrixLayout_t bdesc,
                               cublasLtMatrixLayout_t cdesc, cublasLtMatrixLayout_t ddesc,
                               cublasLtMatmulPreference_t pref, int requested,
                               cublasLtMatmulHeuristicResult_t results[], int *returned) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!pref || requested < 1 || !results || !returned) return CUBLAS_STATUS_INVALID_VALUE;
    problem p;
    cublasStatus_t st = problem_of(desc_of(desc), layout_of(adesc), layout_of(bdesc),
                                   layout_of(cdesc), layout_of(ddesc), &p);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    const lt_pref *pr = pref_of(pref);
    // The one algorithm reads each element whole: it needs at least the element's alignment.
    size_t in = p.kind->a_size, out = p.kind->c_size;
    if (pr->align[0] % in || pr->align[1] % in || pr->align[2] % out || pr->align[3] % out) {
        *returned = 0;
        return CUBLAS_STATUS_NOT_SUPPORTED; // no algorithm, as cuBLASLt reports it
    }
    lt_algo algo = {ALGO_TAG,
                    {pr->align[0], pr->align[1], pr->align[2], pr->align[3]},
                    alignment_of(desc_of(desc)->bias)};
    memset(&results[0], 0, sizeof results[0]);
    memcpy(&results[0].algo, &algo, sizeof algo);
    results[0].workspaceSize = 0;
    results[0].state = CUBLAS_STATUS_SUCCESS;
    results[0].wavesCount = 1;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t
cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha, const void *A,
               cublasLtMatrixLayout_t adesc, const void *B, cublasLtMatrixLayout_t bdesc,
               const void *beta, const void *C, cublasLtMatrixLayout_t cdesc, void *D,
               cublasLtMatrixLayout_t ddesc, const cublasLtMatmulAlgo_t *algo_in, void *workspace,
               size_t workspace_size, cudaStream_t stream) {
    (void)workspace;
    (void)workspace_size; // the algorithm needs none
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!alpha || !beta || !algo_in || cuda_emu_check_stream(stream) != cudaSuccess)
        return CUBLAS_STATUS_INVALID_VALUE;
    lt_algo algo;
    memcpy(&algo, algo_in, sizeof algo);
    if (algo.tag != ALGO_TAG) return CUBLAS_STATUS_INVALID_VALUE; // not from the heuristic
    const lt_desc *d = desc_of(desc);
    const lt_layout *la = layout_of(adesc), *lb = layout_of(bdesc), *lc = layout_of(cdesc),
                    *ld = layout_of(ddesc);
    problem p;
    cublasStatus_t st = problem_of(d, la, lb, lc, ld, &p);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    bool bias = d->epilogue == CUBLASLT_EPILOGUE_BIAS;
    if (!aligned(A, algo.align[0]) || !aligned(B, algo.align[1]) || !aligned(C, algo.align[2]) ||
        !aligned(D, algo.align[3]) || (bias && !aligned(d->bias, algo.bias_align)))
        return CUBLAS_STATUS_INVALID_VALUE;
    bool beta_zero = *(const float *)beta == 0;
    if (!beta_zero && (C != D || lc->ld != ld->ld))
        return CUBLAS_STATUS_NOT_SUPPORTED; // petal computes in place or ignores C
    if (p.m == 0 || p.n == 0) return CUBLAS_STATUS_SUCCESS;
    size_t in = p.kind->a_size, out = p.kind->c_size;
    bool uses_ab = p.k > 0;
    if ((uses_ab && !matrix_on_device(A, in, (int)la->rows, (int)la->cols, (int)la->ld, 0, 1)) ||
        (uses_ab && !matrix_on_device(B, in, (int)lb->rows, (int)lb->cols, (int)lb->ld, 0, 1)) ||
        !matrix_on_device(D, out, p.m, p.n, (int)ld->ld, 0, 1) ||
        (bias && !matrix_on_device(d->bias, out, p.m, 1, p.m, 0, 1)))
        return CUBLAS_STATUS_EXECUTION_FAILED; // on a GPU, a fault
    float *dd = (float *)D;
    // beta == 0: D is written, never read (it may hold NaN), as cuBLASLt guarantees.
    if (beta_zero)
        for (int col = 0; col < p.n; col++) memset(dd + (size_t)col * ld->ld, 0, (size_t)p.m * out);
    p.kind->fn(p.ta, p.tb, p.m, p.n, p.k, alpha, A, (int)la->ld, B, (int)lb->ld, beta, D,
               (int)ld->ld);
    if (bias) {
        const float *v = (const float *)d->bias; // D's type (CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE)
        for (int col = 0; col < p.n; col++)
            for (int row = 0; row < p.m; row++) dd[(size_t)col * ld->ld + row] += v[row];
    }
    return CUBLAS_STATUS_SUCCESS;
}
