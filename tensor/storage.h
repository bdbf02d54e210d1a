// Refcounted device memory and the per-device byte counters (docs/architecture.md "Memory model").
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tensor/tensor.h"

// Allocates nbytes on `device` (64-byte aligned on the CPU); aborts with the sizes if it cannot.
tensor_storage *storage_new(petal_device device, size_t nbytes);
// The same, zero-filled. On the CPU fresh pages are zero already and are not touched: memory a
// checkpoint overwrites at once is written once, and shape-only uses (`petal params`) cost none.
tensor_storage *storage_new_zeroed(petal_device device, size_t nbytes);
void storage_retain(tensor_storage *s);
void storage_release(tensor_storage *s);
// Moves a leaf (and its gradient, if any) to another device in place: the tensor keeps its
// identity, so the models, PETL and optimizers that point at it need not be told. Its data
// becomes contiguous in a new storage; other views of the old storage stay where they were.
void tensor_move_(tensor *t, petal_device device);

typedef struct {
    size_t current;   // bytes held by live storages
    size_t peak;      // maximum of current since start or the last memory_reset_peak
    int64_t n_allocs; // storages allocated so far
    int64_t n_live;   // storages alive now
    size_t reserved;  // bytes the backend holds from the system (its block cache included)
} memory_stats;

memory_stats memory_get_stats(petal_device device);
// The host memory petal may use: the machine's RAM, or the cgroup's limit (a container's) when
// that is lower. Sizes are checked against it before anything is allocated.
size_t memory_host_limit(void);
void memory_reset_peak(petal_device device);
// Calls hook(device, bytes in use) each time a device's peak rises, outside the counters' lock
// and on the allocating thread; NULL (the default) stops it. autograd/memory_profile.c attributes
// the peak through it.
void memory_set_peak_hook(void (*hook)(petal_device device, size_t current));
// Returns the backend's cached blocks to the system (reserved drops to what live tensors use).
void memory_empty_cache(petal_device device);
