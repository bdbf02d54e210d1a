#include "models/blip/load.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "io/json.h"

// ---- the config JSON ----

static petal_status opt_int(const json_value *obj, const char *key, int64_t *out) {
    const json_value *v = obj ? json_get(obj, key) : NULL;
    return v ? json_as_int(v, out) : PETAL_OK;
}

static petal_status opt_number(const json_value *obj, const char *key, double *out) {
    const json_value *v = obj ? json_get(obj, key) : NULL;
    return v ? json_as_number(v, out) : PETAL_OK;
}

// An optional object member (absent: *out = NULL).
static petal_status opt_object(const json_value *obj, const char *key, const json_value **out) {
    const json_value *v = json_get(obj, key);
    *out = NULL;
    return v ? json_as_object(v, out) : PETAL_OK;
}

static petal_status read_vision(const json_value *v, vit_config *c) {
    petal_status s;
    if ((s = opt_int(v, "width", &c->width)) || (s = opt_int(v, "depth", &c->depth)) ||
        (s = opt_int(v, "heads", &c->heads)) || (s = opt_int(v, "patch", &c->patch)) ||
        (s = opt_int(v, "mlp", &c->mlp)))
        return s;
    return opt_number(v, "eps", &c->eps);
}

// A text model; *cross says whether it has cross-attention layers (encoder_width is set by the
// caller, who knows what they read).
static petal_status read_text(const json_value *t, bert_config *c, bool *cross) {
    petal_status s;
    if ((s = opt_int(t, "hidden", &c->hidden)) || (s = opt_int(t, "layers", &c->layers)) ||
        (s = opt_int(t, "heads", &c->heads)) ||
        (s = opt_int(t, "intermediate", &c->intermediate)) ||
        (s = opt_int(t, "vocab", &c->vocab)) ||
        (s = opt_int(t, "max_positions", &c->max_positions)) ||
        (s = opt_int(t, "type_vocab", &c->type_vocab)) || (s = opt_number(t, "eps", &c->eps)))
        return s;
    const json_value *v = t ? json_get(t, "cross_attention") : NULL;
    *cross = c->encoder_width > 0;
    return v ? json_as_bool(v, cross) : PETAL_OK;
}

// "model" and "task" -> the task (and whether the file is a pretraining one).
static petal_status read_task(const json_value *root, blip_task fallback, bool *pretrain,
                              blip_task *task) {
    const char *model, *name = NULL;
    petal_status s = json_get_string(root, "model", &model, NULL);
    if (s) return s;
    *pretrain = false;
    if (strcmp(model, "bert") == 0) {
        *task = BLIP_TEXT;
        return PETAL_OK;
    }
    if (strcmp(model, "blip") != 0)
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: model: expected \"blip\" or \"bert\", found \"%s\"",
                           json_source(root), model);
    if ((s = json_get_string(root, "task", &name, NULL))) return s;
    *pretrain = strcmp(name, "pretrain") == 0;
    if (*pretrain) {
        *task = fallback;
        return PETAL_OK;
    }
    if (blip_task_parse(name, task) != PETAL_OK)
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: task: expected retrieval, itm, vqa, caption or pretrain, found "
                           "\"%s\"",
                           json_source(root), name);
    return PETAL_OK;
}

static petal_status read_config(const json_value *root, blip_task fallback, bool *pretrain,
                                blip_config *out) {
    blip_task task;
    petal_status s = read_task(root, fallback, pretrain, &task);
    if (s) return s;
    blip_config c = blip_config_base(task);
    const json_value *vision, *text, *decoder;
    bool text_cross = true, decoder_cross = true;
    if ((s = opt_object(root, "vision", &vision)) || (s = opt_object(root, "text", &text)) ||
        (s = opt_object(root, "decoder", &decoder)) || (s = read_vision(vision, &c.vision)) ||
        (s = opt_int(root, "image_size", &c.vision.image_size)) ||
        (s = opt_int(root, "embed_dim", &c.embed_dim)) ||
        (s = read_text(text, &c.text, &text_cross)) ||
        (s = read_text(decoder, &c.decoder, &decoder_cross)))
        return s;
    c.text.encoder_width = text_cross && task != BLIP_TEXT ? c.vision.width : 0;
    c.decoder.encoder_width =
        decoder_cross ? (task == BLIP_VQA ? c.text.hidden : c.vision.width) : 0;
    if (task == BLIP_TEXT) c.text.lm_head = false;
    *out = c;
    return PETAL_OK;
}

petal_status blip_config_from_json(const char *json, const char *source, blip_task fallback,
                                   bool *pretrain, blip_config *out) {
    json_value *root;
    petal_status s = json_parse(json, strlen(json), source, &root);
    if (s) return s;
    const json_value *obj;
    if (!(s = json_as_object(root, &obj))) s = read_config(obj, fallback, pretrain, out);
    json_free(root);
    return s;
}

