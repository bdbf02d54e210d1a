#include "train/resume.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "tensor/error.h"

enum {
    POS_STEP,
    POS_EPOCH,
    POS_BATCH,
    POS_SEED,
    POS_OFFSET,
    POS_METRICS,
    POS_BEST_STEP,
    POS_WORLD,
    POS_N
};

static bool saved_entry(const param_entry *e) {
    return e->trainable || e->buffer;
}

// The registry name of an optimizer's parameter.
static const char *param_name(const param_registry *r, const tensor *t) {
    for (int j = 0; j < r->n; j++)
        if (r->items[j].value == t) return r->items[j].name;
    PETAL_CHECK(false, "resume: an optimizer parameter is not in the model's registry");
    return NULL;
}

petal_status resume_save(const char *path, const train_model *tm, const optim_adamw *opt,
                         const train_position *pos, const rng_generator *rngs,
                         const char *config_json) {
    checkpoint_entries r = {0};
    const param_registry *model = tm->m->registry;
    for (int i = 0; i < model->n; i++)
        if (saved_entry(&model->items[i]))
            checkpoint_entries_add(&r, "model.", model->items[i].name, model->items[i].value);
    tensor *steps = tensor_empty(PETAL_I64, SHAPE(opt->n > 0 ? opt->n : 1));
    tensor_fill_(steps, 0);
    for (int i = 0; i < opt->n; i++) {
        tensor_data_i64(steps)[i] = opt->steps[i];
        if (!opt->m[i]) continue;
        checkpoint_entries_add(&r, "optim.m.", param_name(model, opt->params[i]), opt->m[i]);
        checkpoint_entries_add(&r, "optim.v.", param_name(model, opt->params[i]), opt->v[i]);
    }
    checkpoint_entries_add(&r, "", "optim.steps", steps);
    tensor *p = tensor_empty(PETAL_I64, SHAPE(POS_N));
    int64_t *v = tensor_data_i64(p);
    v[POS_STEP] = pos->step;
    v[POS_EPOCH] = pos->epoch;
    v[POS_BATCH] = pos->batch;
    v[POS_SEED] = (int64_t)pos->rng.seed;
    v[POS_OFFSET] = (int64_t)pos->rng.offset;
    v[POS_METRICS] = pos->metrics_bytes;
    v[POS_BEST_STEP] = pos->best_step;
    v[POS_WORLD] = pos->world;
    checkpoint_entries_add(&r, "", "state.position", p);
    tensor *ranks = NULL;
    if (pos->world > 1) {
        ranks = tensor_empty(PETAL_I64, SHAPE(pos->world, 2));
        for (int k = 0; k < pos->world; k++) {
            tensor_data_i64(ranks)[2 * k] = (int64_t)rngs[k].seed;
            tensor_data_i64(ranks)[2 * k + 1] = (int64_t)rngs[k].offset;
        }
        checkpoint_entries_add(&r, "", "state.rank_rng", ranks);
    }
    tensor *best = tensor_from_data(PETAL_F64, SHAPE(1), (double[]){pos->best});
    checkpoint_entries_add(&r, "", "state.best", best);
    petal_status s = checkpoint_save_entries(path, &r, &(checkpoint_meta){.config = config_json});
    checkpoint_entries_free(&r);
    tensor_free(steps);
    tensor_free(p);
    tensor_free(best);
    tensor_free(ranks);
    return s;
}

// The file's tensor `name` copied into dst (same dtype and shape), or an error naming both.
static petal_status restore(const char *path, const tensor_list *file, const char *name,
                            tensor *dst) {
    const named_tensor *e = tensor_list_find(file, name);
    if (!e)
        return petal_error(PETAL_ERR_KEY, "%s: resume file has no '%s' (another config or model?)",
                           path, name);
    bool same = e->value->dtype == dst->dtype && e->value->ndim == dst->ndim;
    for (int d = 0; same && d < dst->ndim; d++) same = e->value->shape[d] == dst->shape[d];
    if (!same)
        return petal_error(PETAL_ERR_FORMAT, "%s: '%s' has another dtype or shape than the model's",
                           path, name);
    tensor_copy_(dst, e->value);
    return PETAL_OK;
}

