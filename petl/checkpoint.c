// PETL-only checkpoints: the trainable tensors of an attached configuration (the methods' own and
// the extra heads) in a petal HDF5 file of kind "petl", with the fingerprint of the frozen
// backbone they were trained on (io/checkpoint.h). The config attribute records the model and the
// PETL options, so a reader can see what to attach before loading.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "io/checkpoint.h"
#include "models/blip/load.h"
#include "petl/internal.h"

static const char *const ice_names[] = {"off", "softmax", "mean"};
static const char *const gqt_names[] = {"off", "gate", "affine"};
static const char *const cp_sharing_names[] = {"global", "modality", "layer"};

// {"model": {...}, "petl": {...}}: the options of every enabled method.
static char *config_json(const petl_handle *h) {
    const petl_config *c = &h->cfg;
    char *model = blip_config_to_json(&h->m->cfg);
    strbuf b = {0};
    strbuf_printf(&b, "{\"model\": %s, \"petl\": {\"seed\": %llu, \"extra_trainable\": \"%s\"",
                  model, (unsigned long long)c->seed, c->extra_trainable);
    free(model);
    // Written only when on, so that files saved before the option load.
    if (c->share_decoder) strbuf_printf(&b, ", \"share_decoder\": true");
    if (c->cp.enabled) {
        strbuf_printf(&b,
                      ",\n \"cp\": {\"rank\": %lld, \"core\": \"%s\", \"dropout\": %g, "
                      "\"scale\": %g, \"attention_only\": %s, \"momentum_copies\": %s",
                      (long long)c->cp.rank, c->cp.core == CP_CORE_DENSE ? "dense" : "diagonal",
                      c->cp.dropout, c->cp.scale, c->cp.attention_only ? "true" : "false",
                      c->cp.momentum_copies ? "true" : "false");
        // Written only when not the defaults, so that files saved before these options load.
        if (c->cp.targets) strbuf_printf(&b, ", \"targets\": \"%s\"", c->cp.targets);
        if (c->cp.sharing != CP_SHARE_GLOBAL)
            strbuf_printf(&b, ", \"sharing\": \"%s\"", cp_sharing_names[c->cp.sharing]);
        if (c->cp.plain_cached_kv) strbuf_printf(&b, ", \"plain_cached_kv\": true");
        strbuf_printf(&b, "}");
    }
    if (c->ice)
        strbuf_printf(&b, ",\n \"ice\": {\"mode\": \"%s\", \"scale\": %g}", ice_names[c->ice],
                      c->ice_scale);
    if (c->gqt) strbuf_printf(&b, ",\n \"gqt\": {\"mode\": \"%s\"}", gqt_names[c->gqt]);
    if (c->lora.enabled)
        strbuf_printf(&b,
                      ",\n \"lora\": {\"rank\": %lld, \"alpha\": %g, \"dropout\": %g, "
                      "\"targets\": \"%s\"}",
                      (long long)c->lora.rank, c->lora.alpha, c->lora.dropout, c->lora.targets);
    if (c->vera.enabled)
        strbuf_printf(&b,
                      ",\n \"vera\": {\"rank\": %lld, \"d_init\": %g, \"dropout\": %g, "
                      "\"seed\": %llu, \"targets\": \"%s\"}",
                      (long long)c->vera.rank, c->vera.d_init, c->vera.dropout,
                      (unsigned long long)c->vera.seed, c->vera.targets);
    if (c->vcra.enabled)
        strbuf_printf(&b, ",\n \"vcra\": {\"rank\": %lld, \"seed\": %llu}", (long long)c->vcra.rank,
                      (unsigned long long)c->vcra.seed);
    if (c->qasn.enabled)
        strbuf_printf(&b, ",\n \"qasn\": {\"rank\": %lld, \"activation\": %d}",
                      (long long)c->qasn.rank, (int)c->qasn.activation);
    if (c->mcam.enabled)
        strbuf_printf(&b, ",\n \"mcam\": {\"tau\": %g, \"weight\": %g}", c->mcam.tau,
                      c->mcam.weight);
    if (c->adapter.enabled)
        strbuf_printf(&b, ",\n \"adapter\": {\"rank\": %lld, \"scale\": %g}",
                      (long long)c->adapter.rank, c->adapter.scale);
    strbuf_printf(&b, "}}\n");
    return strbuf_take(&b);
}

petal_status petl_save(const petl_handle *h, const char *path) {
    return petl_save_with(h, path, NULL);
}

// A merged handle's weights are W0 + dW: their fingerprint is not the backbone's, and a load would
// leave the merged dW stale.
static petal_status refuse_merged(const petl_handle *h, const char *path, const char *what) {
    if (!petl_is_merged(h)) return PETAL_OK;
    return petal_error(PETAL_ERR_ARG,
                       "%s: cannot %s while the deltas are merged into the weights (petl_merge); "
                       "call petl_unmerge first",
                       path, what);
}

petal_status petl_save_with(const petl_handle *h, const char *path, const char *train_json) {
    petal_status s = refuse_merged(h, path, "save a PETL checkpoint");
    if (s) return s;
    char *config = config_json(h);
    if (train_json) {
        char *with = blip_config_json_with(config, train_json);
        free(config);
        config = with;
    }
    s = checkpoint_save(path, h->m->registry, CHECKPOINT_PETL,
                        &(checkpoint_meta){.config = config});
    free(config);
    return s;
}

