#include "petl/petl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "petl/internal.h"
#include "tensor/error.h"

// ---- configurations ----

petl_config petl_config_none(void) {
    return (petl_config){.ice_scale = 0.1, .extra_trainable = "", .seed = 0};
}

petl_config petl_config_cp(petl_variant variant, int64_t rank) {
    petl_config c = petl_config_none();
    bool code = variant == PETL_CODE;
    c.cp = (cp_options){.enabled = true,
                        .rank = rank,
                        .core = code ? CP_CORE_DENSE : CP_CORE_DIAGONAL,
                        .dropout = code ? 0.1 : 0.0,
                        .scale = 1.0,
                        .attention_only = !code,
                        .momentum_copies = code};
    // The released code trains vision_proj and itm_head too (text_proj and temp stay frozen).
    c.extra_trainable = code ? "vision_proj.*,itm_head.*" : "vision_proj.*,text_proj.*,itm_head.*";
    return c;
}

petl_config petl_config_aurora(petl_variant variant, int64_t rank) {
    petl_config c = petl_config_cp(variant, rank);
    c.ice = variant == PETL_CODE ? ICE_MEAN : ICE_SOFTMAX;
    c.gqt = variant == PETL_CODE ? GQT_AFFINE : GQT_GATE;
    return c;
}

petl_config petl_config_lora(int64_t rank) {
    petl_config c = petl_config_none();
    c.lora = (lora_options){true, rank, (double)rank, 0.0,
                            "*.attn.qkv,*.attn.proj,*.self.query,*.self.key,*.self.value,"
                            "*.attention.output.dense,*.crossattention.output.dense"};
    c.extra_trainable = "vision_proj.*,text_proj.*,itm_head.*";
    return c;
}

petl_config petl_config_vera(int64_t rank) {
    petl_config c = petl_config_none();
    c.vera = (vera_options){
        true, rank, 0.1, 0.0, 0, "*.attn.qkv,*.attn.proj,*.self.query,*.self.key,*.self.value"};
    c.extra_trainable = "vision_proj.*,text_proj.*,itm_head.*";
    return c;
}

petl_config petl_config_unitrans(int64_t rank) {
    petl_config c = petl_config_none();
    c.vcra = (vcra_options){true, rank, 0};
    c.qasn = (qasn_options){true, rank, PETL_ACT_GELU, 1}; // A, B apart from VCRA's (seed 0)
    c.mcam = (mcam_options){true, 0.07, 1.0};
    c.extra_trainable = "vision_proj.*,text_proj.*,itm_head.*";
    return c;
}

petl_config petl_config_adapter(int64_t rank) {
    petl_config c = petl_config_none();
    c.adapter = (adapter_options){true, rank, 0.1};
    c.extra_trainable = "vision_proj.*,text_proj.*,itm_head.*";
    return c;
}

