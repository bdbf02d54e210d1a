#include "io/convert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "io/checkpoint.h"
#include "io/convert_config.h"
#include "io/image.h"
#include "io/pos_embed.h"
#include "io/weights.h"
#include "nn/registry.h"

typedef enum { NAMING_OTHER, NAMING_SALESFORCE, NAMING_HF, NAMING_BERT } naming;

static const char *naming_names[] = {"unrecognised", "Salesforce BLIP", "HF BLIP", "BERT"};

typedef struct {
    const char *name;
    const char *modules[8]; // top-level modules the task's model has
    const char *required[6];
    bool momentum; // the model trains with momentum encoders and queues
} task_info;

static const task_info tasks[] = {
    {"retrieval",
     {"visual_encoder", "text_encoder", "vision_proj", "text_proj", "itm_head", "temp"},
     {"visual_encoder", "text_encoder", "vision_proj", "text_proj", "itm_head"},
     true},
    {"itm",
     {"visual_encoder", "text_encoder", "vision_proj", "text_proj", "itm_head", "temp"},
     {"visual_encoder", "text_encoder", "vision_proj", "text_proj", "itm_head"},
     true},
    {"vqa",
     {"visual_encoder", "text_encoder", "text_decoder"},
     {"visual_encoder", "text_encoder", "text_decoder"},
     false},
    {"caption", {"visual_encoder", "text_decoder"}, {"visual_encoder", "text_decoder"}, false},
    {"pretrain",
     {"visual_encoder", "text_encoder", "text_decoder", "vision_proj", "text_proj", "itm_head",
      "temp"},
     {"visual_encoder", "text_encoder", "text_decoder"},
     true},
};

static const char *queues[] = {"image_queue", "text_queue", "idx_queue", "ptr_queue", "queue_ptr"};

typedef struct {
    const char *src;
    const convert_options *opts;
    convert_report *rep;
    tensor_list out; // kept tensors under their new names
    bool *buffer;    // per entry of out: a momentum copy or queue kept on request
    char *vocab;     // a petal checkpoint's own vocabulary, kept when no --vocab replaces it
} job;

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

// The first component of a name ("visual_encoder_m" of "visual_encoder_m.blocks.0...").
static void top_module(const char *name, char *buf, size_t size) {
    size_t n = strcspn(name, ".");
    snprintf(buf, size, "%.*s", (int)(n < size ? n : size - 1), name);
}

static void drop(convert_report *rep, const char *name, const char *reason) {
    size_t cap = (size_t)rep->n_dropped;
    rep->dropped = buffer_grow(rep->dropped, &cap, cap + 1, sizeof *rep->dropped);
    rep->dropped[rep->n_dropped++] = (convert_drop){buffer_strndup(name, strlen(name)), reason};
}

static void keep(job *j, const char *name, const tensor *t, bool buffer) {
    size_t cap = (size_t)j->out.n;
    j->buffer = buffer_grow(j->buffer, &cap, cap + 1, sizeof *j->buffer);
    j->buffer[j->out.n] = buffer;
    tensor_list_add(&j->out, name, tensor_detach(t));
}

static naming detect_naming(const tensor_list *l) {
    naming found = NAMING_OTHER;
    for (int i = 0; i < l->n; i++) {
        const char *n = l->items[i].name;
        if (convert_starts_with(n, "vision_model.")) return NAMING_HF;
        if (convert_starts_with(n, "visual_encoder.") || convert_starts_with(n, "text_encoder.") ||
            convert_starts_with(n, "text_decoder."))
            found = NAMING_SALESFORCE;
        else if (found == NAMING_OTHER && (convert_starts_with(n, "encoder.layer.") ||
                                           convert_starts_with(n, "bert.encoder.layer.")))
            found = NAMING_BERT;
    }
    return found;
}

// ---- names ----

// s with its first `from` replaced by `to` (malloc'd), or NULL when s has no `from`.
static char *replace(const char *s, const char *from, const char *to) {
    const char *at = strstr(s, from);
    if (!at) return NULL;
    char *r = NULL;
    PETAL_CHECK(asprintf(&r, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from)) >= 0,
                "convert: out of host memory");
    return r;
}

