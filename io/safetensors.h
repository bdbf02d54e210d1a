// .safetensors files (the HF weights): an 8-byte little-endian header length, a JSON header
// {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the data. Checked as the reference implementation does: the header is at most 100 MiB and
// fits in the file, every tensor's bytes match its dtype and shape, and the tensors tile the data
// section in order, without gaps or overlaps. The header is parsed within bounds that follow from
// its shape (nesting 3 deep, arrays of at most PETAL_MAX_DIMS integers, a value per 4 bytes), so a
// hostile one is refused early and cheaply. Dtypes F32, F16, BF16, F64, I64, I32; __metadata__
// must map strings to strings and is otherwise ignored. Tensors are charged to the file's budget
// (io/load_budget.h).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "io/tensor_list.h"
#include "tensor/error.h"

// Fills `out` (initialised here) with the tensors in header order. Errors (PETAL_ERR_IO, _FORMAT,
// or _KEY for a missing header field) name the file, the tensor and what was wrong; on failure
// `out` is empty.
petal_status safetensors_read(const char *path, tensor_list *out);
// The same for a file already in memory; `path` names it in messages.
petal_status safetensors_read_memory(const char *path, const uint8_t *data, size_t size,
                                     tensor_list *out);
