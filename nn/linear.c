#include "nn/linear.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "tensor/error.h"

void nn_linear_init(nn_linear *l, nn_builder *b, const char *name, int64_t in, int64_t out,
                    bool bias, modality tag, nn_init init) {
    char buf[NN_NAME_MAX];
    memset(l, 0, sizeof *l);
    l->name = strdup(name);
    PETAL_CHECK(l->name != NULL, "nn_linear_init: out of host memory");
    l->in = in;
    l->out = out;
    l->weight = nn_param(b, nn_name(buf, "%s.weight", name), SHAPE(out, in), tag, true);
    registry_find(b->registry, buf)->linear = l;
    nn_init_weight(b, l->weight, init);
    if (!bias) return;
    l->bias = nn_param(b, nn_name(buf, "%s.bias", name), SHAPE(out), tag, false);
    if (init == NN_INIT_TORCH && !b->skip_init) {
        double bound = 1.0 / sqrt((double)in);
        tensor_uniform_(l->bias, -bound, bound, b->rng);
    }
}

void nn_linear_free(nn_linear *l) {
    while (l->deltas) {
        nn_delta *d = l->deltas;
        l->deltas = d->next;
        if (d->free) d->free(d);
    }
    free(l->name);
    l->name = NULL;
}

tensor *nn_linear_gelu_forward(const nn_linear *l, tensor *x, const nn_ctx *ctx) {
    bool plain = l->bias != NULL;
    for (const nn_delta *d = l->deltas; d && plain; d = d->next) plain = d->merged;
    tensor *y = plain ? tensor_linear(x, l->weight, NULL) : nn_linear_forward(l, x, ctx);
    return nn_consume(y, plain ? tensor_add_gelu(y, l->bias) : tensor_gelu(y));
}

void nn_linear_attach(nn_linear *l, nn_delta *d) {
    d->next = NULL;
    nn_delta **tail = &l->deltas;
    while (*tail) tail = &(*tail)->next;
    *tail = d;
}

// The Linear of x: base (its product x W^T + b, computed elsewhere) or, when base is NULL, the
// product itself, plus the deltas that are not merged into W. Low-rank deltas accumulate onto the
// product by GEMMs; any other delta is added.
static tensor *forward_on(const nn_linear *l, tensor *base, tensor *x, const nn_ctx *ctx) {
    tensor *z[LINEAR_MAX_TERMS] = {0}, *v[LINEAR_MAX_TERMS] = {0};
    int n = 0;
    for (nn_delta *d = l->deltas; d && n < LINEAR_MAX_TERMS; d = d->next)
        if (!d->merged && d->lowrank) {
            z[n] = d->lowrank(d, x, ctx, &v[n]);
            n++;
        }
    tensor *y = !base   ? tensor_linear_lowrank(x, l->weight, l->bias, n, z, v)
                : n > 0 ? tensor_add_lowrank(base, n, z, v)
                        : tensor_reshape(base, base->ndim, base->shape); // the caller's to free
    for (int k = 0; k < n; k++) {
        tensor_free(z[k]);
        tensor_free(v[k]);
    }
    int fused = 0;
    for (nn_delta *d = l->deltas; d; d = d->next) {
        if (d->merged || (d->lowrank && fused++ < n)) continue;
        tensor *delta = d->forward(d, x, ctx);
        y = nn_consume(y, nn_consume(delta, tensor_add(y, delta)));
    }
    return y;
}

tensor *nn_linear_forward(const nn_linear *l, tensor *x, const nn_ctx *ctx) {
    return forward_on(l, NULL, x, ctx);
}

tensor *nn_linear_forward_on(const nn_linear *l, tensor *base, tensor *x, const nn_ctx *ctx) {
    char sb[SHAPE_STR_MAX], sx[SHAPE_STR_MAX];
    bool ok = base->ndim == x->ndim && base->shape[base->ndim - 1] == l->out &&
              x->shape[x->ndim - 1] == l->in;
    for (int d = 0; ok && d < x->ndim - 1; d++) ok = base->shape[d] == x->shape[d];
    PETAL_CHECK(ok, "nn_linear_forward_on: '%s' (%lld -> %lld) given product %s for input %s",
                l->name, (long long)l->in, (long long)l->out,
                shape_str(base->ndim, base->shape, sb, sizeof sb),
                shape_str(x->ndim, x->shape, sx, sizeof sx));
    return forward_on(l, base, x, ctx);
}