// Adds one named method (or preset) into c.
static petal_status add_method(petl_config *c, const char *name, petl_variant v, int64_t rank) {
    petl_config p;
    if (strcmp(name, "aurora") == 0)
        p = petl_config_aurora(v, rank);
    else if (strcmp(name, "cp") == 0)
        p = petl_config_cp(v, rank);
    else if (strcmp(name, "lora") == 0)
        p = petl_config_lora(rank);
    else if (strcmp(name, "vera") == 0)
        p = petl_config_vera(rank);
    else if (strcmp(name, "unitrans") == 0)
        p = petl_config_unitrans(rank);
    else if (strcmp(name, "adapter") == 0)
        p = petl_config_adapter(rank);
    else if (strcmp(name, "ice") == 0) {
        c->ice = v == PETL_CODE ? ICE_MEAN : ICE_SOFTMAX;
        return PETAL_OK;
    } else if (strcmp(name, "gqt") == 0) {
        c->gqt = v == PETL_CODE ? GQT_AFFINE : GQT_GATE;
        return PETAL_OK;
    } else if (strcmp(name, "vcra") == 0 || strcmp(name, "qasn") == 0 ||
               strcmp(name, "mcam") == 0) {
        p = petl_config_unitrans(rank);
        if (strcmp(name, "vcra") == 0) c->vcra = p.vcra;
        if (strcmp(name, "qasn") == 0) c->qasn = p.qasn;
        if (strcmp(name, "mcam") == 0) c->mcam = p.mcam;
        if (!*c->extra_trainable) c->extra_trainable = p.extra_trainable;
        return PETAL_OK;
    } else {
        return petal_error(
            PETAL_ERR_ARG,
            "method '%s': expected aurora, cp, ice, gqt, lora, vera, unitrans, vcra, "
            "qasn, mcam or adapter (join several with '+')",
            name);
    }
    if (p.cp.enabled) c->cp = p.cp;
    if (p.ice) c->ice = p.ice;
    if (p.gqt) c->gqt = p.gqt;
    if (p.lora.enabled) c->lora = p.lora;
    if (p.vera.enabled) c->vera = p.vera;
    if (p.vcra.enabled) c->vcra = p.vcra;
    if (p.qasn.enabled) c->qasn = p.qasn;
    if (p.mcam.enabled) c->mcam = p.mcam;
    if (p.adapter.enabled) c->adapter = p.adapter;
    if (!*c->extra_trainable) c->extra_trainable = p.extra_trainable;
    return PETAL_OK;
}

petal_status petl_config_parse(const char *methods, petl_variant variant, int64_t rank,
                               petl_config *out) {
    if (rank < 1)
        return petal_error(PETAL_ERR_ARG, "rank %lld: must be at least 1", (long long)rank);
    petl_config c = petl_config_none();
    char buf[256];
    snprintf(buf, sizeof buf, "%s", methods);
    for (char *save = NULL, *tok = strtok_r(buf, "+", &save); tok;
         tok = strtok_r(NULL, "+", &save)) {
        petal_status s = add_method(&c, tok, variant, rank);
        if (s) return s;
    }
    *out = c;
    return PETAL_OK;
}

// ---- the handle ----

#define DECODER_LAYER "text_decoder.bert.encoder.layer."
#define ENCODER_LAYER "text_encoder.encoder.layer."

// Under share_decoder, the question encoder's name for a decoder layer's
// ("text_decoder.bert.encoder.layer.3.x" -> "text_encoder.encoder.layer.3.x") written to buf;
// NULL for any other name, or without the option.
static const char *decoder_twin(const petl_handle *h, const char *name, char *buf) {
    size_t n = strlen(DECODER_LAYER);
    if (!h->cfg.share_decoder || strncmp(name, DECODER_LAYER, n) != 0) return NULL;
    return nn_name(buf, ENCODER_LAYER "%s", name + n);
}

// The twin's tensor for the decoder's `name`, or NULL after recording in h->status why there is
// none: a decoder tensor of its own would be a silent partial share.
static tensor *shared_twin(petl_handle *h, const char *name, const char *twin, int ndim,
                           const int64_t *shape) {
    const param_registry *r = h->m->registry;
    const param_entry *e = registry_find(r, twin);
    if (e && (int)(e - r->items) >= h->first_entry && e->value->ndim == ndim &&
        memcmp(e->value->shape, shape, (size_t)ndim * sizeof *shape) == 0)
        return e->value;
    if (h->status == PETAL_OK)
        h->status = petal_error(PETAL_ERR_ARG,
                                "petl.share_decoder: the decoder's '%s' has no twin '%s' of the "
                                "same shape in the question encoder (%s); the method's decoder "
                                "targets must be the encoder's",
                                name, twin, e ? "it has another shape" : "no such PETL tensor");
    return NULL;
}

