// The bytes of tensor storage one weights file may make petal allocate (docs/checkpoint-format.md
// "Memory a file may ask for"): the .pth, .safetensors and HDF5 readers charge every storage they
// allocate to one budget per file, so a small crafted file (a zero-stride view named a thousand
// times, hard links to one huge compressed dataset) is refused before it exhausts memory.
//
// The limit is 16 x the file's size + 16 MiB (a real file stores each tensor once, so its tensors
// fit in about its own size), or what PETAL_LOAD_MAX_BYTES says: a byte count, with an optional
// K, M, G or T suffix (powers of 1024), that replaces the default (to raise or lower it).
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tensor/dtype.h"
#include "tensor/error.h"

#define LOAD_BUDGET_ENV "PETAL_LOAD_MAX_BYTES"

typedef struct {
    const char *path; // the file, for messages
    uint64_t limit, used;
    bool from_env; // the limit is PETAL_LOAD_MAX_BYTES's
} load_budget;

// The default limit for a file of `file_size` bytes.
uint64_t load_budget_default(uint64_t file_size);
// PETAL_ERR_ARG naming the variable and its value when PETAL_LOAD_MAX_BYTES is not a byte count.
petal_status load_budget_init(load_budget *b, const char *path, uint64_t file_size);
// Charges a tensor of `dtype` and `shape` (dims not yet checked: negative or overflowing ones are
// refused too) for entry `entry`; *bytes (may be NULL) gets its size. PETAL_ERR_FORMAT naming the
// file, the entry, the limit and how to raise it when the file's total would pass the limit.
petal_status load_budget_take_shape(load_budget *b, const char *entry, petal_dtype dtype, int ndim,
                                    const int64_t *shape, uint64_t *bytes);
// The same for `bytes` bytes of raw storage.
petal_status load_budget_take(load_budget *b, const char *entry, uint64_t bytes);
