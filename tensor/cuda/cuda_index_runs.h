// The index math of the CUDA backend's sorted index_add (tensor/cuda/cuda_index.cu), in plain C so
// that the CPU suites check it (tests/cuda/test_cuda_tiling.c).
//
// index_add with many indices (the backward of an embedding: B*T token ids into a vocabulary)
// sorts the (index, position) pairs by index with a stable radix sort, so the positions of one
// index form a run in ascending order. One thread per (run, column) then adds its run's source
// rows in that order: the order in which the CPU loop adds them to that output row, so the sum is
// the CPU's bit for bit, and no two threads write one element (no atomics, deterministic).
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tensor/elementwise.h" // PETAL_HD

// Below this many indices the unsorted kernel (a thread per column, all indices in order) wins.
#define INDEX_SORT_MIN 64

// The sort key of index i into [0, len): i itself, or len for a bad index, so that every bad one
// sorts into the last run, which is reported, never added. len < INT32_MAX.
PETAL_HD static inline int32_t index_sort_key(int64_t i, int64_t len) {
    return i >= 0 && i < len ? (int32_t)i : (int32_t)len;
}

// The key bits the radix sort needs for keys in [0, len].
static inline int index_sort_bits(int64_t len) {
    int bits = 1;
    while (bits < 31 && ((int64_t)1 << bits) <= len) bits++;
    return bits;
}

// Whether sorted entry p starts a run of equal keys.
PETAL_HD static inline bool index_run_starts(const int32_t *keys, int64_t p) {
    return p == 0 || keys[p - 1] != keys[p];
}
