// A whole file mapped read-only into memory, for the readers of large weight files (.pth,
// .safetensors, HDF5 checkpoints): the pages come from the page cache, nothing is copied.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "io/tensor_list.h"
#include "tensor/error.h"

typedef struct {
    const uint8_t *data; // NULL for an empty file
    size_t size;
} file_map;

// PETAL_ERR_IO naming the path when the file cannot be opened or mapped.
petal_status file_map_open(const char *path, file_map *m);
void file_map_close(file_map *m);

// Maps `path` and runs a reader of tensors from memory over it (pth_read_memory, ...): the file
// variant of each such reader. `out` is initialised here and empty on failure.
petal_status file_map_read_tensors(const char *path, tensor_list *out,
                                   petal_status (*read_memory)(const char *path,
                                                               const uint8_t *data, size_t size,
                                                               tensor_list *out));
