#include "train/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "models/blip/load.h"
#include "tensor/storage.h"

static blip_task blip_task_of(train_task t) {
    static const blip_task tasks[] = {[TRAIN_TASK_RETRIEVAL] = BLIP_RETRIEVAL,
                                      [TRAIN_TASK_VQA] = BLIP_VQA,
                                      [TRAIN_TASK_CAPTION] = BLIP_CAPTION,
                                      [TRAIN_TASK_PRETRAIN] = BLIP_PRETRAIN};
    return tasks[t];
}

// The architecture of arch: at image_size, with the vocabulary's size and special tokens.
static blip_config arch_config(const train_config *c, const tokenizer *tok) {
    const train_arch *a = &c->arch;
    blip_config b = blip_config_tiny(blip_task_of(c->task));
    b.vision.image_size = c->image_size;
    b.vision.patch = a->patch;
    b.vision.width = a->vision_width;
    b.vision.depth = a->vision_depth;
    b.vision.heads = a->vision_heads;
    b.vision.mlp = a->vision_mlp;
    bert_config *texts[] = {&b.text, &b.decoder};
    for (int i = 0; i < 2; i++) {
        texts[i]->hidden = a->text_hidden;
        texts[i]->layers = a->text_layers;
        texts[i]->heads = a->text_heads;
        texts[i]->intermediate = a->text_intermediate;
        texts[i]->max_positions = a->max_positions;
        texts[i]->vocab = tokenizer_size(tok);
    }
    b.text.encoder_width = a->vision_width;
    b.decoder.encoder_width = c->task == TRAIN_TASK_VQA ? a->text_hidden : a->vision_width;
    b.embed_dim = a->embed_dim;
    b.tokens = blip_tokens_of(tok);
    return b;
}

static petal_status build_fresh(const train_config *c, train_model *out) {
    char *path = train_config_path(c, c->vocab);
    petal_status s = tokenizer_load_blip(path, &out->tok);
    if (s) {
        free(path);
        return s;
    }
    blip_config b = arch_config(c, out->tok);
    b.queue_size = c->queue_size;
    if ((s = blip_config_check(&b))) {
        char why[512];
        snprintf(why, sizeof why, "%s", petal_error_message());
        s = petal_error(PETAL_ERR_ARG, "%s: arch: %s", c->source, why);
    }
    size_t len;
    if (!s) s = buffer_read_file(path, &out->vocab, &len);
    if (!s) out->m = blip_new(&b, train_config_dtype(c), (uint64_t)c->seed);
    free(path);
    return s;
}

static petal_status load_pretrained(const train_config *c, train_model *out) {
    blip_load_options o = {.task = blip_task_name(blip_task_of(c->task)), .momentum = true};
    blip_loaded l;
    petal_status s = blip_load(c->pretrained, &o, &l); // relative to the working directory
    if (s) {
        char why[1024];
        snprintf(why, sizeof why, "%s", petal_error_message());
        return petal_error(s, "%s: pretrained: %s", c->source, why);
    }
    if (!l.tok || !l.info.vocab) {
        blip_loaded_free(&l);
        return petal_error(PETAL_ERR_FORMAT, "%s: pretrained: '%s' has no vocabulary", c->source,
                           c->pretrained);
    }
    out->m = l.model;
    out->tok = l.tok;
    out->vocab = l.info.vocab;
    l.info.vocab = NULL;
    l.model = NULL;
    l.tok = NULL;
    blip_loaded_free(&l);
    if (out->m->cfg.vision.image_size != c->image_size)
        return petal_error(PETAL_ERR_ARG,
                           "%s: image_size: the pretrained model takes %lld px images, the "
                           "config asks for %lld",
                           c->source, (long long)out->m->cfg.vision.image_size,
                           (long long)c->image_size);
    return PETAL_OK;
}

