#include "nn/dropout.h"

#include "ops/ops.h"

tensor *nn_dropout(tensor *x, double p, const nn_ctx *ctx) {
    return tensor_dropout(x, p, ctx->training, ctx->rng);
}

tensor *nn_drop_path(tensor *x, double p, const nn_ctx *ctx) {
    if (!ctx->training || p == 0) return tensor_dropout(x, 0, false, NULL); // an alias of x
    int64_t shape[PETAL_MAX_DIMS] = {x->shape[0]};
    for (int d = 1; d < x->ndim; d++) shape[d] = 1;
    tensor *ones = tensor_ones(x->dtype, x->ndim, shape); // one keep/drop draw per sample
    tensor *moved =
        x->device.type == PETAL_CPU ? ones : nn_consume(ones, tensor_to(ones, x->device));
    tensor *mask = nn_consume(moved, tensor_dropout(moved, p, true, ctx->rng)); // 0 or 1/(1-p)
    return nn_consume(mask, tensor_mul(x, mask));
}
