// The host emulator's cuda_runtime.h (tests/cuda_emu/README.md). nvcc includes the real one in
// every .cu; the emulated build does the same with -include, so this brings the runtime API and,
// for C++, the device language the kernels are written in (cuda_emu_device.h).
#pragma once

#include "cuda_runtime_api.h"

#ifdef __cplusplus
#include "cuda_emu_device.h"
#endif