tensor *petl_param(petl_handle *h, const char *name, int ndim, const int64_t *shape, modality tag,
                   bool frozen) {
    char buf[NN_NAME_MAX];
    const char *twin = decoder_twin(h, name, buf);
    tensor *shared = twin ? shared_twin(h, name, twin, ndim, shape) : NULL;
    if (shared) return shared;
    tensor *t = tensor_zeros(h->m->registry->items[0].value->dtype, ndim, shape);
    param_entry *e = registry_add(h->m->registry, name, t, tag, true);
    e->buffer = frozen; // state (momentum twins, fixed random factors), like the model's buffers
    if (!frozen) {
        e->trainable = true;
        tensor_set_requires_grad(t, true);
    }
    return t;
}

// Momentum copies start equal to the coefficients they shadow (blip_retrieval.py copy_params).
void petl_copy_momentum_twins(petl_handle *h) {
    param_registry *r = h->m->registry;
    char name[NN_NAME_MAX];
    for (int i = h->first_entry; i < r->n; i++) {
        const char *n = r->items[i].name, *m = strstr(n, "_m.");
        if (!m) continue;
        nn_name(name, "%.*s%s", (int)(m - n), n,
                m + 2); // "visual_encoder_m.x" -> "visual_encoder.x"
        tensor_copy_(r->items[i].value, registry_get(r, name));
    }
}

// items with room for one more of `size` bytes (at n of *cap), reallocated when full.
static void *grow(void *items, int n, int *cap, size_t size) {
    if (n < *cap) return items;
    *cap = *cap ? 2 * *cap : 16;
    items = realloc(items, (size_t)*cap * size);
    PETAL_CHECK(items != NULL, "petl: out of host memory");
    return items;
}

void petl_add_delta(petl_handle *h, nn_linear *l, nn_delta *d) {
    h->deltas = grow(h->deltas, h->n_deltas, &h->cap_deltas, sizeof *h->deltas);
    h->deltas[h->n_deltas++] = (petl_delta_record){l, d, NULL};
    nn_linear_attach(l, d);
}

static void add_hook(petl_handle *h, petl_hook_record r) {
    h->hooks = grow(h->hooks, h->n_hooks, &h->cap_hooks, sizeof *h->hooks);
    h->hooks[h->n_hooks++] = r;
}

void petl_add_layer_hook(petl_handle *h, layer_hook **list, layer_hook *hook) {
    layer_hooks_append(list, hook);
    add_hook(h, (petl_hook_record){PETL_HOOK_LAYER, .list.layer = list, .hook.layer = hook});
}

void petl_add_cls_hook(petl_handle *h, cls_hook **list, cls_hook *hook) {
    cls_hooks_append(list, hook);
    add_hook(h, (petl_hook_record){PETL_HOOK_CLS, .list.cls = list, .hook.cls = hook});
}

void petl_add_loss_hook(petl_handle *h, loss_hook **list, loss_hook *hook) {
    loss_hook **tail = list;
    while (*tail) tail = &(*tail)->next;
    hook->next = NULL;
    *tail = hook;
    add_hook(h, (petl_hook_record){PETL_HOOK_LOSS, .list.loss = list, .hook.loss = hook});
}

void petl_own(petl_handle *h, void *state, void (*free_state)(void *state)) {
    PETAL_CHECK(h->n_owned < PETL_MAX_OWNED, "petl_own: more than %d owned states", PETL_MAX_OWNED);
    h->owned[h->n_owned++] = (petl_owned){state, free_state};
}

bool petl_matches_any(const char *patterns, const char *name) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", patterns);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        if (registry_match(tok, name)) return true;
    return false;
}

// What the handle owns; the deltas and hooks belong to the model's lists until petl_detach.
static void handle_free(void *p) {
    petl_handle *h = p;
    for (int i = 0; i < h->n_deltas; i++) tensor_free(h->deltas[i].unmerged);
    free(h->deltas);
    free(h->hooks);
    for (int i = 0; i < h->n_snapshots; i++) tensor_free(h->snapshots[i].saved);
    free(h->snapshots);
    free(h->was_trainable);
    for (int i = 0; i < h->n_owned; i++) h->owned[i].free(h->owned[i].state);
    free(h);
}

