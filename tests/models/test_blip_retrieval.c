// models/blip retrieval against the Salesforce BLIP code (tests/data/blip/tiny_retrieval.h5,
// written by tools/make_blip_fixtures.py): every stage, both losses, gradients, the momentum
// update and the queues.
#include <math.h>
#include <stdio.h>

#include "models/blip/retrieval.h"
#include "ops/ops.h"
#include "tensor/scope.h"
#include "tests/fixture.h"
#include "tests/test_util.h"

#define TOL 1e-5 // f32, relative to each tensor's largest magnitude

typedef struct {
    fixture f;
    blip_model *m;
    tensor *image, *ids, *mask, *idx;
} setup;

static setup load(void) {
    setup s;
    ck_assert(fixture_open(&s.f, "blip/tiny_retrieval.h5"));
    blip_config cfg = blip_config_tiny(BLIP_RETRIEVAL);
    cfg.queue_size = 12;
    s.m = blip_new_for_loading(&cfg, PETAL_F32);
    ck_assert_int_eq(fixture_load_weights(&s.f, s.m->registry), 0);
    s.image = fixture_get(&s.f, "inputs/image");
    s.ids = fixture_get(&s.f, "inputs/ids");
    tensor *mask = fixture_get(&s.f, "inputs/mask");
    s.mask = tensor_cast(mask, PETAL_F32);
    tensor_free(mask);
    s.idx = fixture_get(&s.f, "inputs/idx");
    return s;
}

static void unload(setup *s) {
    blip_free(s->m);
    fixture_close(&s->f);
}

START_TEST(test_stages) {
    int mark = scope_begin();
    setup s = load();
    const nn_ctx eval = NN_EVAL;
    ck_assert(fixture_check(&s.f, "outputs/patch_embed", vit_patch_embed(&s.m->vit, s.image), TOL));
    tensor *embeds = blip_image_embeds(s.m, s.image, &eval);
    ck_assert(fixture_check(&s.f, "outputs/image_embeds", embeds, TOL));
    bert_input text = {.ids = s.ids, .mask = s.mask, .mode = BERT_TEXT};
    ck_assert(
        fixture_check(&s.f, "outputs/text_mode", bert_forward(&s.m->text, &text, &eval), TOL));
    tensor *enc = blip_with_first_token(s.ids, s.m->cfg.tokens.enc);
    ck_assert(fixture_check(&s.f, "outputs/multimodal",
                            blip_multimodal(s.m, enc, s.mask, embeds, &eval), TOL));
    ck_assert(fixture_check(&s.f, "outputs/itm_logits",
                            blip_itm_logits(s.m, enc, s.mask, embeds, &eval), TOL));
    tensor *image_feat = blip_image_feat(s.m, embeds);
    tensor *text_feat = blip_text_feat(s.m, s.ids, s.mask, &eval);
    ck_assert(fixture_check(&s.f, "outputs/image_feat", image_feat, TOL));
    ck_assert(fixture_check(&s.f, "outputs/text_feat", text_feat, TOL));
    ck_assert(fixture_check(&s.f, "outputs/itc_sim",
                            tensor_matmul(image_feat, tensor_transpose(text_feat, 0, 1)), TOL));
    unload(&s);
    scope_end(mark);
}
END_TEST

START_TEST(test_vit_blocks) {
    int mark = scope_begin();
    setup s = load();
    const nn_ctx eval = NN_EVAL;
    tensor *x = vit_patch_embed(&s.m->vit, s.image);
    tensor *cls = tensor_expand(s.m->vit.cls_token, SHAPE(3, 1, 32));
    x = tensor_concat((tensor *[]){cls, x}, 2, 1);
    x = tensor_add(x, s.m->vit.pos_embed);
    for (int i = 0; i < 2; i++) {
        x = vit_block_forward(&s.m->vit.blocks[i], x, NULL, i, &eval);
        char name[32];
        snprintf(name, sizeof name, "outputs/vit_block%d", i);
        ck_assert(fixture_check(&s.f, name, x, TOL));
    }
    unload(&s);
    scope_end(mark);
}
END_TEST

