// Optimizers. They own their state tensors (allocated on first use, one per parameter, so only
// trainable parameters cost optimizer memory) and update parameters in place with no autograd.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tensor/tensor.h"

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
} adamw_config;
// torch.optim.AdamW's defaults.
#define ADAMW_DEFAULTS ((adamw_config){1e-3, 0.9, 0.999, 1e-8, 1e-2})

typedef struct {
    adamw_config cfg;
    int n;
    tensor **params; // borrowed: the caller keeps them alive
    tensor **m, **v; // first and second moments, NULL until the parameter first gets a gradient
    bool *decay;     // per parameter: apply weight decay (default true)
    int64_t *steps;  // per parameter: updates so far (its bias correction), as torch keeps them
} optim_adamw;

optim_adamw *adamw_new(tensor *const *params, int n, adamw_config cfg);
void adamw_free(optim_adamw *o);
void adamw_set_decay(optim_adamw *o, int i, bool decay); // e.g. off for biases and LayerNorm
// One step over every parameter that has a gradient (the others are left as they are).
void adamw_step(optim_adamw *o);
// Zeroes every gradient in place (keeps the buffers: no allocation in the next backward).
void adamw_zero_grad(optim_adamw *o);