// ---- shared building blocks ----

petal_status petl_shared_width(const petl_handle *h, const char *method, int64_t rank, int64_t *d) {
    const blip_model *m = h->m;
    *d = m->has_vision ? m->cfg.vision.width : m->cfg.text.hidden;
    bool widths_match = (!m->has_text || m->cfg.text.hidden == *d) &&
                        (!m->has_decoder || m->cfg.decoder.hidden == *d);
    if (rank < 1 || !widths_match)
        return petal_error(PETAL_ERR_ARG,
                           "%s: rank %lld (must be >= 1), vision width %lld, text %lld, decoder "
                           "%lld (the method shares factors across them, so they must be equal)",
                           method, (long long)rank, (long long)*d, (long long)m->cfg.text.hidden,
                           (long long)m->cfg.decoder.hidden);
    return PETAL_OK;
}

tensor *petl_linear(tensor *x, tensor *w) {
    return tensor_linear(x, w, NULL);
}

void petl_input_cache_clear(petl_input_cache *c) {
    if (c->x) tensor_release(c->x);
    tensor_free(c->fx);
    c->x = c->fx = NULL;
}

tensor *petl_cached(petl_input_cache *c, tensor *x, tensor *w, petl_projection f) {
    bool grad = grad_mode_enabled();
    bool hit = c->x == x && c->x_version == x->storage->version &&
               c->w_version == w->storage->version && c->grad == grad;
    if (!hit) {
        petl_input_cache_clear(c);
        c->fx = tensor_keep(f(x, w));
        tensor_retain(x);
        c->x = x;
        c->x_version = x->storage->version;
        c->w_version = w->storage->version;
        c->grad = grad;
    }
    return tensor_reshape(c->fx, c->fx->ndim, c->fx->shape);
}

// A N(0, 1/d) and B N(0, 1/r): each projection keeps the scale of what it reads (a unit-variance x
// gives a unit-variance A x, and B keeps it), so the trainable vectors act on activations of the
// backbone's own magnitude whatever d and r are, and one learning rate suits every rank.
void petl_random_pair(petl_handle *h, const char *a_name, const char *b_name, int64_t r, int64_t d,
                      rng_generator *g, tensor **a, tensor **b) {
    *a = petl_param(h, a_name, SHAPE(r, d), MODALITY_NONE, true);
    tensor_normal_(*a, 0.0, 1.0 / sqrt((double)d), g);
    *b = petl_param(h, b_name, SHAPE(d, r), MODALITY_NONE, true);
    tensor_normal_(*b, 0.0, 1.0 / sqrt((double)r), g);
}

tensor *petl_lowrank_forward(nn_delta *d, tensor *x, const nn_ctx *ctx) {
    tensor *v;
    tensor *z = d->lowrank(d, x, ctx, &v);                               // (..., m, R)
    tensor *o = nn_consume(z, nn_consume(v, tensor_linear(z, v, NULL))); // (..., m, out / m)
    int64_t shape[PETAL_MAX_DIMS];
    for (int i = 0; i < o->ndim - 2; i++) shape[i] = o->shape[i];
    shape[o->ndim - 2] = o->shape[o->ndim - 2] * o->shape[o->ndim - 1];
    return nn_consume(o, tensor_reshape(o, o->ndim - 1, shape));
}

tensor *petl_alias(tensor *t) {
    return tensor_reshape(t, t->ndim, t->shape);
}

tensor *petl_scaled_rows(tensor *b, tensor *lambda_b) {
    tensor *col = tensor_unsqueeze(lambda_b, -1); // (out, 1)
    return nn_consume(col, tensor_mul(b, col));
}

