#include "train/sync.h"

#include <stdint.h>
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

// p's gradient, zeros when it got none: every rank must send the same list of tensors.
static tensor *grad_or_zeros(tensor *p) {
    if (!p->grad) p->grad = tensor_keep(tensor_zeros_like(p));
    return p->grad;
}

petal_status sync_grads(dist_comm *c, optim_adamw *opt) {
    tensor **gs = malloc((size_t)(opt->n + 1) * sizeof *gs);
    PETAL_CHECK(gs != NULL, "sync_grads: out of host memory");
    for (int i = 0; i < opt->n; i++) gs[i] = grad_or_zeros(opt->params[i]);
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

// ---- averaging overlapped with the backward pass ----

typedef struct {
    tensor *leaf;
    int index; // in opt->params
} leaf_index;

struct sync_overlap {
    dist_comm *c;
    optim_adamw *opt;
    leaf_index *by_leaf; // (opt->n) sorted by the tensor's address
    int *bucket_of;      // (opt->n) each parameter's bucket
    int *first;          // (n_buckets + 1) bucket b holds order[first[b] .. first[b + 1])
    int *order;          // (opt->n) parameter indices, bucket after bucket
    int *left;           // (n_buckets) gradients not complete yet
    dist_pending **pending;
    int n_buckets, begun;
    petal_status failed; // the first error of a callback, reported by finish
};

static int by_address(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const leaf_index *)a)->leaf;
    uintptr_t y = (uintptr_t)((const leaf_index *)b)->leaf;
    return x < y ? -1 : x > y;
}

sync_overlap *sync_overlap_new(dist_comm *c, optim_adamw *opt, double bucket_mb) {
    sync_overlap *o = calloc(1, sizeof *o);
    int n = opt->n;
    PETAL_CHECK(o != NULL, "sync_overlap: out of host memory");
    *o = (sync_overlap){.c = c, .opt = opt};
    o->by_leaf = malloc((size_t)(n + 1) * sizeof *o->by_leaf);
    o->bucket_of = malloc((size_t)(n + 1) * sizeof *o->bucket_of);
    o->first = malloc((size_t)(n + 2) * sizeof *o->first);
    o->order = malloc((size_t)(n + 1) * sizeof *o->order);
    PETAL_CHECK(o->by_leaf && o->bucket_of && o->first && o->order,
                "sync_overlap: out of host memory");
    double cap = bucket_mb * 1048576.0, bytes = 0;
    for (int k = 0; k < n; k++) {
        int i = n - 1 - k; // reverse registry order
        tensor *p = opt->params[i];
        double size = (double)tensor_numel(p) * dtype_size(p->dtype);
        if (k == 0 || bytes + size > cap) {
            o->first[o->n_buckets++] = k;
            bytes = 0;
        }
        bytes += size;
        o->order[k] = i;
        o->bucket_of[i] = o->n_buckets - 1;
        o->by_leaf[k] = (leaf_index){p, i};
    }
    o->first[o->n_buckets] = n;
    qsort(o->by_leaf, (size_t)n, sizeof *o->by_leaf, by_address);
    o->left = calloc((size_t)o->n_buckets + 1, sizeof *o->left);
    o->pending = calloc((size_t)o->n_buckets + 1, sizeof *o->pending);
    PETAL_CHECK(o->left && o->pending, "sync_overlap: out of host memory");
    return o;
}

void sync_overlap_start(sync_overlap *o) {
    for (int b = 0; b < o->n_buckets; b++) o->left[b] = o->first[b + 1] - o->first[b];
    o->begun = 0;
    o->failed = PETAL_OK;
}

// Begins bucket b: its gradients (zeros for a parameter that got none) averaged over the ranks.
static void begin_bucket(sync_overlap *o, int b) {
    int n = o->first[b + 1] - o->first[b];
    tensor **gs = malloc((size_t)(n + 1) * sizeof *gs);
    PETAL_CHECK(gs != NULL, "sync_overlap: out of host memory");
    for (int k = 0; k < n; k++) gs[k] = grad_or_zeros(o->opt->params[o->order[o->first[b] + k]]);
    petal_status st = dist_all_reduce_begin(o->c, gs, n, DIST_AVG, &o->pending[b]);
    if (st && !o->failed) o->failed = st;
    free(gs);
}

// Begins, in bucket order, every bucket whose gradients are complete, up to the first that is not.
static void begin_ready(sync_overlap *o) {
    while (o->begun < o->n_buckets && o->left[o->begun] == 0 && !o->failed)
        begin_bucket(o, o->begun++);
}

void sync_overlap_leaf_done(tensor *leaf, void *ctx) {
    sync_overlap *o = ctx;
    leaf_index key = {leaf, 0};
    const leaf_index *hit = bsearch(&key, o->by_leaf, (size_t)o->opt->n, sizeof key, by_address);
    if (!hit) return; // a leaf that is not trained (an input that asked for its gradient)
    o->left[o->bucket_of[hit->index]]--;
    begin_ready(o);
    for (int b = 0; b < o->begun && !o->failed; b++) { // MPI moves messages inside its calls
        bool done;
        petal_status st = dist_pending_poll(o->pending[b], &done);
        if (st) o->failed = st;
    }
}

petal_status sync_overlap_finish(sync_overlap *o) {
    for (int b = o->begun; b < o->n_buckets && !o->failed; b++) o->left[b] = 0;
    begin_ready(o);
    petal_status st = o->failed;
    for (int b = 0; b < o->begun; b++) {
        petal_status w = dist_pending_wait(o->pending[b]);
        o->pending[b] = NULL;
        if (!st) st = w;
    }
    return st;
}

void sync_overlap_free(sync_overlap *o) {
    if (!o) return;
    free(o->by_leaf);
    free(o->bucket_of);
    free(o->first);
    free(o->order);
    free(o->left);
    free(o->pending);
    free(o);
}
