// PETAL_HD marks a function that the CPU backend and the CUDA kernels share: compiled for both
// host and device under nvcc, plain C elsewhere (the host emulator, tests/cuda_emu, compiles the
// kernels as host C++ and so takes the plain form too).
#pragma once

#ifdef __CUDACC__
#define PETAL_HD __host__ __device__
#else
#define PETAL_HD
#endif