tensor *petl_scaled_up(tensor *u, tensor *lambda_a, tensor *b, tensor *lambda_b) {
    tensor *scaled = tensor_mul(u, lambda_a);
    tensor *up = nn_consume(scaled, petl_linear(scaled, b));
    return nn_consume(up, tensor_mul(up, lambda_b));
}

// Marks the backbone entries matching any of the comma-separated patterns trainable.
static void train_patterns(param_registry *r, const char *patterns) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", patterns);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        registry_set_trainable(r, tok, true);
}

static void snapshot(petl_handle *h, tensor *value) {
    h->snapshots = grow(h->snapshots, h->n_snapshots, &h->cap_snapshots, sizeof *h->snapshots);
    h->snapshots[h->n_snapshots++] = (petl_snapshot){value, tensor_keep(tensor_clone_data(value))};
}

static bool is_backbone(const petl_handle *h, const tensor *t) {
    for (int i = 0; i < h->first_entry; i++)
        if (h->m->registry->items[i].value == t) return true;
    return false;
}

// The momentum copy of a trained backbone head follows it by EMA.
static void snapshot_trained_copy(tensor *main, tensor *copy, void *ctx) {
    petl_handle *h = ctx;
    if (main->requires_grad && is_backbone(h, copy)) snapshot(h, copy);
}

// Saves what training with the method changes in the backbone: the trainable heads, their
// momentum copies and the queues. (The momentum copies of frozen weights, the bulk of the
// momentum encoders, are left out: copying them would double their memory.)
static void snapshot_backbone(petl_handle *h) {
    blip_model *m = h->m;
    for (int i = 0; i < h->first_entry; i++)
        if (m->registry->items[i].trainable) snapshot(h, m->registry->items[i].value);
    blip_momentum_pairs(m, snapshot_trained_copy, h);
    tensor *queues[] = {m->image_queue, m->text_queue, m->idx_queue, m->ptr_queue};
    for (size_t i = 0; i < sizeof queues / sizeof queues[0]; i++)
        if (queues[i]) snapshot(h, queues[i]);
}

// share_decoder needs a question encoder and an answer decoder whose layer i can share tensors:
// the same layer count and the same shapes of every Linear a method may adapt.
static petal_status check_share_decoder(const blip_model *m) {
    if (!m->has_text || !m->has_decoder)
        return petal_error(PETAL_ERR_ARG,
                           "petl.share_decoder: the %s model has no %s; the option shares the "
                           "decoder's PETL tensors with the question encoder's (vqa, videoqa)",
                           blip_task_name(m->cfg.task),
                           m->has_text ? "answer decoder (text_decoder)"
                                       : "question encoder (text_encoder)");
    const bert_config *e = &m->cfg.text, *d = &m->cfg.decoder;
    if (e->layers != d->layers || e->hidden != d->hidden || e->intermediate != d->intermediate ||
        e->encoder_width != d->encoder_width)
        return petal_error(PETAL_ERR_ARG,
                           "petl.share_decoder: the question encoder (%lld layers, hidden %lld, "
                           "intermediate %lld, cross-attention width %lld) and the answer decoder "
                           "(%lld, %lld, %lld, %lld) differ; decoder layer i shares encoder layer "
                           "i's tensors, so they must be of one shape",
                           (long long)e->layers, (long long)e->hidden, (long long)e->intermediate,
                           (long long)e->encoder_width, (long long)d->layers, (long long)d->hidden,
                           (long long)d->intermediate, (long long)d->encoder_width);
    return PETAL_OK;
}

