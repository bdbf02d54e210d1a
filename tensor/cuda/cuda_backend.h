// The CUDA backend seen from C (train/dist.c and backend.c): device count, the backend table and
// the stream of a device. Only in builds with PETAL_HAVE_CUDA.
#pragma once

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "tensor/backend.h"

extern const backend cuda_backend;

// CUDA devices usable by petal (0 when there is no driver or no device).
int cuda_device_count(void);

// The stream petal runs device `device_index`'s work on, with the device made current: NCCL
// calls join it so they are ordered with the kernels that produce and consume their tensors.
cudaStream_t cuda_device_stream(int device_index);
#ifdef __cplusplus
}
#endif
