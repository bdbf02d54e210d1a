#include "train/sync.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "ops/ops.h"

// The tensors every rank must hold equal, in registry order: what the resume file saves.
static int model_state(const train_model *tm, tensor **out) {
    const param_registry *r = tm->m->registry;
    int n = 0;
    for (int i = 0; i < r->n; i++)
        if (r->items[i].trainable || r->items[i].buffer) {
            if (out) out[n] = r->items[i].value;
            n++;
        }
    return n;
}

static petal_status sync_optimizer(dist_comm *c, optim_adamw *opt) {
    if (opt->n == 0) return PETAL_OK;
    tensor *steps = tensor_from_data(PETAL_I64, SHAPE(opt->n), opt->steps);
    petal_status s = dist_broadcast(c, &steps, 1, 0);
    if (!s) memcpy(opt->steps, tensor_data_i64(steps), (size_t)opt->n * sizeof *opt->steps);
    tensor_free(steps);
    for (int i = 0; i < opt->n && !s; i++) {
        if (opt->steps[i] == 0) continue; // moments not made yet, on any rank
        if (!opt->m[i]) {
            opt->m[i] = tensor_keep(tensor_zeros_like(opt->params[i]));
            opt->v[i] = tensor_keep(tensor_zeros_like(opt->params[i]));
        }
        tensor *mv[] = {opt->m[i], opt->v[i]};
        s = dist_broadcast(c, mv, 2, 0);
    }
    return s;
}

static petal_status sync_position(dist_comm *c, train_position *pos) {
    int64_t v[] = {pos->step,          pos->epoch,     pos->batch,
                   pos->metrics_bytes, pos->best_step, pos->world};
    tensor *p = tensor_from_data(PETAL_I64, SHAPE(6), v);
    tensor *b = tensor_from_data(PETAL_F64, SHAPE(1), &pos->best);
    tensor *both[] = {p, b};
    petal_status s = dist_broadcast(c, both, 2, 0);
    if (!s) {
        const int64_t *w = tensor_data_i64(p);
        pos->step = w[0];
        pos->epoch = w[1];
        pos->batch = w[2];
        pos->metrics_bytes = w[3];
        pos->best_step = w[4];
        pos->world = (int)w[5];
        pos->best = ((const double *)b->storage->data)[b->offset];
    }
    tensor_free(p);
    tensor_free(b);
    return s;
}

petal_status sync_start(dist_comm *c, train_model *tm, optim_adamw *opt, train_position *pos) {
    int n = model_state(tm, NULL);
    tensor **ts = malloc((size_t)(n + 1) * sizeof *ts);
    PETAL_CHECK(ts != NULL, "sync_start: out of host memory");
    model_state(tm, ts);
    petal_status s = dist_broadcast(c, ts, n, 0);
    free(ts);
    if (!s) s = sync_optimizer(c, opt);
    if (!s) s = sync_position(c, pos);
    return s;
}

petal_status sync_grads(dist_comm *c, optim_adamw *opt) {
    for (int i = 0; i < opt->n; i++) {
        tensor *p = opt->params[i];
        if (!p->grad) p->grad = tensor_keep(tensor_zeros_like(p));
    }
    tensor **gs = malloc((size_t)(opt->n + 1) * sizeof *gs);
    PETAL_CHECK(gs != NULL, "sync_grads: out of host memory");
    for (int i = 0; i < opt->n; i++) gs[i] = opt->params[i]->grad;
    petal_status s = dist_all_reduce(c, gs, opt->n, DIST_AVG);
    free(gs);
    return s;
}

petal_status sync_parts(dist_comm *c, step_parts *p) {
    if (p->n == 0) return PETAL_OK;
    tensor *v = tensor_from_data(PETAL_F64, SHAPE(p->n), p->values);
    petal_status s = dist_all_reduce(c, &v, 1, DIST_AVG);
    if (!s) memcpy(p->values, v->storage->data, (size_t)p->n * sizeof *p->values);
    tensor_free(v);
    return s;
}

rng_generator sync_rank_rng(rng_generator base, int rank) {
    if (rank == 0) return base;
    // splitmix64 of (key, rank): keys far apart for neighbouring ranks
    uint64_t z = base.seed + 0x9E3779B97F4A7C15u * (uint64_t)rank;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return (rng_generator){z ^ (z >> 31), 0};
}

petal_status sync_gather_rngs(dist_comm *c, rng_generator mine, rng_generator *rngs) {
    tensor *x = tensor_from_data(PETAL_I64, SHAPE(1, 2),
                                 (int64_t[]){(int64_t)mine.seed, (int64_t)mine.offset});
    tensor *all;
    petal_status s = dist_all_gather(c, x, &all);
    tensor_free(x);
    if (s) return s;
    const int64_t *v = tensor_data_i64(all);
    for (int r = 0; r < dist_world_size(c); r++)
        rngs[r] = (rng_generator){(uint64_t)v[2 * r], (uint64_t)v[2 * r + 1]};
    tensor_free(all);
    return PETAL_OK;
}