petal_status train_model_attach(const train_config *c, train_model *tm) {
    vit_config *v = &tm->m->cfg.vision;
    v->ckpt_layers = c->vit_grad_ckpt ? c->vit_ckpt_layer : 0;
    tm->m->vit.cfg.ckpt_layers = v->ckpt_layers;
    vit_set_drop_path(&tm->m->vit, c->vit_drop_path);
    v->drop_path = c->vit_drop_path;
    blip_set_text_dropout(tm->m, c->text_dropout, c->text_dropout);
    token_ids prompt = {0};
    petal_status s = PETAL_OK;
    if (c->prompt) s = tokenizer_tokenize(tm->tok, c->prompt, strlen(c->prompt), &prompt);
    tm->prompt_len = 1 + (int64_t)prompt.len;
    token_ids_free(&prompt);
    if (s) return s;
    petl_config pc;
    if ((s = train_config_petl(c, &pc, &tm->full))) return s;
    if (tm->full) {
        registry_set_trainable(tm->m->registry, "*", true);
        registry_set_trainable(tm->m->registry, "*_m.*", false); // EMA copies, not trained
        return PETAL_OK;
    }
    tm->petl = petl_attach(tm->m, &pc);
    if (!tm->petl) {
        char why[512];
        snprintf(why, sizeof why, "%s", petal_error_message());
        return petal_error(PETAL_ERR_ARG, "%s: petl.methods '%s': %s", c->source, c->petl.methods,
                           why);
    }
    return PETAL_OK;
}

petal_status train_model_load(const train_config *c, train_model *out) {
    *out = (train_model){0};
    bool fresh = !c->pretrained || !*c->pretrained;
    petal_status s = fresh ? build_fresh(c, out) : load_pretrained(c, out);
    if (s) train_model_free(out);
    return s;
}

void train_model_detach(train_model *tm) {
    petl_detach(tm->m);
    tm->petl = NULL;
    tm->full = false;
    registry_freeze_all(tm->m->registry); // what "full" made trainable
}

petal_status train_model_init(const train_config *c, train_model *out) {
    petal_status s = train_model_load(c, out);
    if (!s && (s = train_model_attach(c, out))) train_model_free(out);
    if (!s) train_model_to(out, train_config_device(c));
    return s;
}

void train_model_to(train_model *tm, petal_device device) {
    param_registry *r = tm->m->registry;
    for (int i = 0; i < r->n; i++) tensor_move_(r->items[i].value, device);
}

void train_model_free(train_model *tm) {
    blip_free(tm->m);
    tokenizer_free(tm->tok);
    free(tm->vocab);
    *tm = (train_model){0};
}

petal_status train_model_save(const train_model *tm, const char *path, const char *config_json) {
    if (tm->petl) return petl_save_with(tm->petl, path, config_json);
    return blip_save_with(path, tm->m, CHECKPOINT_FULL, tm->vocab, config_json);
}

int train_model_trainable(const train_model *tm, bool decay_1d, tensor ***params,
                          const char ***names, bool **decay) {
    const param_registry *r = tm->m->registry;
    int n = 0;
    for (int i = 0; i < r->n; i++) n += r->items[i].trainable;
    *params = calloc((size_t)n + 1, sizeof **params);
    *names = calloc((size_t)n + 1, sizeof **names);
    *decay = calloc((size_t)n + 1, sizeof **decay);
    PETAL_CHECK(*params && *names && *decay, "train_model_trainable: out of host memory");
    int k = 0;
    for (int i = 0; i < r->n; i++) {
        const param_entry *e = &r->items[i];
        if (!e->trainable) continue;
        (*params)[k] = e->value;
        (*names)[k] = e->name;
        (*decay)[k] = decay_1d || (e->decay && e->value->ndim >= 2);
        k++;
    }
    return n;
}

optim_adamw *train_model_optimizer(const train_model *tm, const train_config *c,
                                   const char ***names) {
    tensor **params;
    const char **own_names;
    bool *decay;
    int n = train_model_trainable(tm, c->decay_1d, &params, &own_names, &decay);
    adamw_config a = ADAMW_DEFAULTS;
    a.lr = c->init_lr;
    a.weight_decay = c->weight_decay;
    optim_adamw *opt = adamw_new(params, n, a);
    for (int i = 0; i < n; i++) adamw_set_decay(opt, i, decay[i]);
    free(params);
    free(decay);
    if (names)
        *names = own_names;
    else
        free(own_names);
    return opt;
}
