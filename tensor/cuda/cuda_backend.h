// The CUDA backend seen from C (train/dist.c and backend.c): device count, the backend table and
// the stream of a device. Only in builds with PETAL_HAVE_CUDA.
#pragma once

#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "tensor/backend.h"

extern const backend cuda_backend;

// CUDA devices usable by petal (0 when there is no driver or no device).
int cuda_device_count(void);

// Whether device `index` can run petal's work: it exists, a context can be created on it, it can
// allocate 64 MiB and cuBLAS loads (tensor/cuda/cuda_libs.h). If not, writes why into why (cap
// bytes): no driver, a driver too old for the runtime, no device, out of memory, the CUDA error
// met, or why cuBLAS did not load. Never aborts. Like any CUDA call, it leaves a forked child of
// this process unable to use CUDA: ask in a child instead.
bool cuda_device_usable(int index, char *why, size_t cap);

// cudaMalloc on the current device, for the block cache: NULL when the device is out of memory
// (the cache then releases what it holds and retries); any other failure aborts naming the CUDA
// error and its text.
void *cuda_raw_alloc(size_t nbytes);

// The stream petal runs device `device_index`'s work on, with the device made current: NCCL
// calls join it so they are ordered with the kernels that produce and consume their tensors.
cudaStream_t cuda_device_stream(int device_index);
#ifdef __cplusplus
}
#endif
