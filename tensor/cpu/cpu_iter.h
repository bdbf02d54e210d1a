// Strided N-d iteration for element-wise CPU kernels (the idea of PyTorch's TensorIterator, small).
//
// Operand 0 is the output and defines the iteration shape; the others are broadcast to it. Dims of
// size 1 are dropped and dims that are contiguous in every operand are merged, so most loops become
// one flat loop. The work is split over OpenMP threads by element range; a span function receives
// runs of the innermost dim with per-operand byte strides.
#pragma once

#include <stdint.h>

#include "tensor/tensor.h"

#define CPU_ITER_MAX_OPS 4

typedef struct {
    int n_ops, ndim;
    int64_t numel;
    int64_t shape[PETAL_MAX_DIMS];                     // innermost dim last
    int64_t strides[CPU_ITER_MAX_OPS][PETAL_MAX_DIMS]; // in bytes
    char *data[CPU_ITER_MAX_OPS];
} cpu_iter;

// n consecutive elements of the innermost dim: operand k starts at ptrs[k], stride strides[k].
typedef void (*cpu_span_fn)(int64_t n, char *const *ptrs, const int64_t *strides, const void *ctx);

void cpu_iter_build(cpu_iter *it, int n_ops, const tensor *const *ops);
void cpu_iter_run(const cpu_iter *it, cpu_span_fn fn, const void *ctx);

// Below this many elements a kernel runs on one thread: thread start-up would cost more.
#define CPU_PARALLEL_GRAIN 32768
