#include "nn/embedding.h"

#include "ops/ops.h"

void nn_embedding_init(nn_embedding *e, nn_builder *b, const char *name, int64_t num, int64_t dim,
                       modality tag) {
    char buf[NN_NAME_MAX];
    e->weight = nn_param(b, nn_name(buf, "%s.weight", name), SHAPE(num, dim), tag, true);
    nn_init_weight(b, e->weight, NN_INIT_NORMAL);
}

tensor *nn_embedding_forward(const nn_embedding *e, tensor *ids) {
    return tensor_embedding(e->weight, ids);
}