petl_handle *petl_attach(blip_model *m, const petl_config *cfg) {
    PETAL_CHECK(m->petl == NULL, "petl_attach: the model already has PETL methods attached");
    petl_handle *h = calloc(1, sizeof *h);
    PETAL_CHECK(h != NULL, "petl_attach: out of host memory");
    h->cfg = *cfg;
    h->m = m;
    h->rng = (rng_generator){cfg->seed, 0};
    h->first_entry = m->registry->n;
    h->was_trainable = calloc((size_t)h->first_entry + 1, sizeof *h->was_trainable);
    PETAL_CHECK(h->was_trainable != NULL, "petl_attach: out of host memory");
    for (int i = 0; i < h->first_entry; i++) h->was_trainable[i] = m->registry->items[i].trainable;
    registry_freeze_all(m->registry);
    m->petl = h;
    m->petl_free = handle_free;
    bool grad = grad_mode_set(false);
    struct {
        bool on;
        petal_status (*attach)(petl_handle *);
    } methods[] = {
        {cfg->cp.enabled, petl_cp_attach},      {cfg->lora.enabled, petl_lora_attach},
        {cfg->vera.enabled, petl_vera_attach},  {cfg->vcra.enabled, petl_vcra_attach},
        {cfg->gqt != GQT_OFF, petl_gqt_attach}, {cfg->ice != ICE_OFF, petl_ice_attach},
        {cfg->qasn.enabled, petl_qasn_attach},  {cfg->adapter.enabled, petl_adapter_attach},
        {cfg->mcam.enabled, petl_mcam_attach}};
    petal_status s = cfg->share_decoder ? check_share_decoder(m) : PETAL_OK;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0] && s == PETAL_OK; i++) {
        if (!methods[i].on) continue;
        int first = m->registry->n;
        s = methods[i].attach(h);
        if (s == PETAL_OK) s = h->status;
        if (methods[i].attach == petl_gqt_attach) h->gqt_first = first, h->gqt_end = m->registry->n;
    }
    grad_mode_set(grad);
    if (s != PETAL_OK) {
        petl_detach(m); // the message says why; the model is as it was
        return NULL;
    }
    train_patterns(m->registry, cfg->extra_trainable);
    snapshot_backbone(h);
    return h;
}

// Unlinks node from the list at *head (deltas and every kind of hook link through `next`) and
// frees it. head: a local pointer to the list's head, advanced in place.
#define UNLINK_AND_FREE(head, node)                                                                \
    do {                                                                                           \
        while (*(head) != (node)) (head) = &(*(head))->next;                                       \
        *(head) = (node)->next;                                                                    \
        if ((node)->free) (node)->free(node);                                                      \
    } while (0)

static void unlink_hook(const petl_hook_record *r) {
    switch (r->kind) {
    case PETL_HOOK_LAYER: {
        layer_hook **head = r->list.layer;
        UNLINK_AND_FREE(head, r->hook.layer);
        break;
    }
    case PETL_HOOK_CLS: {
        cls_hook **head = r->list.cls;
        UNLINK_AND_FREE(head, r->hook.cls);
        break;
    }
    case PETL_HOOK_LOSS: {
        loss_hook **head = r->list.loss;
        UNLINK_AND_FREE(head, r->hook.loss);
        break;
    }
    }
}

// Drops the entries petl_attach registered and puts back the backbone's flags and values.
static void restore_registry(petl_handle *h) {
    param_registry *r = h->m->registry;
    for (int i = h->first_entry; i < r->n; i++) {
        free(r->items[i].name);
        tensor_free(r->items[i].value);
    }
    r->n = h->first_entry;
    for (int i = 0; i < r->n; i++) {
        param_entry *e = &r->items[i];
        e->trainable = h->was_trainable[i];
        tensor_set_requires_grad(e->value, e->trainable);
        tensor_reset_grad(e->value);
    }
    bool grad = grad_mode_set(false);
    for (int i = 0; i < h->n_snapshots; i++)
        tensor_copy_(h->snapshots[i].value, h->snapshots[i].saved);
    grad_mode_set(grad);
}