START_TEST(test_training_step) {
    int mark = scope_begin();
    setup s = load();
    tensor *neg_img = fixture_get(&s.f, "inputs/neg_image_for_text");
    tensor *neg_txt = fixture_get(&s.f, "inputs/neg_text_for_image");
    tensor_set_requires_grad(s.image, true);
    registry_set_trainable(s.m->registry, "*", true);
    registry_set_trainable(s.m->registry, "*_m.*", false);
    const nn_ctx eval = NN_EVAL;
    retrieval_options opt = {.alpha = 0.4,
                             .neg_image_for_text = tensor_data_i64(neg_img),
                             .neg_text_for_image = tensor_data_i64(neg_txt)};
    retrieval_losses l = blip_retrieval_losses(s.m, s.image, s.ids, s.mask, s.idx, &opt, &eval);
    ck_assert(fixture_check(&s.f, "outputs/loss_ita", l.ita, TOL));
    ck_assert(fixture_check(&s.f, "outputs/loss_itm", l.itm, TOL));
    autograd_backward(tensor_add(l.ita, l.itm), NULL, false);
    ck_assert(fixture_check(&s.f, "grads/image", s.image->grad, 1e-4));
    static const char *const params[] = {
        "itm_head.weight",
        "vision_proj.weight",
        "text_proj.weight",
        "temp",
        "visual_encoder.blocks.0.attn.qkv.weight",
        "visual_encoder.pos_embed",
        "text_encoder.encoder.layer.1.crossattention.self.query.weight",
        "text_encoder.encoder.layer.0.attention.self.value.bias",
        "text_encoder.embeddings.word_embeddings.weight"};
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        char name[256];
        snprintf(name, sizeof name, "grads/%s", params[i]);
        ck_assert_msg(fixture_check(&s.f, name, registry_get(s.m->registry, params[i])->grad, 1e-4),
                      "%s", name);
    }
    static const char *const after[] = {"image_queue",
                                        "text_queue",
                                        "idx_queue",
                                        "ptr_queue",
                                        "visual_encoder_m.blocks.1.mlp.fc2.weight",
                                        "text_proj_m.weight"};
    for (size_t i = 0; i < sizeof after / sizeof after[0]; i++) {
        char name[256];
        snprintf(name, sizeof name, "after_step/%s", after[i]);
        ck_assert_msg(fixture_check(&s.f, name, registry_get(s.m->registry, after[i]), TOL), "%s",
                      name);
    }
    unload(&s);
    scope_end(mark);
}
END_TEST

// A batch that does not fit before the queue's end wraps to its start (BLIP asserts it never has
// to; petal wraps so that a batch shortened by skipped images still fits).
START_TEST(test_queue_wraps) {
    int mark = scope_begin();
    setup s = load();
    int64_t b = s.ids->shape[0], q = s.m->cfg.queue_size, start = q - 1;
    ck_assert_int_gt(b, 1);
    tensor_fill_(s.m->ptr_queue, (double)start);
    const nn_ctx eval = NN_EVAL;
    retrieval_options opt = {.alpha = 0.4};
    blip_retrieval_losses(s.m, s.image, s.ids, s.mask, s.idx, &opt, &eval);
    ck_assert_int_eq((int64_t)tensor_item(s.m->ptr_queue), (start + b) % q);
    const int64_t *queued = tensor_data_i64(s.m->idx_queue), *ids = tensor_data_i64(s.idx);
    ck_assert_int_eq(queued[start], ids[0]);
    for (int64_t i = 1; i < b; i++) ck_assert_int_eq(queued[i - 1], ids[i]);
    for (int64_t i = b - 1; i < start; i++) ck_assert_int_eq(queued[i], -100); // untouched
    unload(&s);
    scope_end(mark);
}
END_TEST

int main(void) {
    Suite *s = suite_create("blip_retrieval");
    TCase *tc = tcase_with_timeout("parity", 60);
    tcase_add_test(tc, test_stages);
    tcase_add_test(tc, test_vit_blocks);
    tcase_add_test(tc, test_training_step);
    tcase_add_test(tc, test_queue_wraps);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
