// What the host emulator's cuBLAS and cuBLASLt stand-ins share (cublas_emu.cc, cublaslt_emu.cc):
// the supported GEMMs, run on OpenBLAS, and the check a GPU makes that an operand lies in device
// memory.
#pragma once

#include <stddef.h>

#include "cublas_api.h"

// One column-major GEMM: C = alpha op(A) op(B) + beta C, pointers already offset.
typedef void (*gemm_fn)(bool ta, bool tb, int m, int n, int k, const void *alpha, const void *a,
                        int lda, const void *b, int ldb, const void *beta, void *c, int ldc);

// A supported (A, B, C, compute) combination: bf16 and TF32 inputs are widened to f32 as petal's
// CPU emulation rounds them (tensor/dtype_convert.h), then an f32 GEMM runs.
struct gemm_kind {
    cudaDataType a, b, c;
    cublasComputeType_t compute;
    size_t a_size, c_size; // bytes per element of A and B, of C
    size_t scalar_size;    // bytes of alpha and beta
    gemm_fn fn;
};

// The row of cublas_emu.cc's table for the combination, or NULL (CUBLAS_STATUS_NOT_SUPPORTED).
const gemm_kind *gemm_kind_of(cudaDataType a, cudaDataType b, cudaDataType c,
                              cublasComputeType_t compute);

// Whether every batch entry of a rows x cols column-major matrix (leading dimension ld, entries
// stride elements apart) lies in one allocation of device memory of the current device.
bool matrix_on_device(const void *p, size_t elem, int rows, int cols, int ld, long long stride,
                      int batch);