static petal_status restore_optimizer(const char *path, const tensor_list *file,
                                      const param_registry *model, optim_adamw *opt) {
    const named_tensor *steps = tensor_list_find(file, "optim.steps");
    if (!steps || steps->value->dtype != PETAL_I64 || tensor_numel(steps->value) < opt->n)
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: 'optim.steps' is missing or has %lld entries "
                           "for %d trainable tensors",
                           path, steps ? (long long)tensor_numel(steps->value) : 0LL, opt->n);
    char key[NN_NAME_MAX + 16];
    for (int i = 0; i < opt->n; i++) {
        opt->steps[i] = tensor_data_i64(steps->value)[i];
        const char *name = param_name(model, opt->params[i]);
        snprintf(key, sizeof key, "optim.m.%s", name);
        if (!tensor_list_find(file, key)) continue; // never updated yet
        if (!opt->m[i]) {
            opt->m[i] = tensor_keep(tensor_zeros_like(opt->params[i]));
            opt->v[i] = tensor_keep(tensor_zeros_like(opt->params[i]));
        }
        petal_status s = restore(path, file, key, opt->m[i]);
        snprintf(key, sizeof key, "optim.v.%s", name);
        if (s || (s = restore(path, file, key, opt->v[i]))) return s;
    }
    return PETAL_OK;
}

// The saved ranks' generators (state.rank_rng) of a data-parallel run.
static petal_status restore_rank_rngs(const char *path, const tensor_list *file, int world,
                                      rng_generator **rngs) {
    *rngs = NULL;
    if (world <= 1) return PETAL_OK;
    const named_tensor *e = tensor_list_find(file, "state.rank_rng");
    if (!e || e->value->dtype != PETAL_I64 || tensor_numel(e->value) != 2 * (int64_t)world)
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: the run had %d ranks but 'state.rank_rng' (%d x 2 i64) is missing "
                           "or malformed",
                           path, world, world);
    *rngs = malloc((size_t)world * sizeof **rngs);
    PETAL_CHECK(*rngs != NULL, "resume_load: out of host memory");
    const int64_t *v = tensor_data_i64(e->value);
    for (int k = 0; k < world; k++)
        (*rngs)[k] = (rng_generator){(uint64_t)v[2 * k], (uint64_t)v[2 * k + 1]};
    return PETAL_OK;
}

static petal_status restore_position(const char *path, const tensor_list *file,
                                     train_position *pos) {
    const named_tensor *p = tensor_list_find(file, "state.position");
    const named_tensor *b = tensor_list_find(file, "state.best");
    int64_t n = p ? tensor_numel(p->value) : 0;
    // A file written before data parallelism has no POS_WORLD entry: one rank.
    if (!p || !b || p->value->dtype != PETAL_I64 || (n != POS_N && n != POS_WORLD) ||
        b->value->dtype != PETAL_F64 || tensor_numel(b->value) != 1)
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: 'state.position' (%d i64) or 'state.best' (1 f64) is missing or "
                           "malformed",
                           path, POS_N);
    const int64_t *v = tensor_data_i64(p->value);
    if (n == POS_N && (v[POS_WORLD] < 1 || v[POS_WORLD] > 1 << 20))
        return petal_error(PETAL_ERR_FORMAT, "%s: 'state.position' names %lld ranks", path,
                           (long long)v[POS_WORLD]);
    *pos = (train_position){.step = v[POS_STEP],
                            .epoch = v[POS_EPOCH],
                            .batch = v[POS_BATCH],
                            .rng = {(uint64_t)v[POS_SEED], (uint64_t)v[POS_OFFSET]},
                            .metrics_bytes = v[POS_METRICS],
                            .best = ((const double *)b->value->storage->data)[b->value->offset],
                            .best_step = v[POS_BEST_STEP],
                            .world = n == POS_N ? (int)v[POS_WORLD] : 1};
    return PETAL_OK;
}

petal_status resume_load(const char *path, train_model *tm, optim_adamw *opt,
                         const char *config_json, train_position *pos, rng_generator **rngs) {
    *rngs = NULL;
    tensor_list file;
    checkpoint_info info;
    petal_status s = checkpoint_read(path, &file, &info);
    if (s) return s;
    if (strcmp(info.config, config_json) != 0)
        s = petal_error(PETAL_ERR_ARG,
                        "%s: the run was started with another config (compare its config.yaml "
                        "with this one); resume it with the same config and --set values",
                        path);
    const param_registry *model = tm->m->registry;
    char key[NN_NAME_MAX + 16];
    for (int i = 0; !s && i < model->n; i++) {
        if (!saved_entry(&model->items[i])) continue;
        snprintf(key, sizeof key, "model.%s", model->items[i].name);
        s = restore(path, &file, key, model->items[i].value);
    }
    if (!s) s = restore_optimizer(path, &file, model, opt);
    if (!s) s = restore_position(path, &file, pos);
    if (!s) s = restore_rank_rngs(path, &file, pos->world, rngs);
    tensor_list_free(&file);
    checkpoint_info_free(&info);
    return s;
}
