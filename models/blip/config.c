#include "models/blip/config.h"

#include <stdio.h>
#include <string.h>

#include "io/image.h"
#include "tensor/storage.h"

static const char *const task_names[] = {
    [BLIP_RETRIEVAL] = "retrieval", [BLIP_ITM] = "itm",   [BLIP_VQA] = "vqa",
    [BLIP_CAPTION] = "caption",     [BLIP_TEXT] = "text", [BLIP_PRETRAIN] = "pretrain"};

const char *blip_task_name(blip_task task) {
    return task_names[task];
}

petal_status blip_task_parse(const char *name, blip_task *out) {
    for (int t = 0; t < (int)(sizeof task_names / sizeof task_names[0]); t++)
        if (strcmp(name, task_names[t]) == 0) {
            *out = (blip_task)t;
            return PETAL_OK;
        }
    return petal_error(PETAL_ERR_ARG,
                       "task '%s': expected retrieval, itm, vqa, caption, text or pretrain", name);
}

bool blip_task_has_vision(blip_task task) {
    return task != BLIP_TEXT;
}

bool blip_task_has_text(blip_task task) {
    return task != BLIP_CAPTION;
}

bool blip_task_has_decoder(blip_task task) {
    return task == BLIP_CAPTION || task == BLIP_VQA || task == BLIP_PRETRAIN;
}

bool blip_task_has_heads(blip_task task) {
    return task == BLIP_RETRIEVAL || task == BLIP_ITM || task == BLIP_PRETRAIN;
}

bool blip_task_trains_itc(blip_task task) {
    return task == BLIP_RETRIEVAL || task == BLIP_PRETRAIN;
}

petal_status blip_config_named(const char *name, blip_config *out) {
    static const struct {
        const char *prefix;
        blip_config (*make)(blip_task);
    } sizes[] = {{"blip-tiny-", blip_config_tiny},
                 {"blip-base-", blip_config_base},
                 {"blip-large-", blip_config_large}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = strlen(sizes[i].prefix);
        if (strncmp(name, sizes[i].prefix, n) != 0) continue;
        blip_task task;
        if (blip_task_parse(name + n, &task) != PETAL_OK)
            return petal_error(PETAL_ERR_ARG,
                               "model '%s': task '%s': expected retrieval, itm, vqa or caption",
                               name, name + n);
        *out = sizes[i].make(task);
        return PETAL_OK;
    }
    return petal_error(PETAL_ERR_ARG,
                       "model '%s': expected blip-<size>-<task> with size tiny, base or large "
                       "(e.g. blip-base-retrieval)",
                       name);
}

static bert_config med_config(int64_t encoder_width, bool lm_head) {
    return (bert_config){.hidden = 768,
                         .layers = 12,
                         .heads = 12,
                         .intermediate = 3072,
                         .vocab = 30524,
                         .max_positions = 512,
                         .type_vocab = 0,
                         .encoder_width = encoder_width,
                         .eps = 1e-12,
                         .dropout = 0.1,
                         .attn_dropout = 0.1,
                         .lm_head = lm_head};
}

static blip_config with_task(blip_config c, blip_task task) {
    c.task = task;
    c.vision.image_size = task == BLIP_VQA ? 480 : 384;
    c.vision.drop_path = task == BLIP_VQA ? 0.1 : 0.0;
    c.text = med_config(c.vision.width, false);
    // The VQA answer decoder cross-attends to the question encoder (768 wide); the caption
    // decoder to the image.
    c.decoder = med_config(task == BLIP_VQA ? c.text.hidden : c.vision.width, true);
    c.embed_dim = 256;
    c.tokens =
        (blip_tokens){.pad = 0, .unk = 100, .cls = 101, .sep = 102, .dec = 30522, .enc = 30523};
    c.momentum = blip_task_trains_itc(task);
    c.queue_size = 57600;
    c.momentum_coef = 0.995;
    c.temp = 0.07;
    return c;
}