// HF's vision_model.* names -> Salesforce's (docs/reference.md); other names unchanged (NULL).
static char *hf_to_salesforce(const char *name) {
    static const char *const prefixes[][2] = {
        {"vision_model.embeddings.class_embedding", "visual_encoder.cls_token"},
        {"vision_model.embeddings.position_embedding", "visual_encoder.pos_embed"},
        {"vision_model.embeddings.patch_embedding.", "visual_encoder.patch_embed.proj."},
        {"vision_model.post_layernorm.", "visual_encoder.norm."},
        {"vision_model.encoder.layers.", "visual_encoder.blocks."},
    };
    static const char *const parts[][2] = {{".self_attn.qkv.", ".attn.qkv."},
                                           {".self_attn.projection.", ".attn.proj."},
                                           {".layer_norm1.", ".norm1."},
                                           {".layer_norm2.", ".norm2."}};
    char *renamed = NULL;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0] && !renamed; i++)
        if (convert_starts_with(name, prefixes[i][0]))
            renamed = replace(name, prefixes[i][0], prefixes[i][1]);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0] && renamed; i++) {
        char *again = replace(renamed, parts[i][0], parts[i][1]);
        if (again) {
            free(renamed);
            renamed = again;
        }
    }
    return renamed;
}

// ---- BLIP ----

static const task_info *find_task(const char *name) {
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++)
        if (strcmp(tasks[i].name, name) == 0) return &tasks[i];
    return NULL;
}

static bool has_module(const tensor_list *l, const char *module) {
    char top[128];
    for (int i = 0; i < l->n; i++) {
        top_module(l->items[i].name, top, sizeof top);
        if (strcmp(top, module) == 0) return true;
    }
    return false;
}

// The task the modules present imply: a decoder alone captions, with an encoder it answers
// questions, with the projections too it is the pretraining model; no decoder is retrieval.
static const char *infer_task(const tensor_list *l) {
    bool enc = has_module(l, "text_encoder"), dec = has_module(l, "text_decoder");
    if (dec) return !enc ? "caption" : has_module(l, "vision_proj") ? "pretrain" : "vqa";
    return enc ? "retrieval" : NULL;
}

static petal_status choose_task(const char *src, const tensor_list *l, const char *asked,
                                const task_info **out) {
    const char *name = asked ? asked : infer_task(l);
    if (!name)
        return petal_error(PETAL_ERR_ARG,
                           "%s: cannot tell the task from the tensors (no text encoder or "
                           "decoder); pass --task",
                           src);
    const task_info *t = find_task(name);
    if (!t)
        return petal_error(PETAL_ERR_ARG,
                           "--task %s: expected retrieval, itm, vqa, caption or pretrain", name);
    for (int i = 0; i < 6 && t->required[i]; i++)
        if (!has_module(l, t->required[i]))
            return petal_error(PETAL_ERR_ARG,
                               "%s: the %s model needs %s.* tensors and there are none", src,
                               t->name, t->required[i]);
    *out = t;
    return PETAL_OK;
}

static bool task_uses(const task_info *t, const char *module) {
    for (int i = 0; i < 8 && t->modules[i]; i++)
        if (strcmp(t->modules[i], module) == 0) return true;
    return false;
}

// Why a (Salesforce-named) tensor is not written, or NULL to keep it; *buffer when it is kept as
// a buffer (momentum copies and queues, kept on request).
// Whether the name belongs to a momentum encoder ("visual_encoder_m.*"); top gets its first
// component without the "_m" (128 bytes).
static bool momentum_module(const char *name, char *top) {
    top_module(name, top, 128);
    size_t n = strlen(top);
    bool momentum = n > 2 && strcmp(top + n - 2, "_m") == 0;
    if (momentum) top[n - 2] = '\0';
    return momentum;
}

static const char *blip_drop_reason(const char *name, const task_info *t, bool keep_momentum,
                                    bool *buffer) {
    char top[128];
    bool momentum = momentum_module(name, top), queue = false;
    for (size_t i = 0; i < sizeof queues / sizeof queues[0]; i++)
        queue |= strcmp(name, queues[i]) == 0;
    *buffer = momentum || queue;
    if ((momentum || queue) && !keep_momentum) return momentum ? "momentum copy" : "queue";
    if (ends_with(name, "position_ids")) return "position_ids buffer";
    if ((momentum || queue) && !t->momentum) return "not used by the task";
    return queue || task_uses(t, top) ? NULL : "not used by the task";
}