void petl_detach(blip_model *m) {
    petl_handle *h = m->petl;
    if (!h) return;
    petl_unmerge(h);
    for (int i = h->n_deltas - 1; i >= 0; i--) {
        nn_delta **head = &h->deltas[i].layer->deltas;
        UNLINK_AND_FREE(head, h->deltas[i].delta);
    }
    for (int i = h->n_hooks - 1; i >= 0; i--) unlink_hook(&h->hooks[i]);
    restore_registry(h);
    m->petl = NULL;
    m->petl_free = NULL;
    handle_free(h);
}

// ---- counting ----

static petl_group group_of(const petl_handle *h, int entry) {
    const param_entry *e = &h->m->registry->items[entry];
    if (entry < h->first_entry) return PETL_GROUP_HEADS;
    if (entry >= h->gqt_first && entry < h->gqt_end) return PETL_GROUP_GQT;
    switch (e->tag) {
    case MODALITY_VISION:
        return PETL_GROUP_VISION;
    case MODALITY_TEXT:
        return PETL_GROUP_TEXT;
    case MODALITY_MULTIMODAL:
        return PETL_GROUP_MULTIMODAL;
    case MODALITY_DECODER:
        return PETL_GROUP_DECODER;
    case MODALITY_NONE:
        break;
    }
    return PETL_GROUP_SHARED;
}

int64_t petl_count_group(const petl_handle *h, petl_group g) {
    int64_t n = 0;
    const param_registry *r = h->m->registry;
    for (int i = 0; i < r->n; i++)
        if (r->items[i].trainable && group_of(h, i) == g) n += tensor_numel(r->items[i].value);
    return n;
}

int64_t petl_count(const petl_handle *h) {
    int64_t n = 0;
    for (int g = 0; g < PETL_GROUP_COUNT; g++)
        if (g != PETL_GROUP_HEADS) n += petl_count_group(h, (petl_group)g);
    return n;
}