// ---- saving ----

static void text_json(strbuf *b, const char *key, const bert_config *t) {
    strbuf_printf(b,
                  ",\n \"%s\": {\"hidden\": %lld, \"layers\": %lld, \"heads\": %lld, "
                  "\"intermediate\": %lld, \"vocab\": %lld, \"max_positions\": %lld, "
                  "\"type_vocab\": %lld, \"eps\": %.17g, \"cross_attention\": %s}",
                  key, (long long)t->hidden, (long long)t->layers, (long long)t->heads,
                  (long long)t->intermediate, (long long)t->vocab, (long long)t->max_positions,
                  (long long)t->type_vocab, t->eps, t->encoder_width > 0 ? "true" : "false");
}

char *blip_config_to_json(const blip_config *c) {
    strbuf b = {0};
    if (c->task == BLIP_TEXT) {
        strbuf_printf(&b, "{\"model\": \"bert\"");
    } else {
        const vit_config *v = &c->vision;
        strbuf_printf(&b,
                      "{\"model\": \"blip\", \"task\": \"%s\", \"image_size\": %lld,\n "
                      "\"vision\": {\"width\": %lld, \"depth\": %lld, \"heads\": %lld, "
                      "\"patch\": %lld, \"mlp\": %lld, \"eps\": %.17g}",
                      blip_task_name(c->task), (long long)v->image_size, (long long)v->width,
                      (long long)v->depth, (long long)v->heads, (long long)v->patch,
                      (long long)v->mlp, v->eps);
    }
    if (blip_task_has_text(c->task)) text_json(&b, "text", &c->text);
    if (blip_task_has_decoder(c->task)) text_json(&b, "decoder", &c->decoder);
    if (c->task != BLIP_TEXT) strbuf_printf(&b, ",\n \"embed_dim\": %lld", (long long)c->embed_dim);
    strbuf_printf(&b, "}\n");
    return strbuf_take(&b);
}

petal_status blip_save(const char *path, const blip_model *m, checkpoint_kind kind,
                       const char *vocab) {
    return blip_save_with(path, m, kind, vocab, NULL);
}

char *blip_config_json_with(const char *config_json, const char *train_json) {
    strbuf b = {0};
    size_t n = strlen(config_json);
    while (n > 0 && config_json[n - 1] != '}') n--; // the object's closing brace
    PETAL_CHECK(n > 0, "blip_config_json_with: not a JSON object");
    strbuf_append(&b, config_json, n - 1);
    strbuf_printf(&b, ",\n \"train\": %s}\n", train_json);
    return strbuf_take(&b);
}

petal_status blip_save_with(const char *path, const blip_model *m, checkpoint_kind kind,
                            const char *vocab, const char *train_json) {
    char *config = blip_config_to_json(&m->cfg);
    if (train_json) {
        char *with = blip_config_json_with(config, train_json);
        free(config);
        config = with;
    }
    petal_status s = checkpoint_save(path, m->registry, kind,
                                     &(checkpoint_meta){.config = config, .vocab = vocab});
    free(config);
    return s;
}

// ---- loading ----

// The special-token ids from the file's vocabulary, or bert-base-uncased's when it has none.
static petal_status tokens_from_vocab(const char *path, const char *vocab, blip_config *c,
                                      tokenizer **tok) {
    *tok = NULL;
    const bert_config *text = blip_task_has_text(c->task) ? &c->text : &c->decoder;
    int64_t top = c->task == BLIP_TEXT ? c->tokens.sep : c->tokens.enc; // bert-base-uncased's
    if (!vocab && top >= text->vocab) // the defaults would not fit
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: the file has no vocabulary and its %lld-token embedding is not "
                           "bert-base-uncased's, so the special tokens are unknown; convert it "
                           "again with --vocab",
                           path, (long long)text->vocab);
    if (!vocab) return PETAL_OK;
    char source[600];
    snprintf(source, sizeof source, "%s: vocab", path);
    petal_status s = tokenizer_load_text(vocab, strlen(vocab), source, tok);
    if (s) return s;
    if (c->task != BLIP_TEXT) tokenizer_add_blip_specials(*tok);
    c->tokens = blip_tokens_of(*tok);
    return PETAL_OK;
}

blip_tokens blip_tokens_of(const tokenizer *tok) {
    const tokenizer_special_ids *ids = tokenizer_specials(tok);
    return (blip_tokens){.pad = ids->pad,
                         .unk = ids->unk,
                         .cls = ids->cls,
                         .sep = ids->sep,
                         .dec = ids->bos >= 0 ? ids->bos : 0,
                         .enc = ids->enc >= 0 ? ids->enc : 0};
}

