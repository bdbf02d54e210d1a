#include "models/blip/blip.h"

#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "tensor/error.h"

// The heads of blip_retrieval.py / blip_itm.py, with nn.Linear's default initialisation.
static void heads_init(nn_linear *vision_proj, nn_linear *text_proj, nn_builder *b,
                       const blip_config *c, const char *suffix) {
    char buf[NN_NAME_MAX];
    nn_linear_init(vision_proj, b, nn_name(buf, "vision_proj%s", suffix), c->vision.width,
                   c->embed_dim, true, MODALITY_VISION, NN_INIT_TORCH);
    nn_linear_init(text_proj, b, nn_name(buf, "text_proj%s", suffix), c->text.hidden, c->embed_dim,
                   true, MODALITY_TEXT, NN_INIT_TORCH);
}

static tensor *buffer(nn_builder *b, const char *name, petal_dtype dtype, int ndim,
                      const int64_t *shape) {
    tensor *t = tensor_zeros(dtype, ndim, shape);
    registry_add(b->registry, name, t, MODALITY_NONE, false)->buffer = true;
    return t;
}

// The queues start as random unit columns and unknown (-100) ids, as in blip_retrieval.py.
static void queues_fill(blip_model *m, nn_builder *b) {
    tensor *queues[] = {m->image_queue, m->text_queue};
    for (int i = 0; i < 2 && !b->skip_init; i++) {
        tensor_normal_(queues[i], 0, 1, b->rng);
        tensor *unit = tensor_normalize(queues[i], 0, 1e-12);
        tensor_copy_(queues[i], unit);
        tensor_free(unit);
    }
    tensor_fill_(m->idx_queue, -100);
    tensor_fill_(m->ptr_queue, 0);
}

static void queues_init(blip_model *m, nn_builder *b) {
    int64_t e = m->cfg.embed_dim, q = m->cfg.queue_size;
    m->image_queue = buffer(b, "image_queue", b->dtype, SHAPE(e, q));
    m->text_queue = buffer(b, "text_queue", b->dtype, SHAPE(e, q));
    m->idx_queue = buffer(b, "idx_queue", PETAL_I64, SHAPE(1, q));
    m->ptr_queue = buffer(b, "ptr_queue", PETAL_I64, SHAPE(1));
    queues_fill(m, b);
}

// The momentum encoders are state, not parameters: an EMA of the main ones, never trained, left
// out of counts and of the base fingerprint of PETL files (their values drift with training).
static void momentum_init(blip_model *m, nn_builder *b) {
    const blip_config *c = &m->cfg;
    int first = m->registry->n;
    vit_init(&m->vit_m, b, "visual_encoder_m", &c->vision);
    heads_init(&m->vision_proj_m, &m->text_proj_m, b, c, "_m");
    bert_init(&m->text_m, b, "text_encoder_m", NULL, &c->text, MODALITY_TEXT);
    for (int i = first; i < m->registry->n; i++) m->registry->items[i].buffer = true;
    queues_init(m, b);
    if (!b->skip_init) blip_momentum_copy(m); // for loading both are zeros: touch no page
}

static blip_model *build(const blip_config *cfg, petal_dtype dtype, uint64_t seed, bool skip_init) {
    PETAL_CHECK(blip_config_check(cfg) == PETAL_OK, "blip_new: %s", petal_error_message());
    blip_model *m = calloc(1, sizeof *m);
    PETAL_CHECK(m != NULL, "blip_new: out of host memory");
    m->cfg = *cfg;
    m->registry = registry_new();
    rng_generator g = {seed, 0};
    nn_builder b = {m->registry, &g, dtype, skip_init};
    bool grad = grad_mode_set(false);
    m->has_vision = blip_task_has_vision(cfg->task);
    m->has_text = blip_task_has_text(cfg->task);
    m->has_decoder = blip_task_has_decoder(cfg->task);
    m->has_heads = blip_task_has_heads(cfg->task);
    if (m->has_vision) vit_init(&m->vit, &b, "visual_encoder", &cfg->vision);
    if (m->has_text) bert_init(&m->text, &b, "text_encoder", NULL, &cfg->text, MODALITY_TEXT);
    if (m->has_decoder)
        bert_init(&m->decoder, &b, "text_decoder.bert", "text_decoder", &cfg->decoder,
                  MODALITY_DECODER);
    if (m->has_heads) {
        heads_init(&m->vision_proj, &m->text_proj, &b, cfg, "");
        nn_linear_init(&m->itm_head, &b, "itm_head", cfg->text.hidden, 2, true, MODALITY_NONE,
                       NN_INIT_TORCH);
    }
    if (blip_task_trains_itc(cfg->task)) {
        m->temp = nn_param(&b, "temp", 0, NULL, MODALITY_NONE, false);
        tensor_fill_(m->temp, cfg->temp);
        if (cfg->momentum) momentum_init(m, &b);
    }
    grad_mode_set(grad);
    return m;
}

blip_model *blip_new(const blip_config *cfg, petal_dtype dtype, uint64_t seed) {
    return build(cfg, dtype, seed, false);
}

blip_model *blip_new_for_loading(const blip_config *cfg, petal_dtype dtype) {
    return build(cfg, dtype, 0, true);
}