blip_config blip_config_base(blip_task task) {
    blip_config c = {
        .vision = {.patch = 16, .width = 768, .depth = 12, .heads = 12, .mlp = 3072, .eps = 1e-6}};
    return with_task(c, task);
}

blip_config blip_config_large(blip_task task) {
    blip_config c = {
        .vision = {.patch = 16, .width = 1024, .depth = 24, .heads = 16, .mlp = 4096, .eps = 1e-6}};
    c = with_task(c, task);
    c.vision.drop_path = 0.1; // create_vit('large') uses 0.1 for every task
    return c;
}

blip_config blip_config_tiny(blip_task task) {
    blip_config c = {
        .vision = {.patch = 16, .width = 32, .depth = 2, .heads = 2, .mlp = 64, .eps = 1e-6}};
    c = with_task(c, task);
    c.vision.image_size = 32;
    bert_config *text_models[] = {&c.text, &c.decoder};
    for (int i = 0; i < 2; i++) {
        bert_config *t = text_models[i];
        t->hidden = 32;
        t->layers = 2;
        t->heads = 2;
        t->intermediate = 64;
        t->vocab = 128;
        t->max_positions = 64;
        t->encoder_width = 32;
    }
    c.embed_dim = 16;
    c.tokens = (blip_tokens){.pad = 0, .unk = 3, .cls = 1, .sep = 2, .dec = 126, .enc = 127};
    c.queue_size = 32;
    return c;
}

static petal_status check_positive(const char *field, int64_t value) {
    if (value > 0) return PETAL_OK;
    return petal_error(PETAL_ERR_ARG, "blip config: %s must be positive, got %lld", field,
                       (long long)value);
}

static petal_status check_heads(const char *field, int64_t width, int64_t heads) {
    if (heads > 0 && width % heads == 0) return PETAL_OK;
    return petal_error(PETAL_ERR_ARG, "blip config: %s width %lld is not a multiple of %lld heads",
                       field, (long long)width, (long long)heads);
}

static petal_status check_vision(const vit_config *v) {
    petal_status s;
    if ((s = check_positive("vision.patch", v->patch)) ||
        (s = check_positive("vision.depth", v->depth)) ||
        (s = check_heads("vision", v->width, v->heads)) ||
        (s = check_positive("vision.mlp", v->mlp)))
        return s;
    if (v->image_size > IMAGE_MAX_MODEL_SIZE)
        return petal_error(PETAL_ERR_ARG, "blip config: vision.image_size %lld is above %d",
                           (long long)v->image_size, IMAGE_MAX_MODEL_SIZE);
    if (v->image_size <= 0 || v->image_size % v->patch != 0)
        return petal_error(PETAL_ERR_ARG,
                           "blip config: vision.image_size %lld is not a positive multiple of the "
                           "patch size %lld",
                           (long long)v->image_size, (long long)v->patch);
    return PETAL_OK;
}

static petal_status check_text(const char *name, const bert_config *t) {
    char field[32];
    petal_status s;
    snprintf(field, sizeof field, "%s.layers", name);
    if ((s = check_positive(field, t->layers)) || (s = check_heads(name, t->hidden, t->heads)))
        return s;
    snprintf(field, sizeof field, "%s.vocab", name);
    if ((s = check_positive(field, t->vocab))) return s;
    snprintf(field, sizeof field, "%s.max_positions", name);
    return check_positive(field, t->max_positions);
}

// The token ids the task's text models use must be inside their vocabulary.
static petal_status check_tokens(const blip_config *c) {
    const blip_tokens *t = &c->tokens;
    bool blip = c->task != BLIP_TEXT;
    const bert_config *text = blip_task_has_text(c->task) ? &c->text : &c->decoder;
    int64_t ids[] = {t->pad, t->cls, t->sep, blip ? t->dec : 0, blip ? t->enc : 0};
    for (int i = 0; i < 5; i++)
        if (ids[i] < 0 || ids[i] >= text->vocab)
            return petal_error(PETAL_ERR_ARG,
                               "blip config: token id %lld outside the vocabulary (%lld)",
                               (long long)ids[i], (long long)text->vocab);
    return PETAL_OK;
}

