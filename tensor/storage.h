// Refcounted device memory and the per-device byte counters (docs/architecture.md "Memory model").
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tensor/tensor.h"

// Allocates nbytes on `device` (64-byte aligned on the CPU); aborts with the sizes if it cannot.
tensor_storage *storage_new(petal_device device, size_t nbytes);
void storage_retain(tensor_storage *s);
void storage_release(tensor_storage *s);

typedef struct {
    size_t current;   // bytes held by live storages
    size_t peak;      // maximum of current since start or the last memory_reset_peak
    int64_t n_allocs; // storages allocated so far
    int64_t n_live;   // storages alive now
    size_t reserved;  // bytes the backend holds from the system (its block cache included)
} memory_stats;

memory_stats memory_get_stats(petal_device device);
void memory_reset_peak(petal_device device);
// Returns the backend's cached blocks to the system (reserved drops to what live tensors use).
void memory_empty_cache(petal_device device);
