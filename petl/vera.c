// VeRA (Kopiczko et al. 2024, as huggingface/peft implements it): one frozen random pair shared
// by every target,
//     vera_A (r, max_in), vera_B (max_out, r)   kaiming-uniform (gain sqrt 2: U(+-sqrt(6 /
//     fan_in))),
// drawn A then B from a generator seeded with vera.seed (peft's projection_prng_key), where
// max_in / max_out are the largest in / out widths over the targets; each target Linear slices
// them and learns two vectors:
//     out += lambda_b * B[:out] (lambda_d * A[:, :in] dropout(x))
// "<linear>.vera_lambda_d" (r) starts at d_init (0.1), "<linear>.vera_lambda_b" (out) at 0, so the
// model is unchanged at step 0. A and B are registered once as frozen state ("vera_A", "vera_B");
// a PETL checkpoint records the seed instead of carrying them (peft's save_projection=False).
#include <stdlib.h>
#include <string.h>

#include "nn/dropout.h"
#include "ops/ops.h"
#include "petl/internal.h"
#include "tensor/error.h"

typedef struct {
    nn_delta base;
    tensor *a, *b;               // the shared (r, max_in) and (max_out, r)
    tensor *lambda_d, *lambda_b; // (r), (out)
    int64_t in, out;
    double dropout;
} vera_delta;

// z = lambda_d * (A[:, :in] dropout(x)) as (..., 1, r), v = lambda_b[:, None] * B[:out].
static tensor *vera_lowrank(nn_delta *base, tensor *x, const nn_ctx *ctx, tensor **v) {
    vera_delta *d = (vera_delta *)base;
    tensor *a = tensor_slice(d->a, 1, 0, d->in, 1);  // (r, in)
    tensor *b = tensor_slice(d->b, 0, 0, d->out, 1); // (out, r)
    tensor *xd = nn_dropout(x, d->dropout, ctx);
    tensor *u = nn_consume(xd, nn_consume(a, petl_linear(xd, a))); // (..., r)
    tensor *z = nn_consume(u, tensor_mul(u, d->lambda_d));
    *v = nn_consume(b, petl_scaled_rows(b, d->lambda_b));
    return nn_consume(z, tensor_unsqueeze(z, -2));
}

static void vera_free(nn_delta *d) {
    free(d);
}

// The targets' Linear layers (momentum copies excluded); n_out of them.
static nn_linear **find_targets(petl_handle *h, int *n_out) {
    param_registry *r = h->m->registry;
    nn_linear **targets = calloc((size_t)r->n, sizeof *targets);
    PETAL_CHECK(targets != NULL, "vera: out of host memory");
    int n = 0;
    for (int i = 0; i < r->n; i++) {
        nn_linear *l = r->items[i].linear;
        if (l && !strstr(l->name, "_m.") && petl_matches_any(h->cfg.vera.targets, l->name))
            targets[n++] = l;
    }
    *n_out = n;
    return targets;
}

petal_status petl_vera_attach(petl_handle *h) {
    const vera_options *o = &h->cfg.vera;
    if (o->rank < 1)
        return petal_error(PETAL_ERR_ARG, "vera: rank %lld must be >= 1", (long long)o->rank);
    int n;
    nn_linear **targets = find_targets(h, &n);
    if (n == 0) {
        free(targets);
        return petal_error(PETAL_ERR_ARG, "vera: no Linear layer matches the targets '%s'",
                           o->targets);
    }
    int64_t max_in = 0, max_out = 0;
    for (int i = 0; i < n; i++) {
        if (targets[i]->in > max_in) max_in = targets[i]->in;
        if (targets[i]->out > max_out) max_out = targets[i]->out;
    }
    rng_generator g = {o->seed, 0};
    tensor *a = petl_param(h, "vera_A", SHAPE(o->rank, max_in), MODALITY_NONE, true);
    tensor *b = petl_param(h, "vera_B", SHAPE(max_out, o->rank), MODALITY_NONE, true);
    init_kaiming_uniform_(a, 0.0, &g); // a = 0: gain sqrt 2, as peft's _kaiming_init
    init_kaiming_uniform_(b, 0.0, &g);
    char name[NN_NAME_MAX];
    for (int i = 0; i < n; i++) {
        nn_linear *l = targets[i];
        modality tag = registry_find(h->m->registry, nn_name(name, "%s.weight", l->name))->tag;
        vera_delta *d = calloc(1, sizeof *d);
        PETAL_CHECK(d != NULL, "vera: out of host memory");
        d->base = (nn_delta){.kind = "vera",
                             .forward = petl_lowrank_forward,
                             .lowrank = vera_lowrank,
                             .free = vera_free,
                             .linear = true};
        d->a = a;
        d->b = b;
        d->in = l->in;
        d->out = l->out;
        d->dropout = o->dropout;
        d->lambda_d =
            petl_param(h, nn_name(name, "%s.vera_lambda_d", l->name), SHAPE(o->rank), tag, false);
        tensor_fill_(d->lambda_d, o->d_init);
        d->lambda_b =
            petl_param(h, nn_name(name, "%s.vera_lambda_b", l->name), SHAPE(l->out), tag, false);
        petl_add_delta(h, l, &d->base);
    }
    free(targets);
    return PETAL_OK;
}
