// OpenBLAS's kernel choice. A DYNAMIC_ARCH OpenBLAS (Debian's) picks its kernels by CPU model when
// it loads; a model newer than the library (Debian 12's 0.3.21 on a 5th-generation Xeon, model
// 207) gets the SSE3 "Prescott" kernels, and every GEMM runs about 4.7x slower than it can (33
// against 155 GFLOP/s on one core). OpenBLAS reads OPENBLAS_CORETYPE only when it loads, before
// main, so the fix is an environment variable: blas_core_reexec sets it and starts the program
// again, and a program that does not call it gets one warning naming the variable to set.
#pragma once

#include <stdbool.h>

// The kernel set OpenBLAS runs ("Haswell", "SkylakeX", "Prescott", ...).
const char *blas_core_name(void);
// The OPENBLAS_CORETYPE this CPU should have when OpenBLAS chose a kernel set older than the
// CPU's vector instructions (pre-AVX2 kernels on an AVX2 or AVX-512 CPU): "Haswell" or
// "SkylakeX". NULL when its choice is right for the CPU.
const char *blas_core_advice(void);
// When blas_core_advice is not NULL and OPENBLAS_CORETYPE is unset: sets it and re-executes the
// program (Linux: /proc/self/exe with the same arguments, environment and pid). Call it first in
// main, before any thread or MPI_Init. Returns (without restarting) when nothing is to be done,
// when OPENBLAS_CORETYPE is set already (the user's choice stands) or when the exec fails.
void blas_core_reexec(void);
// Prints, once per process, what blas_core_advice says to stderr; the CPU backend calls it at
// its first GEMM. Returns whether OpenBLAS's choice looked wrong.
bool blas_core_warn_once(void);
