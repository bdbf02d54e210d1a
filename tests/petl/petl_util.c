#include "tests/petl/petl_util.h"

#include <stdio.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "models/blip/retrieval.h"
#include "models/blip/tasks.h"
#include "ops/ops.h"
#include "tensor/scope.h"
#include "tests/test_util.h"

tiny tiny_new(petal_dtype dtype) {
    blip_config cfg = blip_config_tiny(BLIP_RETRIEVAL);
    cfg.momentum = false;
    cfg.text.dropout = cfg.text.attn_dropout = 0;
    tiny t = {blip_new(&cfg, dtype, 3), NULL, NULL, NULL};
    rng_generator g = {4, 0};
    t.images = tensor_empty(dtype, SHAPE(2, 3, 32, 32));
    tensor_normal_(t.images, 0, 1, &g);
    t.ids = tensor_from_data(PETAL_I64, SHAPE(2, 6),
                             (int64_t[]){1, 9, 17, 33, 2, 0, 1, 40, 41, 42, 43, 2});
    t.mask =
        tensor_from_data(PETAL_F64, SHAPE(2, 6), (double[]){1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1});
    if (dtype == PETAL_F32) t.mask = tensor_cast(t.mask, PETAL_F32);
    return t;
}

tiny_vqa tiny_vqa_new(petal_dtype dtype) {
    blip_config cfg = blip_config_tiny(BLIP_VQA);
    cfg.vision.drop_path = 0;
    cfg.text.dropout = cfg.text.attn_dropout = cfg.decoder.dropout = cfg.decoder.attn_dropout = 0;
    tiny_vqa t = {.m = blip_new(&cfg, dtype, 3)};
    rng_generator g = {4, 0};
    t.images = tensor_empty(dtype, SHAPE(2, 3, 32, 32));
    tensor_normal_(t.images, 0, 1, &g);
    t.q_ids =
        tensor_from_data(PETAL_I64, SHAPE(2, 5), (int64_t[]){1, 9, 17, 33, 2, 1, 40, 41, 2, 0});
    t.q_mask = tensor_cast(
        tensor_from_data(PETAL_F64, SHAPE(2, 5), (double[]){1, 1, 1, 1, 1, 1, 1, 1, 1, 0}), dtype);
    t.a_ids = tensor_from_data(PETAL_I64, SHAPE(3, 4),
                               (int64_t[]){1, 50, 2, 0, 1, 51, 52, 2, 1, 60, 2, 0});
    t.a_mask = tensor_cast(
        tensor_from_data(PETAL_F64, SHAPE(3, 4), (double[]){1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0}),
        dtype);
    t.weights = tensor_cast(tensor_from_data(PETAL_F64, SHAPE(3), (double[]){0.7, 0.3, 1}), dtype);
    return t;
}

tensor *tiny_vqa_loss(const tiny_vqa *t) {
    static const int64_t n_per_question[] = {2, 1};
    const nn_ctx eval = NN_EVAL;
    return blip_vqa_loss(t->m, t->images, t->q_ids, t->q_mask, t->a_ids, t->a_mask, n_per_question,
                         t->weights, &eval);
}

tensor *petl_test_outputs(const blip_model *m, tensor *images, tensor *ids, tensor *mask) {
    const nn_ctx eval = NN_EVAL;
    tensor *embeds = blip_image_embeds(m, images, &eval);
    tensor *enc = blip_with_first_token(ids, m->cfg.tokens.enc);
    tensor *itm = blip_itm_logits(m, enc, mask, embeds, &eval);
    tensor *image_feat = blip_image_feat(m, embeds);
    tensor *text_feat = blip_text_feat(m, ids, mask, &eval);
    return tensor_concat((tensor *[]){itm, image_feat, text_feat}, 3, 1);
}

tensor *tiny_outputs(const tiny *t) {
    return petl_test_outputs(t->m, t->images, t->ids, t->mask);
}

tensor *tiny_losses(const tiny *t, tensor **extra) {
    const nn_ctx train = {true, NULL};
    static const int64_t neg_img[] = {1, 0}, neg_txt[] = {1, 0};
    retrieval_options o = {
        .alpha = 0.4, .neg_image_for_text = neg_img, .neg_text_for_image = neg_txt};
    tensor *image_ids = tensor_from_data(PETAL_I64, SHAPE(2), (int64_t[]){3, 4});
    retrieval_losses l =
        blip_retrieval_losses(t->m, t->images, t->ids, t->mask, image_ids, &o, &train);
    if (extra) *extra = l.itc_extra;
    return tensor_add(l.ita, l.itm);
}

petl_handle *attach_base(blip_task task, petl_config cfg, blip_model **out) {
    blip_config bc = blip_config_base(task);
    bc.queue_size = 16;
    *out = blip_new_for_loading(&bc, PETAL_F32);
    petl_handle *h = petl_attach(*out, &cfg);
    ck_assert_msg(h != NULL, "%s", petal_error_message());
    return h;
}

