#include "nn/layer_norm.h"

#include "ops/ops.h"

void nn_layer_norm_init(nn_layer_norm *ln, nn_builder *b, const char *name, int64_t dim, double eps,
                        modality tag) {
    char buf[NN_NAME_MAX];
    ln->weight = nn_param(b, nn_name(buf, "%s.weight", name), SHAPE(dim), tag, false);
    ln->bias = nn_param(b, nn_name(buf, "%s.bias", name), SHAPE(dim), tag, false);
    if (!b->skip_init) tensor_fill_(ln->weight, 1.0);
    ln->eps = eps;
}

tensor *nn_layer_norm_forward(const nn_layer_norm *ln, tensor *x) {
    return tensor_layer_norm(x, ln->weight, ln->bias, ln->eps);
}