// Aurora's own tensors (docs/reference.md section 2): a name component "CP_*" (CP_U, CP_V, CP_C,
// CP_attention, GQT's CP_scaleself ...) or "*_CP" (mlp_CP, q_CP, k_CP, v_CP). BLIP has none.
static bool is_aurora(const char *name) {
    for (const char *c = name;; c++) {
        size_t n = strcspn(c, ".");
        if (strncmp(c, "CP_", 3) == 0 || (n > 3 && strncmp(c + n - 3, "_CP", 3) == 0)) return true;
        c += n;
        if (!*c) return false;
    }
}

// An Aurora tensor: split out for the PETL file, dropped when a momentum copy (see convert.h), or
// refused without split_petl.
static petal_status take_aurora(job *j, const char *source_name, const char *name,
                                const tensor *t) {
    char top[128];
    if (momentum_module(name, top)) {
        bool gqt = strstr(name, ".CP_scale") || strstr(name, ".CP_shift");
        drop(j->rep, source_name,
             gqt ? "GQT vector of a momentum encoder, never read (it runs in text mode)"
                 : "momentum copy of an Aurora tensor (petl_load restarts it from its twin)");
        return PETAL_OK;
    }
    if (!j->opts->split_petl)
        return petal_error(PETAL_ERR_KEY,
                           "%s: '%s' is one of Aurora's CP / GQT tensors: convert a released "
                           "Aurora checkpoint with --petl FILE, which writes them as a PETL file",
                           j->src, source_name);
    tensor_list_add(&j->rep->petl, name, tensor_detach(t));
    return PETAL_OK;
}

static bool same_values(const tensor *a, const tensor *b) {
    return a->dtype == b->dtype && tensor_same_shape(a, b) &&
           memcmp(tensor_data(a), tensor_data(b), tensor_nbytes(a)) == 0;
}

// The decoder's output weight and bias are tied to the word embeddings and cls.predictions.bias:
// the copies go, the embedding and the bias stay (the model ties them back).
static void drop_tied(job *j) {
    static const char *const ties[][2] = {
        {"text_decoder.cls.predictions.decoder.weight",
         "text_decoder.bert.embeddings.word_embeddings.weight"},
        {"text_decoder.cls.predictions.decoder.bias", "text_decoder.cls.predictions.bias"}};
    for (int k = 0; k < 2; k++) {
        named_tensor *copy = tensor_list_find(&j->out, ties[k][0]);
        named_tensor *kept = tensor_list_find(&j->out, ties[k][1]);
        if (!copy || !kept || !same_values(copy->value, kept->value)) continue;
        int i = (int)(copy - j->out.items);
        drop(j->rep, ties[k][0],
             k == 0 ? "tied to the word embeddings" : "tied to cls.predictions.bias");
        memmove(&j->buffer[i], &j->buffer[i + 1], (size_t)(j->out.n - i - 1) * sizeof *j->buffer);
        tensor_list_remove(&j->out, i);
    }
}

// Resizes every pos_embed to the image size asked for (or keeps the trained one): *image_size
// gets the size written to the config.
static petal_status resize_pos_embeds(job *j, int *image_size) {
    named_tensor *pos = tensor_list_find(&j->out, "visual_encoder.pos_embed");
    named_tensor *patch = tensor_list_find(&j->out, "visual_encoder.patch_embed.proj.weight");
    int grid = pos ? pos_embed_grid(pos->value) : -1;
    if (grid < 0 || !patch || patch->value->ndim != 4)
        return petal_error(PETAL_ERR_KEY,
                           "%s: visual_encoder.pos_embed must be (1, 1 + g*g, C) beside a 4-d "
                           "patch_embed.proj.weight",
                           j->src);
    int p = (int)patch->value->shape[2], target = j->opts->image_size;
    *image_size = target ? target : grid * p;
    if (*image_size > IMAGE_MAX_MODEL_SIZE)
        return petal_error(PETAL_ERR_ARG, "--image-size %d is above %d", *image_size,
                           IMAGE_MAX_MODEL_SIZE);
    if (*image_size % p != 0)
        return petal_error(PETAL_ERR_ARG, "--image-size %d is not a multiple of the patch size %d",
                           *image_size, p);
    for (int i = 0; i < j->out.n && *image_size / p != grid; i++) {
        named_tensor *e = &j->out.items[i];
        if (!ends_with(e->name, "pos_embed") || pos_embed_grid(e->value) != grid) continue;
        tensor *resized = pos_embed_resize(e->value, *image_size / p);
        if (!j->rep->resized[0]) {
            char a[SHAPE_STR_MAX], b[SHAPE_STR_MAX];
            snprintf(j->rep->resized, sizeof j->rep->resized, "%s %s -> %s", e->name,
                     shape_str(e->value->ndim, e->value->shape, a, sizeof a),
                     shape_str(resized->ndim, resized->shape, b, sizeof b));
        }
        tensor_free(e->value);
        e->value = tensor_keep(resized);
    }
    return PETAL_OK;
}

