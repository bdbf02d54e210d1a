// Checks for CUDA runtime and cuBLAS calls, and the pattern train/dist_nccl_lib.h's NCCL_CHECK
// follows (docs/architecture.md "Errors", first tier): a failing call is a broken invariant, so it
// aborts through petal_fatal with file:line, the call, and the library's name and text for the
// error. Plain C, so train/ uses it as the kernels do; CUBLAS_CHECK needs cuBLAS's table
// (tensor/cuda/cuda_libs.h) only where it is used.
#pragma once

#include <cuda_runtime_api.h>
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "tensor/error.h"
#ifdef __cplusplus
}
#endif

// `call` returns a status of type T that is `ok` on success; name(st) and text(st) describe it.
#define PETAL_LIB_CHECK(T, call, ok, lib, name, text)                                              \
    do {                                                                                           \
        T lib_status_ = (call);                                                                    \
        if (lib_status_ != ok)                                                                     \
            petal_fatal(__FILE__, __LINE__, #call, "%s error %s: %s", lib, name(lib_status_),      \
                        text(lib_status_));                                                        \
    } while (0)

#define CUDA_CHECK(call)                                                                           \
    PETAL_LIB_CHECK(cudaError_t, call, cudaSuccess, "CUDA", cudaGetErrorName, cudaGetErrorString)
#define CUBLAS_CHECK(call)                                                                         \
    PETAL_LIB_CHECK(cublasStatus_t, call, CUBLAS_STATUS_SUCCESS, "cuBLAS",                         \
                    cuda_cublas.GetStatusName, cuda_cublas.GetStatusString)
