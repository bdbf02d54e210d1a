// Any weight file petal reads, told apart by its first bytes (not its name): a torch.save zip
// (.pth, .bin, .pt), a .safetensors file, or a petal HDF5 checkpoint.
#pragma once

#include "io/checkpoint.h"
#include "io/tensor_list.h"
#include "tensor/error.h"

typedef enum { WEIGHTS_PTH, WEIGHTS_SAFETENSORS, WEIGHTS_CHECKPOINT } weights_format;

const char *weights_format_name(weights_format format); // "pth", "safetensors", "checkpoint"
// PETAL_ERR_IO when the file cannot be read, PETAL_ERR_FORMAT when it is none of the three.
petal_status weights_sniff(const char *path, weights_format *format);
// Fills `out` (initialised here) with the file's tensors; *format (may be NULL) says which it was,
// and *info (may be NULL) gets a petal checkpoint's attributes (config, vocabulary), zeros for the
// other formats; free it with checkpoint_info_free.
petal_status weights_read(const char *path, tensor_list *out, weights_format *format,
                          checkpoint_info *info);
