// Where a device's memory is at its allocator peak, counting what was allocated since the profile
// began (a training step's extra memory): the bytes the autograd graph's saved tensors hold,
// grouped by the op that saved them and the saved tensor's shape, the gradients waiting in a
// backward pass, and the rest (parameter gradients, optimizer state, forward outputs and
// temporaries that no node saved). `petal bench train --model ... --memory N` prints it.
//
//     memory_profile_begin(DEVICE_CPU);
//     autograd_backward(loss_of(model, batch), NULL, false);
//     memory_profile_print(stderr, 20);
//     memory_profile_end();
//
// A storage held by several saved tensors (one output saved by each consumer, or views of it)
// counts once, for the oldest node that saved it; a view counts its whole storage, which is what
// it keeps alive. Saved storages older than the profile (parameters a rule reads, buffers) cost
// the step nothing: they are summed apart, not in the rows. The snapshot is retaken whenever the
// bytes in use pass the last one by 1/512 (at least 64 KiB), so it lies within that of the true
// peak; with the profile off, an allocation costs one test. Only nodes recorded while the profile
// is on are seen, and nodes must be recorded on one thread (as autograd requires anyway).
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tensor/tensor.h"

typedef struct {
    const char *op; // the saving node's op name
    petal_dtype dtype;
    int ndim;
    int64_t shape[PETAL_MAX_DIMS]; // the saved tensor's
    int64_t count;                 // storages
    size_t bytes;
} memory_profile_row;

typedef struct {
    size_t base;         // bytes in use on the device when the profile began
    size_t in_use;       // bytes in use at the snapshot (0: no snapshot yet)
    size_t saved;        // held by saved tensors allocated since the start: the sum of the rows
    size_t saved_before; // held by saved tensors allocated before the start
    size_t grads; // held by nodes' pending gradients allocated since the start, saved by none
    int n_rows;
    const memory_profile_row *rows; // largest first; valid until the next profile call
} memory_profile;

// Starts profiling `device` (drops any earlier profile); the snapshot level starts at the bytes in
// use now.
void memory_profile_begin(petal_device device);
memory_profile memory_profile_get(void);
// The snapshot as a table: at most max_rows rows, then one line for the rows left out.
void memory_profile_print(FILE *f, int max_rows);
void memory_profile_end(void); // stops profiling and frees the profile
