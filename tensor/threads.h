// One thread budget for OpenMP kernels and OpenBLAS GEMMs (they share libgomp's pool when OpenBLAS
// is the OpenMP build), set from PETAL_NUM_THREADS or threads_set.
#pragma once

// Reads PETAL_NUM_THREADS (default: the OpenMP default) once; called by the CPU backend.
void threads_init(void);
void threads_set(int n);
int threads_get(void);