// Whether a file's config holds the options `mine` describes: the same text, or the same with
// the experiment's config appended under "train" (petl_save_with).
static bool same_options(const char *mine, const char *file) {
    size_t n = strlen(mine);
    while (n > 0 && mine[n - 1] != '}') n--; // mine's closing brace
    if (n == 0 || strncmp(mine, file, n - 1) != 0) return false;
    const char *rest = file + n - 1;
    return strcmp(rest, mine + n - 1) == 0 || strncmp(rest, ",\n \"train\": ", 12) == 0;
}

petal_status petl_load(petl_handle *h, const char *path, bool force_base) {
    petal_status s = refuse_merged(h, path, "load a PETL checkpoint");
    if (s) return s;
    checkpoint_info info;
    tensor_list file;
    s = checkpoint_read(path, &file, &info);
    if (s) return s;
    if (info.kind != CHECKPOINT_PETL)
        s = petal_error(PETAL_ERR_FORMAT,
                        "%s: expected a PETL checkpoint (kind \"petl\"), found kind \"%s\"; load "
                        "a full checkpoint with blip_load",
                        path, checkpoint_kind_name(info.kind));
    // The options decide what the frozen random factors are (seeds, ranks), which the file does
    // not carry: loading under other options would be a silent wrong answer.
    char *mine = config_json(h);
    if (!s && !same_options(mine, info.config))
        s = petal_error(PETAL_ERR_ARG,
                        "%s: trained with other options than the ones attached; the file has\n%s"
                        "attached:\n%s",
                        path, info.config, mine);
    free(mine);
    checkpoint_load_options o = {.force_base = force_base};
    if (!s) s = checkpoint_load_from(path, &file, &info, h->m->registry, &o, NULL);
    if (!s) petl_copy_momentum_twins(h);
    tensor_list_free(&file);
    checkpoint_info_free(&info);
    return s;
}

// ---- released Aurora checkpoints ----

// The released configuration for Aurora's tensors: the rank from CP_C (R, R, R), GQT when the
// file has its vectors.
static petal_status aurora_config(const char *src, const tensor_list *aurora, petl_config *out) {
    const named_tensor *core = tensor_list_find(aurora, "CP_C");
    const tensor *c = core ? core->value : NULL;
    if (!c || c->ndim != 3 || c->shape[1] != c->shape[0] || c->shape[2] != c->shape[0]) {
        char shape[SHAPE_STR_MAX];
        return petal_error(PETAL_ERR_KEY,
                           "%s: expected CP_C, the released code's dense core (R, R, R), found "
                           "%s",
                           src, c ? shape_str(c->ndim, c->shape, shape, sizeof shape) : "none");
    }
    *out = petl_config_aurora(PETL_CODE, c->shape[0]);
    bool gqt = false;
    for (int i = 0; i < aurora->n && !gqt; i++) gqt = strstr(aurora->items[i].name, ".CP_scale");
    if (!gqt) out->gqt = GQT_OFF;
    return PETAL_OK;
}

// Copies each of Aurora's tensors onto the attached method's entry of that name, then checks that
// none the method trains was left at its initial value.
static petal_status import_aurora(petl_handle *h, const char *src, const tensor_list *aurora) {
    const param_registry *r = h->m->registry;
    char want[SHAPE_STR_MAX], found[SHAPE_STR_MAX];
    for (int i = 0; i < aurora->n; i++) {
        const named_tensor *t = &aurora->items[i];
        const param_entry *e = registry_find(r, t->name);
        if (!e || e < &r->items[h->first_entry] || !e->trainable)
            return petal_error(PETAL_ERR_KEY,
                               "%s: '%s' is not a tensor of the released Aurora configuration "
                               "(rank %lld, GQT %s) on this %s model",
                               src, t->name, (long long)h->cfg.cp.rank, h->cfg.gqt ? "on" : "off",
                               blip_task_name(h->m->cfg.task));
        if (!tensor_same_shape(e->value, t->value))
            return petal_error(PETAL_ERR_SHAPE, "%s: '%s' is %s, expected %s", src, t->name,
                               shape_str(t->value->ndim, t->value->shape, found, sizeof found),
                               shape_str(e->value->ndim, e->value->shape, want, sizeof want));
        tensor_copy_(e->value, t->value);
    }
    for (int i = h->first_entry; i < r->n; i++) {
        const param_entry *e = &r->items[i];
        if (e->trainable && !tensor_list_find(aurora, e->name))
            return petal_error(PETAL_ERR_KEY,
                               "%s: the released Aurora configuration (rank %lld) trains '%s' %s, "
                               "which the file lacks",
                               src, (long long)h->cfg.cp.rank, e->name,
                               shape_str(e->value->ndim, e->value->shape, want, sizeof want));
    }
    return PETAL_OK;
}

petal_status petl_convert_aurora(const char *src, const char *dst, const char *petl_path,
                                 const convert_options *opts, convert_report *report) {
    convert_options split = *opts;
    split.split_petl = true;
    petal_status s = convert_file(src, dst, &split, report);
    if (s) return s;
    petl_config cfg;
    blip_loaded l = {0};
    s = aurora_config(src, &report->petl, &cfg);
    if (!s) s = blip_load(dst, NULL, &l);
    petl_handle *h = s ? NULL : petl_attach(l.model, &cfg);
    if (!s && !h) s = PETAL_ERR_ARG; // petl_attach set the message
    if (!s) s = import_aurora(h, src, &report->petl);
    if (!s) s = petl_save(h, petl_path);
    blip_loaded_free(&l);
    if (s) remove(dst); // half a conversion: the backbone alone would pass for all of it
    return s;
}
