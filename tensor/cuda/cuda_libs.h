// The CUDA libraries petal calls besides the runtime, opened with dlopen on first use instead of
// linked: linked, every program using petal (even `petal help`) mapped libcublas, libcublasLt and
// libnccl at start (760 MiB of address space; docs/cuda.md has the numbers). cuBLAS is opened when
// the first CUDA device is set up (cuda_backend.cu), NCCL when an nccl communicator is made
// (train/dist_nccl_lib.h), cuBLASLt when the first Linear with a bias runs on a device
// (tensor/cuda/cuda_linear.cu). The functions petal calls are resolved with dlsym into tables whose
// fields have the headers' prototypes, so a prototype that changes fails to compile; the soname
// is the one of the headers petal was compiled with. Plain C: the kernels (C++) call through the
// table, the tests (C) load it. Only in builds with PETAL_HAVE_CUDA.
#pragma once

#include <cublas_v2.h>
#ifdef PETAL_HAVE_CUBLASLT
#include <cublasLt.h>
#endif
#include <pthread.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "tensor/error.h"

// The type of a pointer to the function fn as its header declares it.
#ifdef __cplusplus
#define CUDA_LIB_TYPE(fn) decltype(&fn)
#else
#define CUDA_LIB_TYPE(fn) __typeof__(&fn)
#endif
// x as a string after macro expansion: CUDA_LIB_STR(cublasCreate) is "cublasCreate_v2", the name
// cublas_v2.h maps it to, and CUDA_LIB_STR(CUBLAS_VER_MAJOR) is "13".
#define CUDA_LIB_STR(x)  CUDA_LIB_STR_(x)
#define CUDA_LIB_STR_(x) #x

// A library opened at most once per process: the first four fields say which and what provides
// it; the rest is the outcome, written once under `once`.
typedef struct {
    const char *name;    // for messages: "cuBLAS"
    const char *soname;  // opened by default: "libcublas.so.13"
    const char *env;     // names a file (a path, or a name the loader searches) to open instead
    const char *package; // what to install for it: "cuBLAS 13 (in the CUDA toolkit)"
    pthread_once_t once;
    petal_status status;
    char error[1024];
} cuda_lib;

// Opens lib (the file $lib->env names when set, else lib->soname) and resolves names[0..n) into
// slots[0..n). On failure closes it again, records in lib the library, the loader's words
// (dlerror) and what to install or set, and returns false. For the function that
// cuda_lib_load runs once.
bool cuda_lib_open(cuda_lib *lib, const char *const *names, void **slots, int n);
// Runs open (which calls cuda_lib_open for lib and fills its table) once per process, whatever
// the thread; returns PETAL_OK, or on every call after a failure PETAL_ERR_DEVICE with lib's
// message (petal_error_message()).
petal_status cuda_lib_load(cuda_lib *lib, void (*open)(void));

// The cuBLAS functions petal calls, named without their "cublas" prefix: cuda_cublas.Create is
// cublasCreate (cublasCreate_v2). Valid once cuda_cublas_load has returned PETAL_OK.
typedef struct {
    CUDA_LIB_TYPE(cublasCreate) Create;
    CUDA_LIB_TYPE(cublasSetStream) SetStream;
    // Spelled out: C++ also sees an inline overload taking the old cudaDataType compute type;
    // this is the C function the library exports (cuda_libs.cu checks that the header agrees).
    cublasStatus_t (*GemmStridedBatchedEx)(cublasHandle_t handle, cublasOperation_t transa,
                                           cublasOperation_t transb, int m, int n, int k,
                                           const void *alpha, const void *A, cudaDataType Atype,
                                           int lda, long long int strideA, const void *B,
                                           cudaDataType Btype, int ldb, long long int strideB,
                                           const void *beta, void *C, cudaDataType Ctype, int ldc,
                                           long long int strideC, int batchCount,
                                           cublasComputeType_t computeType, cublasGemmAlgo_t algo);
    CUDA_LIB_TYPE(cublasGetStatusName) GetStatusName;
    CUDA_LIB_TYPE(cublasGetStatusString) GetStatusString;
} cuda_cublas_table;

extern cuda_cublas_table cuda_cublas;

// Opens libcublas.so.<CUBLAS_VER_MAJOR> (or $PETAL_CUBLAS_LIBRARY) and fills cuda_cublas, once.
petal_status cuda_cublas_load(void);

#ifdef PETAL_HAVE_CUBLASLT
// The cuBLASLt functions petal calls (its bias epilogue for Linear), without their "cublasLt"
// prefix: cuda_cublaslt.Matmul is cublasLtMatmul. Valid once cuda_cublaslt_load has returned
// PETAL_OK. Every build with CUDA has them; an emulated build only when the toolkit's cublasLt.h is
// found (cmake/cuda_emu.cmake).
typedef struct {
    CUDA_LIB_TYPE(cublasLtCreate) Create;
    CUDA_LIB_TYPE(cublasLtMatmulDescCreate) MatmulDescCreate;
    CUDA_LIB_TYPE(cublasLtMatmulDescDestroy) MatmulDescDestroy;
    CUDA_LIB_TYPE(cublasLtMatmulDescSetAttribute) MatmulDescSetAttribute;
    CUDA_LIB_TYPE(cublasLtMatrixLayoutCreate) MatrixLayoutCreate;
    CUDA_LIB_TYPE(cublasLtMatrixLayoutDestroy) MatrixLayoutDestroy;
    CUDA_LIB_TYPE(cublasLtMatmulPreferenceCreate) MatmulPreferenceCreate;
    CUDA_LIB_TYPE(cublasLtMatmulPreferenceDestroy) MatmulPreferenceDestroy;
    CUDA_LIB_TYPE(cublasLtMatmulPreferenceSetAttribute) MatmulPreferenceSetAttribute;
    CUDA_LIB_TYPE(cublasLtMatmulAlgoGetHeuristic) MatmulAlgoGetHeuristic;
    CUDA_LIB_TYPE(cublasLtMatmul) Matmul;
    CUDA_LIB_TYPE(cublasLtGetStatusName) GetStatusName;
    CUDA_LIB_TYPE(cublasLtGetStatusString) GetStatusString;
} cuda_cublaslt_table;

extern cuda_cublaslt_table cuda_cublaslt;

// Opens libcublasLt.so.<CUBLAS_VER_MAJOR> (or $PETAL_CUBLASLT_LIBRARY) and fills cuda_cublaslt,
// once. On failure the message names the file, the loader's words and what to install or set.
petal_status cuda_cublaslt_load(void);
#endif
#ifdef __cplusplus
}
#endif
