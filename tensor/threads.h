// One thread budget for OpenMP kernels and OpenBLAS GEMMs (they share libgomp's pool when OpenBLAS
// is the OpenMP build), set from PETAL_NUM_THREADS or threads_set.
#pragma once

// Reads PETAL_NUM_THREADS (default: the OpenMP default) once; called by the CPU backend.
void threads_init(void);
// Sets, where the user has not, what the thread libraries read only when they load (before
// main), then executes the program again (same path, arguments and pid) if it set anything:
//   OPENBLAS_CORETYPE  when OpenBLAS mistook this CPU for an older one (tensor/blas.h);
//   GOMP_SPINCOUNT     10000 unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set: libgomp's idle
//                      threads spin about 30x shorter before they sleep, so a process sharing the
//                      cores (a second rank, a data loader, a build) slows petal far less
//                      (docs/design.md "Threads").
// Call it first in main, before any thread starts or MPI_Init. It returns, having changed
// nothing, when there is nothing to set or when the exec fails (Linux only: /proc/self).
void threads_reexec(void);
void threads_set(int n);
int threads_get(void);
