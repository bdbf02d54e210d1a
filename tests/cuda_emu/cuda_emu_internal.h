// What the host emulator's files share (runtime.cc, launch.cc, cublas_emu.cc).
#pragma once

#include <stddef.h>

#include "cuda_runtime.h"

// Records err as the last error (unless it is cudaSuccess) and returns it.
cudaError_t cuda_emu_fail(cudaError_t err);
int cuda_emu_device_count(void);
// The current device, or the error a call on it would get.
cudaError_t cuda_emu_current_device(int *device);
cudaError_t cuda_emu_check_stream(cudaStream_t stream);
// Whether [p, p + n) lies in one allocation of `device` (-1: pinned host memory).
extern "C" bool cuda_emu_is_memory_of(const void *p, size_t n, int device);
// The device whose memory p points into (or just past), -1 for pinned host memory, -2 for none.
int cuda_emu_memory_device(const void *p);
// As cuda_emu_check_stream, and the stream must belong to the current device.
cudaError_t cuda_emu_check_launch_stream(cudaStream_t stream);
// Holds a stream (delta +1) until released (-1): meanwhile cudaStreamQuery says
// cudaErrorNotReady and work queued on it waits, as behind a kernel still running. What the NCCL
// stand-in (nccl_emu.cc) does while a collective waits for the other ranks.
extern "C" void cuda_emu_stream_hold(cudaStream_t stream, int delta);
