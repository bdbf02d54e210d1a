#include "nn/nn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "tensor/error.h"

const char *nn_name(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, NN_NAME_MAX, fmt, ap);
    va_end(ap);
    PETAL_CHECK(n >= 0 && n < NN_NAME_MAX, "nn_name: name longer than %d bytes", NN_NAME_MAX - 1);
    return buf;
}

tensor *nn_param(nn_builder *b, const char *name, int ndim, const int64_t *shape, modality tag,
                 bool decay) {
    tensor *t = tensor_zeros(b->dtype, ndim, shape);
    registry_add(b->registry, name, t, tag, decay);
    return t;
}

void nn_init_weight(const nn_builder *b, tensor *w, nn_init init) {
    if (b->skip_init) return;
    rng_generator *g = b->rng;
    switch (init) {
    case NN_INIT_TORCH:
        init_kaiming_uniform_(w, sqrt(5.0), g);
        return;
    case NN_INIT_TRUNC_NORMAL:
        tensor_trunc_normal_(w, 0.0, 0.02, -2.0, 2.0, g);
        return;
    case NN_INIT_NORMAL:
        tensor_normal_(w, 0.0, 0.02, g);
        return;
    case NN_INIT_ZEROS:
        tensor_fill_(w, 0.0);
        return;
    }
    PETAL_CHECK(0, "nn_init_weight: unknown init %d", (int)init);
}
