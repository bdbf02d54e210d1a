// Embedding table "<name>.weight" (num, dim), rows picked by integer ids.
#pragma once

#include "nn/nn.h"

typedef struct {
    tensor *weight; // (num, dim), owned by the registry
} nn_embedding;

void nn_embedding_init(nn_embedding *e, nn_builder *b, const char *name, int64_t num, int64_t dim,
                       modality tag);
tensor *nn_embedding_forward(const nn_embedding *e, tensor *ids); // (ids..., dim)
