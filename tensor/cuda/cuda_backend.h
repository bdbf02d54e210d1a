// The CUDA backend seen from C (train/dist.c and backend.c): device count, the backend table and
// the stream of a device. Only in builds with PETAL_HAVE_CUDA.
#pragma once

#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "tensor/backend.h"

#define CUDA_MAX_DEVICES 16 // devices petal uses at most

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

// Waits for every CUDA device in use and aborts if an indexing kernel (index_select, index_add,
// gather, scatter_add, embedding, cross_entropy's targets) met an index out of range since the
// last check, with the message the CPU kernel gives at once (`index_select: index 9 at position 2
// is out of range [0, 4)`), naming the op that met it. The kernels do not wait to look: a bad
// index is reported here or at the next call that waits for the device anyway (a copy to the
// host, tensor_to(t, DEVICE_CPU), tensor_item, the backend's synchronize).
void cuda_check_errors(void);

#ifdef PETAL_HAVE_CUBLASLT
// The cache of cuBLASLt plans behind Linear's bias epilogue on one device
// (tensor/cuda/cuda_lt_cache.h): lookups that found their shape, lookups that made a plan, plans
// replaced, plans held, and how many of those have an algorithm (the others' shapes take the
// cuBLAS path).
typedef struct {
    int64_t hits, misses, evictions;
    int entries, usable;
} cuda_linear_cache_stats;
cuda_linear_cache_stats cuda_linear_cache_get_stats(int device_index);
#endif
#ifdef __cplusplus
}
#endif
