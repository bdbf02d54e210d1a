// One full-size BLIP-base layer of each kind against the Salesforce modules (models/vit.py Block,
// models/med.py BertLayer in text, multimodal and causal decoder use), weights and inputs from
// tests/models/hashed.c: outputs and input gradients (tests/data/blip/base_layers.h5).
#include <stdio.h>
#include <string.h>

#include "models/blip/blip.h"
#include "models/blip/bert.h"
#include "models/blip/vit.h"
#include "ops/ops.h"
#include "tensor/scope.h"
#include "tests/fixture.h"
#include "tests/hashed.h"
#include "tests/test_util.h"

#define TOL 1e-5

START_TEST(test_vit_block) {
    int mark = scope_begin();
    fixture f;
    ck_assert(fixture_open(&f, "blip/base_layers.h5"));
    vit_config cfg = blip_config_base(BLIP_RETRIEVAL).vision;
    cfg.image_size = 224;
    cfg.depth = 1;
    param_registry *r = registry_new();
    rng_generator g = {0, 0};
    nn_builder b = {r, &g, PETAL_F32, true};
    vit_model vit;
    vit_init(&vit, &b, "v", &cfg);
    hashed_params(r, "v.blocks.0.");
    tensor *x = tensor_set_requires_grad(hashed_tensor("vit.x", SHAPE(1, 197, 768), 2.0), true);
    const nn_ctx eval = NN_EVAL;
    tensor *y = vit_block_forward(&vit.blocks[0], x, NULL, 0, &eval);
    ck_assert(fixture_check(&f, "outputs/vit_block", y, TOL));
    autograd_backward(y, hashed_tensor("vit.seed", SHAPE(1, 197, 768), 1.0), false);
    ck_assert(fixture_check(&f, "grads/vit_x", x->grad, 1e-4));
    vit_free(&vit);
    registry_free(r);
    fixture_close(&f);
    scope_end(mark);
}
END_TEST

START_TEST(test_bert_layers) {
    int mark = scope_begin();
    fixture f;
    ck_assert(fixture_open(&f, "blip/base_layers.h5"));
    bert_config cfg = blip_config_base(BLIP_RETRIEVAL).text;
    cfg.layers = 1;
    const nn_ctx eval = NN_EVAL;
    tensor *image = hashed_tensor("bert.image", SHAPE(2, 197, 768), 2.0);
    float mask_values[2 * 35];
    for (int i = 0; i < 70; i++) mask_values[i] = i < 35 || i - 35 < 20;
    tensor *mask = tensor_from_data(PETAL_F32, SHAPE(2, 35), mask_values);
    tensor *cross_mask = bert_extended_mask(tensor_ones(PETAL_F32, SHAPE(2, 197)));
    static const char *const kinds[] = {"text", "multimodal", "decoder"};
    for (int k = 0; k < 3; k++) {
        param_registry *r = registry_new();
        rng_generator g = {0, 0};
        nn_builder b = {r, &g, PETAL_F32, true};
        bert_model m;
        bert_init(&m, &b, "t", NULL, &cfg, MODALITY_TEXT);
        hashed_params(r, "t.encoder.layer.0.");
        tensor *h = tensor_set_requires_grad(hashed_tensor("bert.h", SHAPE(2, 35, 768), 2.0), true);
        tensor *self_mask = k == 2 ? bert_causal_mask(mask, 35) : bert_extended_mask(mask);
        tensor *y = bert_layer_forward(&m.layers[0], &cfg, h, self_mask, k == 0 ? NULL : image,
                                       cross_mask, NULL, NULL, 0, &eval);
        char name[64];
        snprintf(name, sizeof name, "outputs/bert_%s", kinds[k]);
        ck_assert_msg(fixture_check(&f, name, y, TOL), "%s", name);
        autograd_backward(y, hashed_tensor("bert.seed", SHAPE(2, 35, 768), 1.0), false);
        snprintf(name, sizeof name, "grads/bert_%s_h", kinds[k]);
        ck_assert_msg(fixture_check(&f, name, h->grad, 1e-4), "%s", name);
        bert_free(&m);
        registry_free(r);
    }
    fixture_close(&f);
    scope_end(mark);
}
END_TEST

// Parameters of a model, momentum copies and buffers left out.
static int64_t own_params(const param_registry *r) {
    int64_t n = 0;
    for (int i = 0; i < r->n; i++)
        if (!r->items[i].buffer && !strstr(r->items[i].name, "_m."))
            n += tensor_numel(r->items[i].value);
    return n;
}

START_TEST(test_base_parameter_counts) {
    fixture f;
    ck_assert(fixture_open(&f, "blip/base_layers.h5"));
    static const struct {
        blip_task task;
        const char *attr;
    } tasks[] = {{BLIP_RETRIEVAL, "params_retrieval"},
                 {BLIP_CAPTION, "params_caption"},
                 {BLIP_VQA, "params_vqa"}};
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++) {
        blip_config cfg = blip_config_base(tasks[i].task);
        cfg.queue_size = 16;
        blip_model *m = blip_new_for_loading(&cfg, PETAL_F32);
        ck_assert_int_eq(own_params(m->registry), fixture_attr(&f, tasks[i].attr));
        if (i == 0) { // docs/reference.md: the ViT-B/16 at 384 px has 86,090,496 parameters
            int64_t vit = 0;
            for (int k = 0; k < m->registry->n; k++)
                if (strncmp(m->registry->items[k].name, "visual_encoder.", 15) == 0)
                    vit += tensor_numel(m->registry->items[k].value);
            ck_assert_int_eq(vit, 86090496);
        }
        blip_free(m);
    }
    fixture_close(&f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("blip_base_layers");
    TCase *tc = tcase_with_timeout("parity", 120);
    tcase_add_test(tc, test_vit_block);
    tcase_add_test(tc, test_bert_layers);
    tcase_add_test(tc, test_base_parameter_counts);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
