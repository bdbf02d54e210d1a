// LayerNorm over the last dim, with weight (ones) and bias (zeros) registered as
// "<name>.weight" and "<name>.bias" (no weight decay).
#pragma once

#include "nn/nn.h"

typedef struct {
    tensor *weight, *bias; // (D), owned by the registry
    double eps;
} nn_layer_norm;

void nn_layer_norm_init(nn_layer_norm *ln, nn_builder *b, const char *name, int64_t dim, double eps,
                        modality tag);
tensor *nn_layer_norm_forward(const nn_layer_norm *ln, tensor *x);