static petal_status convert_blip(job *j, const tensor_list *in, bool hf,
                                 const convert_hints *hints) {
    tensor_list renamed;
    tensor_list_init(&renamed);
    petal_status st = PETAL_OK;
    for (int i = 0; i < in->n && st == PETAL_OK; i++) {
        char *name = hf ? hf_to_salesforce(in->items[i].name) : NULL;
        const char *to = name ? name : in->items[i].name;
        j->rep->n_renamed += name != NULL;
        if (tensor_list_find(&renamed, to))
            st = petal_error(PETAL_ERR_KEY, "%s: two tensors are named '%s' once renamed", j->src,
                             to);
        else
            tensor_list_add(&renamed, to, tensor_detach(in->items[i].value));
        free(name);
    }
    const task_info *t = NULL;
    if (st == PETAL_OK) st = choose_task(j->src, &renamed, j->opts->task, &t);
    for (int i = 0; i < renamed.n && st == PETAL_OK; i++) {
        bool buffer;
        const char *name = renamed.items[i].name;
        if (is_aurora(name)) {
            st = take_aurora(j, in->items[i].name, name, renamed.items[i].value);
            continue;
        }
        const char *why = blip_drop_reason(name, t, j->opts->keep_momentum, &buffer);
        if (why)
            drop(j->rep, in->items[i].name, why);
        else
            keep(j, name, renamed.items[i].value, buffer);
    }
    tensor_list_free(&renamed);
    if (st != PETAL_OK) return st;
    j->rep->task = t->name;
    drop_tied(j);
    int image_size = 0;
    st = resize_pos_embeds(j, &image_size);
    return st == PETAL_OK
               ? convert_blip_config(j->src, &j->out, t->name, image_size, hints, &j->rep->config)
               : st;
}

// ---- BERT and the rest ----

static petal_status convert_bert(job *j, const tensor_list *in, const convert_hints *hints) {
    for (int i = 0; i < in->n; i++) {
        const char *name = in->items[i].name;
        const char *bare = convert_starts_with(name, "bert.") ? name + 5 : name;
        if (ends_with(bare, "position_ids")) {
            drop(j->rep, name, "position_ids buffer");
        } else if (!convert_starts_with(bare, "embeddings.") &&
                   !convert_starts_with(bare, "encoder.")) {
            drop(j->rep, name, "not part of the encoder (pooler or head)");
        } else {
            char *renamed = NULL;
            PETAL_CHECK(asprintf(&renamed, "text_encoder.%s", bare) >= 0,
                        "convert: out of host memory");
            keep(j, renamed, in->items[i].value, false);
            j->rep->n_renamed++;
            free(renamed);
        }
    }
    return convert_bert_config(j->src, &j->out, hints, &j->rep->config);
}

static petal_status convert_other(job *j, const tensor_list *in) {
    if (j->opts->task || j->opts->image_size)
        return petal_error(PETAL_ERR_ARG,
                           "%s: not a BLIP or BERT state dict, so --task and --image-size do not "
                           "apply",
                           j->src);
    for (int i = 0; i < in->n; i++) keep(j, in->items[i].name, in->items[i].value, false);
    j->rep->config = buffer_strndup("{}", 2);
    return PETAL_OK;
}

// ---- writing ----