// What one part of a model needs in f32, counted in double so that no width overflows.
typedef struct {
    const char *what, *fields;
    double bytes;
    bool momentum; // retrieval's momentum encoders hold a second copy
} memory_part;

// Weights of a ViT, and the attention scores of one image in one block.
static void vision_parts(const vit_config *v, memory_part *weights, memory_part *scores) {
    double w = (double)v->width, mlp = (double)v->mlp, p = (double)v->patch;
    double tokens = (double)(v->image_size / v->patch) * (double)(v->image_size / v->patch) + 1;
    double block = 4 * w * w + 2 * w * mlp + 9 * w + mlp;
    *weights = (memory_part){"the vision encoder's weights", "vision width, depth, mlp",
                             4 * (3 * p * p * w + tokens * w + (double)v->depth * block), true};
    *scores = (memory_part){"one image's attention scores", "image_size, patch, vision heads",
                            4 * (double)v->heads * tokens * tokens, false};
}

// Weights of a BERT: embeddings, layers (with cross-attention when it reads an encoder).
static memory_part text_weights(const char *what, const char *fields, const bert_config *t,
                                bool momentum) {
    double h = (double)t->hidden, i = (double)t->intermediate, e = (double)t->encoder_width;
    double layer = 4 * h * h + 2 * h * i + (e > 0 ? 2 * h * h + 2 * e * h : 0);
    double embed = ((double)t->vocab * (t->lm_head ? 2 : 1) + (double)t->max_positions) * h;
    return (memory_part){what, fields, 4 * (embed + (double)t->layers * layer), momentum};
}

// The model must fit the machine before anything is allocated: a width or image size typed one
// digit too long would otherwise end in the allocator's abort or the system's OOM killer.
static petal_status check_memory(const blip_config *c) {
    memory_part parts[4];
    int n = 0;
    if (blip_task_has_vision(c->task)) {
        vision_parts(&c->vision, &parts[n], &parts[n + 1]);
        n += 2;
    }
    if (blip_task_has_text(c->task))
        parts[n++] = text_weights("the text encoder's weights",
                                  "text hidden, layers, intermediate, vocab", &c->text, true);
    if (blip_task_has_decoder(c->task))
        parts[n++] =
            text_weights("the text decoder's weights",
                         "decoder hidden, layers, intermediate, vocab", &c->decoder, false);
    bool momentum = c->momentum && blip_task_trains_itc(c->task);
    double total = 0;
    int largest = 0;
    for (int i = 0; i < n; i++) {
        total += parts[i].bytes * (momentum && parts[i].momentum ? 2 : 1);
        if (parts[i].bytes > parts[largest].bytes) largest = i;
    }
    size_t limit = memory_host_limit();
    if (n == 0 || total <= (double)limit) return PETAL_OK;
    const double gib = 1024.0 * 1024.0 * 1024.0;
    return petal_error(PETAL_ERR_ARG,
                       "blip config: the model needs at least %.1f GiB (f32%s) and this machine "
                       "has %.1f GiB; %s alone take %.1f GiB (set by %s)",
                       total / gib, momentum ? ", momentum encoders included" : "",
                       (double)limit / gib, parts[largest].what, parts[largest].bytes / gib,
                       parts[largest].fields);
}

petal_status blip_config_check(const blip_config *c) {
    petal_status s;
    if (blip_task_has_vision(c->task) && (s = check_vision(&c->vision))) return s;
    if (blip_task_has_text(c->task) && (s = check_text("text", &c->text))) return s;
    if (blip_task_has_decoder(c->task) && (s = check_text("decoder", &c->decoder))) return s;
    if (blip_task_has_heads(c->task) && (s = check_positive("embed_dim", c->embed_dim))) return s;
    if ((s = check_tokens(c))) return s;
    return check_memory(c);
}