const char *petl_format_count(int64_t n, char *buf, size_t size) {
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", (long long)(n < 0 ? -n : n));
    size_t o = 0;
    if (n < 0 && o + 1 < size) buf[o++] = '-';
    for (int i = 0; i < len && o + 1 < size; i++) {
        if (i > 0 && (len - i) % 3 == 0 && o + 2 < size) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

// The kind of tensor an entry is: the last part of its name that is not an index, a modality
// or weight / bias ("visual_encoder.blocks.3.attn.CP_attention" -> "CP_attention",
// "CP_U.vision.weight" -> "CP_U", "itm_head.bias" -> "itm_head"): returns where it starts in
// name and sets *len to its length.
static const char *kind_of(const char *name, int *len) {
    static const char *const skipped[] = {"weight", "bias",       "vision",
                                          "text",   "multimodal", "decoder"};
    const char *kind = name;
    *len = 0;
    for (const char *part = name; *part;) {
        int n = (int)strcspn(part, ".");
        bool skip = strspn(part, "0123456789") >= (size_t)n;
        for (size_t k = 0; k < sizeof skipped / sizeof skipped[0] && !skip; k++)
            skip = (int)strlen(skipped[k]) == n && strncmp(part, skipped[k], (size_t)n) == 0;
        if (!skip || *len == 0) kind = part, *len = n;
        part += n + (part[n] == '.');
    }
    return kind;
}

// "  CP_U, CP_V, CP_C": the distinct kinds of the group's trainable entries, in registry order
// (the first few, then "...").
static void print_kinds(const petl_handle *h, petl_group g, FILE *out) {
    const param_registry *r = h->m->registry;
    struct {
        const char *s;
        int n;
    } kinds[6];
    int n_kinds = 0;
    bool more = false;
    for (int i = 0; i < r->n; i++) {
        if (!r->items[i].trainable || group_of(h, i) != g) continue;
        int len, k = 0;
        const char *kind = kind_of(r->items[i].name, &len);
        while (k < n_kinds && !(kinds[k].n == len && strncmp(kinds[k].s, kind, (size_t)len) == 0))
            k++;
        if (k < n_kinds) continue;
        if (n_kinds == (int)(sizeof kinds / sizeof kinds[0]))
            more = true;
        else
            kinds[n_kinds].s = kind, kinds[n_kinds++].n = len;
    }
    for (int k = 0; k < n_kinds; k++)
        fprintf(out, "%s%.*s", k ? ", " : "  ", kinds[k].n, kinds[k].s);
    if (more) fputs(", ...", out);
}

void petl_print_trainable(const petl_handle *h, FILE *out) {
    int64_t trainable = registry_count(h->m->registry, true);
    int64_t all = registry_count(h->m->registry, false);
    char a[32], b[32];
    fprintf(out, "trainable params: %s || all params: %s || trainable%%: %.4f\n",
            petl_format_count(trainable, a, sizeof a), petl_format_count(all, b, sizeof b),
            100.0 * (double)trainable / (double)all);
    static const char *const names[] = {"shared factors", "vision", "text", "multimodal",
                                        "decoder",        "gqt",    "heads"};
    for (int g = 0; g < PETL_GROUP_COUNT; g++) {
        fprintf(out, "  %-15s %s", names[g],
                petl_format_count(petl_count_group(h, (petl_group)g), a, sizeof a));
        print_kinds(h, (petl_group)g, out);
        if (g == PETL_GROUP_DECODER && h->cfg.share_decoder)
            fputs("  (petl.share_decoder: the question encoder's tensors)", out);
        fputc('\n', out);
    }
}

// ---- merging ----

// dW (out, in) of a linear delta: the delta applied to the identity, transposed.
static tensor *delta_matrix(const petl_delta_record *r) {
    const nn_ctx eval = NN_EVAL;
    int64_t in = r->layer->in;
    tensor *w = r->layer->weight;
    tensor *eye = tensor_zeros(w->dtype, SHAPE(in, in));
    tensor *diag = tensor_make_view(eye->storage, w->dtype, 1, (int64_t[]){in}, (int64_t[]){in + 1},
                                    0); // eye[i, i]
    tensor_fill_(diag, 1.0);
    tensor_free(diag);
    if (w->device.type != PETAL_CPU) eye = nn_consume(eye, tensor_to(eye, w->device));
    tensor *d = r->delta->forward(r->delta, eye, &eval); // (in, out)
    tensor *dt = tensor_transpose(d, 0, 1);
    tensor *out = tensor_keep(tensor_contiguous(dt));
    tensor_free(eye);
    tensor_free(d);
    tensor_free(dt);
    return out;
}

// Several deltas on one Linear fold in one after another; the first keeps the backbone's weight.
void petl_merge(petl_handle *h) {
    bool grad = grad_mode_set(false);
    for (int i = 0; i < h->n_deltas; i++) {
        petl_delta_record *r = &h->deltas[i];
        if (r->unmerged || !r->delta->linear) continue;
        tensor *dw = delta_matrix(r);
        r->unmerged = tensor_keep(tensor_clone_data(r->layer->weight));
        tensor *w = tensor_add(r->layer->weight, dw);
        tensor_copy_(r->layer->weight, w);
        tensor_free(w);
        tensor_free(dw);
        r->delta->merged = true;
    }
    grad_mode_set(grad);
}

// In reverse, so that a Linear's weight ends as its first delta found it: W0 (W0 + dW - dW would
// be off by rounding).
void petl_unmerge(petl_handle *h) {
    bool grad = grad_mode_set(false);
    for (int i = h->n_deltas - 1; i >= 0; i--) {
        petl_delta_record *r = &h->deltas[i];
        if (!r->unmerged) continue;
        tensor_copy_(r->layer->weight, r->unmerged);
        tensor_free(r->unmerged);
        r->unmerged = NULL;
        r->delta->merged = false;
    }
    grad_mode_set(grad);
}

bool petl_is_merged(const petl_handle *h) {
    for (int i = 0; i < h->n_deltas; i++)
        if (h->deltas[i].unmerged) return true;
    return false;
}