static modality modality_of(const char *name) {
    if (convert_starts_with(name, "visual_encoder")) return MODALITY_VISION;
    if (convert_starts_with(name, "text_encoder"))
        return strstr(name, ".crossattention.") ? MODALITY_MULTIMODAL : MODALITY_TEXT;
    return convert_starts_with(name, "text_decoder") ? MODALITY_DECODER : MODALITY_NONE;
}

static int count_lines(const char *text) {
    int lines = 0;
    for (size_t i = 0; text[i]; i++) lines += text[i] == '\n' || !text[i + 1];
    return lines;
}

static petal_status read_vocab(const char *path, char **text, int *lines) {
    size_t len = 0;
    petal_status st = buffer_read_file(path, text, &len);
    if (st != PETAL_OK) return st;
    if (strlen(*text) != len) {
        free(*text);
        *text = NULL;
        return petal_error(PETAL_ERR_FORMAT, "vocabulary '%s' holds NUL bytes", path);
    }
    *lines = count_lines(*text);
    return PETAL_OK;
}

// The tensors of src; a petal checkpoint converted again (another task, image size or naming)
// keeps its vocabulary unless --vocab gives another: dropping it would lose the tokenizer.
static petal_status read_source(job *j, tensor_list *in) {
    checkpoint_info info;
    petal_status st = weights_read(j->src, in, NULL, &info);
    if (st == PETAL_OK && !j->opts->vocab_path && info.vocab) {
        j->vocab = info.vocab;
        info.vocab = NULL;
        j->rep->vocab_tokens = count_lines(j->vocab);
        j->rep->vocab_kept = true;
    }
    checkpoint_info_free(&info);
    return st;
}

static petal_status write_checkpoint(job *j, const char *dst) {
    petal_status st = PETAL_OK;
    if (j->opts->vocab_path) st = read_vocab(j->opts->vocab_path, &j->vocab, &j->rep->vocab_tokens);
    if (st != PETAL_OK) return st;
    param_registry *r = registry_new();
    for (int i = 0; i < j->out.n; i++) {
        named_tensor *e = &j->out.items[i];
        registry_add(r, e->name, tensor_detach(e->value), modality_of(e->name), false)->buffer =
            j->buffer[i];
    }
    st = checkpoint_save(dst, r, CHECKPOINT_FULL,
                         &(checkpoint_meta){.config = j->rep->config, .vocab = j->vocab});
    j->rep->n_written = st == PETAL_OK ? r->n : 0;
    registry_free(r);
    return st;
}

petal_status convert_file(const char *src, const char *dst, const convert_options *opts,
                          convert_report *report) {
    convert_report local;
    convert_report *rep = report ? report : &local;
    *rep = (convert_report){0};
    job j = {.src = src, .opts = opts, .rep = rep};
    tensor_list_init(&j.out);
    tensor_list in;
    convert_hints hints;
    petal_status st = read_source(&j, &in);
    if (st != PETAL_OK) return st;
    rep->n_read = in.n;
    naming style = detect_naming(&in);
    rep->style = naming_names[style];
    st = convert_read_hints(src, opts->heads, &hints);
    if (st == PETAL_OK && hints.vision_eps_overridden > 0 && style != NAMING_BERT)
        snprintf(rep->overridden, sizeof rep->overridden,
                 "vision_config.layer_norm_eps %g (petal's ViT keeps BLIP's 1e-06)",
                 hints.vision_eps_overridden);
    if (st == PETAL_OK && (style == NAMING_SALESFORCE || style == NAMING_HF))
        st = convert_blip(&j, &in, style == NAMING_HF, &hints);
    else if (st == PETAL_OK)
        st = style == NAMING_BERT ? convert_bert(&j, &in, &hints) : convert_other(&j, &in);
    tensor_list_free(&in);
    if (st == PETAL_OK) st = write_checkpoint(&j, dst);
    tensor_list_free(&j.out);
    free(j.buffer);
    free(j.vocab);
    if (!report) convert_report_free(&local);
    return st;
}

void convert_report_free(convert_report *report) {
    for (int i = 0; i < report->n_dropped; i++) free(report->dropped[i].name);
    free(report->dropped);
    free(report->config);
    tensor_list_free(&report->petl);
    *report = (convert_report){0};
}