static bool is_momentum_state(const char *name) {
    return strstr(name, "_m.") || strcmp(name, "image_queue") == 0 ||
           strcmp(name, "text_queue") == 0 || strcmp(name, "idx_queue") == 0 ||
           strcmp(name, "ptr_queue") == 0;
}

// Which of the report's keys are acceptable (see blip_load); the first offending one in *bad.
static int count_bad(char **names, int n, bool allow_momentum, bool allow_any, const char **bad) {
    int count = 0;
    for (int i = 0; i < n; i++) {
        if (allow_any || (allow_momentum && is_momentum_state(names[i]))) continue;
        if (!count) *bad = names[i];
        count++;
    }
    return count;
}

static petal_status check_report(const char *path, const blip_config *c, bool task_chosen,
                                 const checkpoint_report *rep, bool *momentum_missing) {
    const char *bad = NULL;
    if (rep->n_mismatched)
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: %d tensors have the wrong shape or dtype, e.g. %s", path,
                           rep->n_mismatched, rep->mismatched[0]);
    int missing = count_bad(rep->missing, rep->n_missing, true, false, &bad);
    if (missing)
        return petal_error(PETAL_ERR_KEY,
                           "%s: %d tensors the %s model needs are not in the file, e.g. %s", path,
                           missing, blip_task_name(c->task), bad);
    int unexpected = count_bad(rep->unexpected, rep->n_unexpected, true, task_chosen, &bad);
    if (unexpected)
        return petal_error(PETAL_ERR_KEY,
                           "%s: %d tensors in the file have no place in the %s model, e.g. %s "
                           "(a different architecture?)",
                           path, unexpected, blip_task_name(c->task), bad);
    *momentum_missing = rep->n_missing > 0;
    return PETAL_OK;
}

static petal_status load_into(const char *path, const tensor_list *file, blip_loaded *out,
                              bool task_chosen) {
    checkpoint_report rep;
    checkpoint_load_options lo = {.non_strict = true};
    petal_status s = checkpoint_load_from(path, file, &out->info, out->model->registry, &lo, &rep);
    bool momentum_missing = false;
    if (!s) s = check_report(path, &out->model->cfg, task_chosen, &rep, &momentum_missing);
    checkpoint_report_free(&rep);
    if (!s && momentum_missing) blip_momentum_reset(out->model, 0);
    return s;
}

petal_status blip_load(const char *path, const blip_load_options *opts, blip_loaded *out) {
    blip_load_options none = {0};
    if (!opts) opts = &none;
    *out = (blip_loaded){0};
    blip_task task = BLIP_RETRIEVAL;
    if (opts->task && blip_task_parse(opts->task, &task) != PETAL_OK)
        return petal_error(PETAL_ERR_ARG,
                           "blip_load: task '%s': expected retrieval, itm, vqa, caption, text or "
                           "pretrain",
                           opts->task);
    tensor_list file;
    petal_status s = checkpoint_read(path, &file, &out->info);
    if (s) return s;
    char source[600];
    snprintf(source, sizeof source, "%s: config", path);
    bool pretrain = false;
    blip_config c;
    s = blip_config_from_json(out->info.config, source, task, &pretrain, &c);
    if (!s && pretrain && !opts->task)
        s = petal_error(PETAL_ERR_ARG,
                        "%s: a pretraining checkpoint serves several tasks: say which one to load "
                        "it as (retrieval, itm, vqa or caption)",
                        path);
    // A subset of the file's modules is loaded when the task differs from the file's.
    bool subset = (pretrain && task != BLIP_PRETRAIN) || (opts->task && task != c.task);
    if (!s && opts->task) c.task = task;
    if (!s) s = tokens_from_vocab(path, out->info.vocab, &c, &out->tok);
    const named_tensor *queue = tensor_list_find(&file, "idx_queue"); // (1, Q)
    if (queue && queue->value->ndim == 2) c.queue_size = queue->value->shape[1];
    c.momentum = opts->momentum && blip_task_trains_itc(c.task);
    if (!s && (s = blip_config_check(&c))) {
        char why[512];
        snprintf(why, sizeof why, "%s", petal_error_message());
        s = petal_error(PETAL_ERR_FORMAT, "%s: %s", path, why);
    }
    if (!s) {
        out->model = blip_new_for_loading(&c, opts->dtype);
        s = load_into(path, &file, out, subset);
    }
    tensor_list_free(&file);
    if (s) blip_loaded_free(out);
    return s;
}

void blip_loaded_free(blip_loaded *l) {
    blip_free(l->model);
    tokenizer_free(l->tok);
    checkpoint_info_free(&l->info);
    *l = (blip_loaded){0};
}
