// PyTorch .pth files (torch.save's zip format): the state dict as named petal tensors.
//
// The archive holds <prefix>/data.pkl (a pickle, read by io/pickle.h, which never runs code) and
// <prefix>/data/<key> (raw little-endian storages). A {'model': ...} or {'state_dict': ...}
// wrapper is unwrapped and its other entries (optimizer, config, epoch) skipped. Tensors keep the
// stored dtype (f32, f16, bf16, f64, i64, i32). A storage that entries view as contiguous blocks
// (tied weights, slices) is copied out of the archive once and those entries are views of it, as
// torch.load shares it; any other view (a transpose, an expanded zero-stride tensor) is gathered
// into a contiguous tensor of its own. Every tensor comes out contiguous, and what they allocate is
// charged to the file's budget (io/load_budget.h).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "io/tensor_list.h"
#include "tensor/error.h"

// Fills `out` (initialised here) with the state dict's tensors in file order. Errors
// (PETAL_ERR_IO / _FORMAT) name the file, the entry and what was wrong; on failure `out` is empty.
petal_status pth_read(const char *path, tensor_list *out);
// The same for a file already in memory; `path` names it in messages.
petal_status pth_read_memory(const char *path, const uint8_t *data, size_t size, tensor_list *out);
