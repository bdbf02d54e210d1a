// petl/: parameter counts against the released code's and the closed forms, zero-initialised
// methods leaving the backbone bit-for-bit unchanged, merge / unmerge, and f64 gradchecks of the
// methods on a tiny BLIP (shared factors receiving gradient from every layer).
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "models/blip/retrieval.h"
#include "ops/ops.h"
#include "petl/petl.h"
#include "tensor/scope.h"
#include "tests/test_util.h"

static petl_handle *attach_base(blip_task task, petl_config cfg, blip_model **out) {
    blip_config bc = blip_config_base(task);
    bc.queue_size = 16;
    *out = blip_new_for_loading(&bc, PETAL_F32);
    petl_handle *h = petl_attach(*out, &cfg);
    ck_assert_msg(h != NULL, "%s", petal_error_message());
    return h;
}

// REFERENCE.md: Aurora's released code on BLIP-base retrieval (CP parameters only, GQT
// included): R=32 -> 125,696 (global 81,920 + ViT 4,608 + BERT 39,168), R=64 -> 411,136,
// R=128 -> 2,358,272; all trainable at R=32 (with vision_proj, itm_head) 324,098; VQA R=32 ->
// 164,864.
START_TEST(test_aurora_code_counts) {
    static const struct {
        blip_task task;
        int64_t rank, petl, trainable;
    } cases[] = {{BLIP_RETRIEVAL, 32, 125696, 324098},
                 {BLIP_RETRIEVAL, 64, 411136, -1},
                 {BLIP_RETRIEVAL, 128, 2358272, -1},
                 {BLIP_VQA, 32, 164864, -1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        blip_model *m;
        petl_handle *h =
            attach_base(cases[i].task, petl_config_aurora(PETL_CODE, cases[i].rank), &m);
        ck_assert_int_eq(petl_count(h), cases[i].petl);
        if (cases[i].trainable > 0) {
            ck_assert_int_eq(registry_count(m->registry, true), cases[i].trainable);
            ck_assert_int_eq(petl_count_group(h, PETL_GROUP_SHARED), 81920);
            ck_assert_int_eq(petl_count_group(h, PETL_GROUP_VISION), 4608);
            ck_assert_int_eq(petl_count_group(h, PETL_GROUP_TEXT) +
                                 petl_count_group(h, PETL_GROUP_MULTIMODAL),
                             39168);
        }
        blip_free(m);
    }
}
END_TEST

// Closed forms for the other configurations on BLIP-base retrieval (d = 768, 12 + 12 layers).
START_TEST(test_closed_forms) {
    const int64_t d = 768, r = 16;
    blip_model *m;
    // CP paper: U, V (d x R) + P (N x R, N = 12 ViT x 4 + 12 BERT x 8 attention matrices) +
    // lambda (R) for vision, text, multimodal.
    petl_handle *h = attach_base(BLIP_RETRIEVAL, petl_config_cp(PETL_PAPER, r), &m);
    ck_assert_int_eq(petl_count(h), 2 * d * r + (12 * 4 + 12 * 8) * r + 3 * r);
    blip_free(m);
    // LoRA on every attention projection: sum over targets of (in + out) r.
    h = attach_base(BLIP_RETRIEVAL, petl_config_lora(r), &m);
    int64_t vit = 12 * ((d + 3 * d) + (d + d)) * r;      // qkv, proj
    int64_t bert = 12 * 2 * (3 * (d + d) + (d + d)) * r; // self and cross: q, k, v, output
    ck_assert_int_eq(petl_count(h), vit + bert);
    blip_free(m);
    // GQT gate alone: one vector per multimodal layer.
    petl_config gate = petl_config_none();
    gate.gqt = GQT_GATE;
    h = attach_base(BLIP_RETRIEVAL, gate, &m);
    ck_assert_int_eq(petl_count(h), 12 * d);
    blip_free(m);
}
END_TEST

START_TEST(test_parse) {
    petl_config c;
    ck_assert_int_eq(petl_config_parse("cp+mcam", PETL_CODE, 8, &c), PETAL_OK);
    ck_assert(c.cp.enabled && c.mcam.enabled && !c.lora.enabled && c.cp.rank == 8);
    ck_assert_int_eq(petl_config_parse("aurora", PETL_PAPER, 4, &c), PETAL_OK);
    ck_assert(c.cp.core == CP_CORE_DIAGONAL && c.ice == ICE_SOFTMAX && c.gqt == GQT_GATE);
    ck_assert_int_eq(petl_config_parse("cp+prefix", PETL_CODE, 8, &c), PETAL_ERR_ARG);
    ck_assert(strstr(petal_error_message(), "method 'prefix'") != NULL);
    ck_assert_int_eq(petl_config_parse("lora", PETL_CODE, 0, &c), PETAL_ERR_ARG);
}
END_TEST

// ---- the tiny model: unchanged outputs at step 0, merge, gradchecks ----

typedef struct {
    blip_model *m;
    tensor *images, *ids, *mask;
} tiny;

// A tiny retrieval model (dropout off, no momentum) with random weights and inputs.
static tiny tiny_new(petal_dtype dtype) {
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

// ITM logits and ITC features of the tiny batch, concatenated into one tensor.
static tensor *tiny_outputs(const tiny *t) {
    const nn_ctx eval = NN_EVAL;
    tensor *embeds = blip_image_embeds(t->m, t->images, &eval);
    tensor *enc = blip_with_first_token(t->ids, t->m->cfg.tokens.enc);
    tensor *itm = blip_itm_logits(t->m, enc, t->mask, embeds, &eval);
    tensor *image_feat = blip_image_feat(t->m, embeds);
    tensor *text_feat = blip_text_feat(t->m, t->ids, t->mask, &eval);
    return tensor_concat((tensor *[]){itm, image_feat, text_feat}, 3, 1);
}

// Makes a zero-initialised factor random, so gradients reach every other parameter.
static void randomise(blip_model *m, const char *name) {
    tensor *v = registry_get(m->registry, name);
    tensor_normal_(v, 0, 0.3, &(rng_generator){11, 0});
}

START_TEST(test_zero_init_leaves_outputs_unchanged) {
    petl_config configs[] = {petl_config_cp(PETL_CODE, 4), petl_config_cp(PETL_PAPER, 4),
                             petl_config_lora(4), petl_config_none()};
    configs[3].gqt = GQT_GATE;
    configs[3].ice = ICE_SOFTMAX; // training only: no effect here
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        int mark = scope_begin();
        tiny t = tiny_new(PETAL_F32);
        tensor *before = tiny_outputs(&t);
        ck_assert(petl_attach(t.m, &configs[i]) != NULL);
        tensor *after = tiny_outputs(&t);
        ck_assert_msg(memcmp(tensor_data(before), tensor_data(after), tensor_nbytes(before)) == 0,
                      "config %zu changed the backbone's outputs at step 0", i);
        blip_free(t.m);
        scope_end(mark);
    }
}
END_TEST

START_TEST(test_merge_and_unmerge) {
    int mark = scope_begin();
    tiny t = tiny_new(PETAL_F32);
    petl_config cfg = petl_config_cp(PETL_CODE, 4);
    cfg.lora = petl_config_lora(3).lora;
    petl_handle *h = petl_attach(t.m, &cfg);
    randomise(t.m, "CP_V.weight");
    param_registry *r = t.m->registry;
    for (int i = 0; i < r->n; i++)
        if (strstr(r->items[i].name, "lora_B")) tensor_normal_(r->items[i].value, 0, 0.3, NULL);
    tensor *qkv = registry_get(r, "visual_encoder.blocks.1.attn.qkv.weight");
    tensor *w0 = tensor_clone_data(qkv);
    tensor *with_deltas = tiny_outputs(&t);
    petl_merge(h);
    tensor *change = tensor_abs(tensor_sub(qkv, w0));
    ck_assert_msg(tensor_item(tensor_max(tensor_reshape(change, SHAPE(-1)), 0, false)) > 1e-3,
                  "merging did not change the weight");
    tensor *merged = tiny_outputs(&t);
    ck_assert(tensors_close("merged outputs", merged, with_deltas, 1e-6, 1e-6));
    petl_unmerge(h);
    ck_assert(tensors_close("weight after unmerge", qkv, w0, 1e-6, 0));
    ck_assert(tensors_close("outputs after unmerge", tiny_outputs(&t), with_deltas, 1e-6, 1e-6));
    blip_free(t.m);
    scope_end(mark);
}
END_TEST

typedef struct {
    tiny *t;
    bool losses; // the retrieval losses in training mode, else ITM logits and ITC features
} check_ctx;

static tensor *model_fn(tensor **in, const void *vctx) {
    (void)in; // the parameters are read through the model
    const check_ctx *c = vctx;
    if (!c->losses) {
        // A fixed random projection to one number: one backward pass per perturbation instead of
        // one per output element, and every output still contributes.
        tensor *y = tiny_outputs(c->t);
        tensor *w = tensor_empty_like(y);
        tensor_normal_(w, 0, 1, &(rng_generator){5, 0});
        return tensor_reshape(tensor_sum_all(tensor_mul(y, w)), SHAPE(1));
    }
    const nn_ctx train = {true, NULL};
    static const int64_t neg_img[] = {1, 0}, neg_txt[] = {1, 0};
    retrieval_options o = {
        .alpha = 0.4, .neg_image_for_text = neg_img, .neg_text_for_image = neg_txt};
    tensor *image_ids = tensor_from_data(PETAL_I64, SHAPE(2), (int64_t[]){3, 4});
    retrieval_losses l =
        blip_retrieval_losses(c->t->m, c->t->images, c->t->ids, c->t->mask, image_ids, &o, &train);
    tensor *sum = tensor_add(l.ita, l.itm);
    return tensor_reshape(sum, SHAPE(1));
}

// gradcheck over every trainable tensor of the model.
static void check_trainable(tiny *t, bool losses, const char *what) {
    tensor *params[256];
    int n = registry_trainable(t->m->registry, params, 256);
    ck_assert(n > 0 && n <= 256);
    check_ctx c = {t, losses};
    gradcheck_options o = GRADCHECK_DEFAULTS;
    o.max_per_input = 16;
    gradcheck_result r = gradcheck(model_fn, &c, n, params, &o);
    char line[256];
    gradcheck_describe(&r, line, sizeof line);
    ck_assert_msg(r.passed, "%s: %s", what, line);
}

START_TEST(test_gradcheck_aurora_code) {
    int mark = scope_begin();
    tiny t = tiny_new(PETAL_F64);
    petl_config cfg = petl_config_aurora(PETL_CODE, 3);
    cfg.cp.dropout = 0;
    cfg.extra_trainable = "itm_head.*";
    ck_assert(petl_attach(t.m, &cfg) != NULL);
    randomise(t.m, "CP_V.weight");
    check_trainable(&t, false, "aurora (code): CP + GQT, ITM logits and features");
    blip_free(t.m);
    scope_end(mark);
}
END_TEST

START_TEST(test_gradcheck_aurora_paper) {
    int mark = scope_begin();
    tiny t = tiny_new(PETAL_F64);
    petl_config cfg = petl_config_aurora(PETL_PAPER, 3);
    cfg.extra_trainable = "";
    ck_assert(petl_attach(t.m, &cfg) != NULL);
    randomise(t.m, "CP_V");
    randomise(t.m, "text_encoder.encoder.layer.1.GQT_gate");
    check_trainable(&t, true, "aurora (paper): CP + GQT + ICE, retrieval losses in training");
    blip_free(t.m);
    scope_end(mark);
}
END_TEST

START_TEST(test_gradcheck_lora) {
    int mark = scope_begin();
    tiny t = tiny_new(PETAL_F64);
    petl_config cfg = petl_config_lora(2);
    cfg.lora.targets = "*.attn.qkv,*.crossattention.self.value";
    cfg.extra_trainable = "";
    ck_assert(petl_attach(t.m, &cfg) != NULL);
    param_registry *r = t.m->registry;
    for (int i = 0; i < r->n; i++)
        if (strstr(r->items[i].name, "lora_B")) tensor_normal_(r->items[i].value, 0, 0.3, NULL);
    check_trainable(&t, false, "lora");
    blip_free(t.m);
    scope_end(mark);
}
END_TEST

int main(void) {
    Suite *s = suite_create("petl");
    TCase *counts = tcase_with_timeout("counts", 120);
    tcase_add_test(counts, test_aurora_code_counts);
    tcase_add_test(counts, test_closed_forms);
    tcase_add_test(counts, test_parse);
    suite_add_tcase(s, counts);
    TCase *tinyc = tcase_with_timeout("tiny", 300);
    tcase_add_test(tinyc, test_zero_init_leaves_outputs_unchanged);
    tcase_add_test(tinyc, test_merge_and_unmerge);
    tcase_add_test(tinyc, test_gradcheck_aurora_code);
    tcase_add_test(tinyc, test_gradcheck_aurora_paper);
    tcase_add_test(tinyc, test_gradcheck_lora);
    suite_add_tcase(s, tinyc);
    return run_suite(s);
}
