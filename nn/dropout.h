// Dropout and DropPath (stochastic depth), active only when ctx->training.
#pragma once

#include "nn/nn.h"

tensor *nn_dropout(tensor *x, double p, const nn_ctx *ctx);
// Zeroes whole samples (dim 0) with probability p and scales the rest by 1 / (1 - p), as timm's
// drop_path does inside residual branches.
tensor *nn_drop_path(tensor *x, double p, const nn_ctx *ctx);