void blip_free(blip_model *m) {
    if (!m) return;
    if (m->has_vision) vit_free(&m->vit);
    if (m->has_text) bert_free(&m->text);
    if (m->has_decoder) bert_free(&m->decoder);
    if (m->has_heads) {
        nn_linear_free(&m->vision_proj);
        nn_linear_free(&m->text_proj);
        nn_linear_free(&m->itm_head);
    }
    if (m->image_queue) { // momentum copies exist
        vit_free(&m->vit_m);
        bert_free(&m->text_m);
        nn_linear_free(&m->vision_proj_m);
        nn_linear_free(&m->text_proj_m);
    }
    cls_hooks_free(&m->itm_positive);
    cls_hooks_free(&m->itm_all);
    loss_hooks_free(m->itc_extra);
    if (m->petl_free) m->petl_free(m->petl);
    registry_free(m->registry);
    free(m);
}

void blip_momentum_pairs(blip_model *m, void (*fn)(tensor *main, tensor *copy, void *ctx),
                         void *ctx) {
    static const char *const prefixes[] = {"visual_encoder.", "vision_proj.", "text_encoder.",
                                           "text_proj."};
    char name[NN_NAME_MAX];
    for (int i = 0; i < m->registry->n; i++) {
        const param_entry *e = &m->registry->items[i];
        for (int p = 0; p < 4; p++) {
            size_t len = strlen(prefixes[p]);
            if (strncmp(e->name, prefixes[p], len) != 0) continue;
            // "visual_encoder.x" -> "visual_encoder_m.x"
            nn_name(name, "%.*s_m.%s", (int)(len - 1), prefixes[p], e->name + len);
            param_entry *copy = registry_find(m->registry, name);
            if (copy) fn(e->value, copy->value, ctx);
        }
    }
}

static void copy_pair(tensor *main, tensor *copy, void *ctx) {
    (void)ctx;
    tensor_copy_(copy, main);
}

void blip_momentum_copy(blip_model *m) {
    blip_momentum_pairs(m, copy_pair, NULL);
}

void blip_momentum_reset(blip_model *m, uint64_t seed) {
    if (!m->image_queue) return;
    bool grad = grad_mode_set(false);
    blip_momentum_copy(m);
    rng_generator g = {seed, 0};
    nn_builder b = {m->registry, &g, m->image_queue->dtype, false};
    queues_fill(m, &b);
    grad_mode_set(grad);
}

tensor *blip_image_embeds(const blip_model *m, tensor *images, const nn_ctx *ctx) {
    return vit_forward(&m->vit, images, ctx);
}

// normalize(proj(x[:, 0])) along the last dim
static tensor *projected_cls(const nn_linear *proj, tensor *x) {
    const nn_ctx eval = NN_EVAL;
    tensor *cls = tensor_select(x, 1, 0);
    tensor *p = nn_consume(cls, nn_linear_forward(proj, cls, &eval));
    return nn_consume(p, tensor_normalize(p, -1, 1e-12));
}

tensor *blip_image_feat(const blip_model *m, tensor *image_embeds) {
    return projected_cls(&m->vision_proj, image_embeds);
}

tensor *blip_text_feat(const blip_model *m, tensor *ids, tensor *mask, const nn_ctx *ctx) {
    bert_input in = {.ids = ids, .mask = mask, .mode = BERT_TEXT};
    tensor *h = bert_forward(&m->text, &in, ctx);
    return nn_consume(h, projected_cls(&m->text_proj, h));
}

tensor *blip_multimodal_rows(const blip_model *m, tensor *ids, tensor *mask, tensor *image_embeds,
                             tensor *rows, tensor *key_scale, const nn_ctx *ctx) {
    bert_input in = {.ids = ids,
                     .mask = mask,
                     .mode = BERT_MULTIMODAL,
                     .encoder_states = image_embeds,
                     .key_scale = key_scale,
                     .encoder_index = rows};
    return bert_forward(&m->text, &in, ctx);
}

tensor *blip_multimodal(const blip_model *m, tensor *ids, tensor *mask, tensor *image_embeds,
                        const nn_ctx *ctx) {
    return blip_multimodal_rows(m, ids, mask, image_embeds, NULL, NULL, ctx);
}

tensor *blip_itm_logits_rows(const blip_model *m, tensor *ids, tensor *mask, tensor *image_embeds,
                             tensor *rows, const nn_ctx *ctx) {
    tensor *h = blip_multimodal_rows(m, ids, mask, image_embeds, rows, NULL, ctx);
    tensor *cls = nn_consume(h, tensor_select(h, 1, 0));
    return nn_consume(cls, nn_linear_forward(&m->itm_head, cls, ctx));
}

tensor *blip_itm_logits(const blip_model *m, tensor *ids, tensor *mask, tensor *image_embeds,
                        const nn_ctx *ctx) {
    return blip_itm_logits_rows(m, ids, mask, image_embeds, NULL, ctx);
}

tensor *blip_with_first_token(tensor *ids, int64_t token) {
    tensor *out = tensor_clone_data(ids);
    tensor *first = tensor_select(out, 1, 0);
    tensor_fill_(first, (double)token);
    tensor_free(first);
    return out;
}

void blip_set_text_dropout(blip_model *m, double hidden, double attention) {
    bert_model *texts[] = {m->has_text ? &m->text : NULL, m->has_decoder ? &m->decoder : NULL,
                           m->image_queue ? &m->text_m : NULL};
    for (int i = 0; i < 3; i++)
        if (texts[i]) bert_set_dropout(texts[i], hidden, attention);
}
