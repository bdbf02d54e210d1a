// LoRA (Hu et al. 2021, as huggingface/peft implements it): out += (alpha / r) B A dropout(x) with
// A (r, in) kaiming-uniform(a = sqrt 5) and B (out, r) zeros, on every Linear whose name matches
// one of the target globs. Parameters: "<linear>.lora_A.weight", "<linear>.lora_B.weight".
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/dropout.h"
#include "ops/ops.h"
#include "petl/internal.h"
#include "tensor/error.h"

typedef struct {
    nn_delta base;
    tensor *a, *b;
    double scaling, dropout;
} lora_delta;

// z = (alpha / r) A dropout(x) as (..., 1, r), v = B: out += z B^T (the scaling on the rank-r
// side).
static tensor *lora_lowrank(nn_delta *base, tensor *x, const nn_ctx *ctx, tensor **v) {
    lora_delta *d = (lora_delta *)base;
    tensor *xd = nn_dropout(x, d->dropout, ctx);
    tensor *h = nn_consume(xd, tensor_linear(xd, d->a, NULL));
    if (d->scaling != 1.0) h = nn_consume(h, tensor_mul_scalar(h, d->scaling));
    *v = petl_alias(d->b);
    return nn_consume(h, tensor_unsqueeze(h, -2));
}

static void lora_free(nn_delta *d) {
    free(d);
}

petal_status petl_lora_attach(petl_handle *h) {
    const lora_options *o = &h->cfg.lora;
    if (o->rank < 1)
        return petal_error(PETAL_ERR_ARG, "lora: rank %lld must be >= 1", (long long)o->rank);
    param_registry *r = h->m->registry;
    int attached = 0, n_entries = r->n; // entries added below are not targets
    char name[NN_NAME_MAX];
    for (int i = 0; i < n_entries; i++) {
        nn_linear *l = r->items[i].linear;
        if (!l || strstr(l->name, "_m.") || !petl_matches_any(o->targets, l->name)) continue;
        lora_delta *d = calloc(1, sizeof *d);
        PETAL_CHECK(d != NULL, "lora: out of host memory");
        d->base = (nn_delta){.kind = "lora",
                             .forward = petl_lowrank_forward,
                             .lowrank = lora_lowrank,
                             .free = lora_free,
                             .linear = true};
        modality tag = r->items[i].tag;
        d->a = petl_param(h, nn_name(name, "%s.lora_A.weight", l->name), SHAPE(o->rank, l->in), tag,
                          false);
        init_kaiming_uniform_(d->a, sqrt(5.0), &h->rng);
        d->b = petl_param(h, nn_name(name, "%s.lora_B.weight", l->name), SHAPE(l->out, o->rank),
                          tag, false);
        d->scaling = o->alpha / (double)o->rank;
        d->dropout = o->dropout;
        petl_add_delta(h, l, &d->base);
        attached++;
    }
    if (attached == 0)
        return petal_error(PETAL_ERR_ARG, "lora: no Linear layer matches the targets '%s'",
                           o->targets);
    return PETAL_OK;
}
