#include "tests/petl/petl_util.h"

#include "autograd/gradcheck.h"
#include "models/blip/retrieval.h"
#include "ops/ops.h"
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

void randomise(blip_model *m, const char *pattern) {
    rng_generator g = {11, 0};
    int n = 0;
    for (int i = 0; i < m->registry->n; i++)
        if (registry_match(pattern, m->registry->items[i].name)) {
            tensor_normal_(m->registry->items[i].value, 0, 0.3, &g);
            n++;
        }
    ck_assert_msg(n > 0, "randomise: no parameter matches %s", pattern);
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

void check_gradients(tiny *t, bool losses, int n, tensor **params, const char *what) {
    tensor *all[256];
    if (n == 0) {
        n = registry_trainable(t->m->registry, all, 256);
        ck_assert(n > 0 && n <= 256);
        params = all;
    }
    check_ctx c = {t, losses};
    gradcheck_result r = gradcheck(model_fn, &c, n, params, NULL);
    char line[256];
    gradcheck_describe(&r, line, sizeof line);
    ck_assert_msg(r.passed, "%s: %s", what, line);
}
