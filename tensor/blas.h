// OpenBLAS's kernel choice. A DYNAMIC_ARCH OpenBLAS (Debian's) picks its kernels by CPU model when
// it loads; a model newer than the library (Debian 12's 0.3.21 on a 5th-generation Xeon, model
// 207) gets the SSE3 "Prescott" kernels, and every GEMM runs about 4.7x slower than it can (33
// against 155 GFLOP/s on one core). OpenBLAS reads OPENBLAS_CORETYPE only when it loads, before
// main, so the fix is an environment variable: threads_reexec (tensor/threads.h) sets it and
// starts the program again, and a program that does not call it gets one warning naming it.
#pragma once

#include <stdbool.h>

// The kernel set OpenBLAS runs ("Haswell", "SkylakeX", "Prescott", ...).
const char *blas_core_name(void);
// The OPENBLAS_CORETYPE this CPU should have when OpenBLAS chose a kernel set older than the
// CPU's vector instructions (pre-AVX2 kernels on an AVX2 or AVX-512 CPU): "Haswell" or
// "SkylakeX". NULL when its choice is right for the CPU.
const char *blas_core_advice(void);
// Prints, once per process, what blas_core_advice says to stderr; the CPU backend calls it at
// its first GEMM. Returns whether OpenBLAS's choice looked wrong.
bool blas_core_warn_once(void);