// Calls fn(entry) for every registry entry matching one of the comma-separated globs; returns
// how many.
static int for_matching(blip_model *m, const char *patterns, void (*fn)(param_entry *, void *),
                        void *arg) {
    int n = 0;
    for (int i = 0; i < m->registry->n; i++) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", patterns);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save))
            if (registry_match(tok, m->registry->items[i].name)) {
                fn(&m->registry->items[i], arg);
                n++;
                break;
            }
    }
    return n;
}

static void fill_random(param_entry *e, void *g) {
    tensor_normal_(e->value, 0, 0.3, g);
}

void randomise(blip_model *m, const char *patterns) {
    rng_generator g = {11, 0};
    ck_assert_msg(for_matching(m, patterns, fill_random, &g) > 0,
                  "randomise: no parameter matches %s", patterns);
}

void check_unchanged_at_step0(const petl_config *configs, int n) {
    for (int i = 0; i < n; i++) {
        int mark = scope_begin();
        tiny t = tiny_new(PETAL_F32);
        tensor *before = tiny_outputs(&t);
        ck_assert_msg(petl_attach(t.m, &configs[i]) != NULL, "%s", petal_error_message());
        tensor *after = tiny_outputs(&t);
        ck_assert_msg(memcmp(tensor_data(before), tensor_data(after), tensor_nbytes(before)) == 0,
                      "config %d changed the backbone's outputs at step 0", i);
        blip_free(t.m);
        scope_end(mark);
    }
}

void check_merge(petl_config cfg, const char *random, const char *what) {
    int mark = scope_begin();
    tiny t = tiny_new(PETAL_F32);
    petl_handle *h = petl_attach(t.m, &cfg);
    ck_assert_msg(h != NULL, "%s", petal_error_message());
    randomise(t.m, random);
    tensor *qkv = registry_get(t.m->registry, "visual_encoder.blocks.1.attn.qkv.weight");
    tensor *w0 = tensor_clone_data(qkv);
    tensor *with_deltas = tiny_outputs(&t);
    petl_merge(h);
    tensor *change = tensor_abs(tensor_sub(qkv, w0));
    ck_assert_msg(tensor_item(tensor_max(tensor_reshape(change, SHAPE(-1)), 0, false)) > 1e-3,
                  "%s: merging did not change the weight", what);
    ck_assert_msg(tensors_close("merged outputs", tiny_outputs(&t), with_deltas, 1e-6, 1e-6), "%s",
                  what);
    petl_unmerge(h);
    ck_assert_msg(tensors_close("weight after unmerge", qkv, w0, 1e-6, 0), "%s", what);
    ck_assert_msg(tensors_close("outputs after unmerge", tiny_outputs(&t), with_deltas, 1e-6, 1e-6),
                  "%s", what);
    blip_free(t.m);
    scope_end(mark);
}

typedef struct {
    tiny *t;
    bool losses;
} check_ctx;

static tensor *model_fn(tensor **in, const void *vctx) {
    (void)in; // the parameters are read through the model
    const check_ctx *c = vctx;
    if (c->losses) return tensor_reshape(tiny_losses(c->t, NULL), SHAPE(1));
    // A fixed random projection to one number: one backward pass per perturbation instead of one
    // per output element, and every output still contributes.
    tensor *y = tiny_outputs(c->t);
    tensor *w = tensor_empty_like(y);
    tensor_normal_(w, 0, 1, &(rng_generator){5, 0});
    return tensor_reshape(tensor_sum_all(tensor_mul(y, w)), SHAPE(1));
}

typedef struct {
    tensor *items[256];
    int n;
} param_list;

static void collect(param_entry *e, void *list) {
    param_list *l = list;
    ck_assert(l->n < 256);
    l->items[l->n++] = e->value;
}

void gradcheck_config(petl_config cfg, const char *random, const char *checked, bool losses,
                      const char *what) {
    int mark = scope_begin();
    tiny t = tiny_new(PETAL_F64);
    ck_assert_msg(petl_attach(t.m, &cfg) != NULL, "%s", petal_error_message());
    if (random) randomise(t.m, random);
    param_list params = {.n = 0};
    if (checked)
        for_matching(t.m, checked, collect, &params);
    else
        params.n = registry_trainable(t.m->registry, params.items, 256);
    ck_assert(params.n > 0 && params.n <= 256);
    check_ctx c = {&t, losses};
    gradcheck_options o = GRADCHECK_DEFAULTS;
    o.max_per_input = 16; // spread over each tensor: a wrong rule corrupts whole rows or columns
    gradcheck_result r = gradcheck(model_fn, &c, params.n, params.items, &o);
    char line[256];
    gradcheck_describe(&r, line, sizeof line);
    ck_assert_msg(r.passed, "%s: %s", what, line);
    blip_free(t.m);
    scope_end(mark);
}
