// VeRA, VCRA, QASN, MCAM and adapters: closed-form counts on BLIP-base, zero-initialised methods
// leaving the tiny model bit-for-bit unchanged, merge / unmerge, QASN's side state and filter,
// MCAM's value, f64 gradchecks (shared factors receiving gradient from every layer, MCAM through
// the retrieval losses in training) and compositions of methods.
#include <math.h>
#include <string.h>

#include "ops/ops.h"
#include "petl/petl.h"
#include "tensor/scope.h"
#include "tests/petl/petl_util.h"
#include "tests/test_util.h"

static const int64_t D = 768; // BLIP-base width; 12 ViT blocks, 12 BERT layers

static int64_t numel_of(const blip_model *m, const char *name) {
    return tensor_numel(registry_get(m->registry, name));
}

static bool is_trainable(const blip_model *m, const char *name) {
    return registry_find(m->registry, name)->trainable;
}

static petl_config with_activation(petl_activation act) {
    petl_config c = petl_config_unitrans(3);
    c.qasn.activation = act;
    return c;
}

static petl_config only_qasn(petl_activation act) {
    petl_config c = petl_config_none();
    c.qasn = with_activation(act).qasn;
    return c;
}

// ---- counts on BLIP-base ----

// peft's VeRA on the default targets (ViT qkv and proj; BERT self- and cross-attention q, k, v):
// r + out per target, vera_A (r, 768) and vera_B (2304, r) frozen and not counted.
START_TEST(test_vera_counts) {
    const int64_t r = 256;
    blip_model *m;
    petl_handle *h = attach_base(BLIP_RETRIEVAL, petl_config_vera(r), &m);
    ck_assert_int_eq(petl_count(h), 12 * ((r + 3 * D) + (r + D)) + 12 * 6 * (r + D));
    ck_assert_int_eq(numel_of(m, "vera_A"), r * D);
    ck_assert_int_eq(numel_of(m, "vera_B"), 3 * D * r);
    ck_assert(!is_trainable(m, "vera_A") && !is_trainable(m, "vera_B"));
    ck_assert_int_eq(numel_of(m, "visual_encoder.blocks.0.attn.qkv.vera_lambda_b"), 3 * D);
    ck_assert(
        is_trainable(m, "text_encoder.encoder.layer.11.crossattention.self.key.vera_lambda_d"));
    blip_free(m);
}
END_TEST

// VCRA: N_tuned (d + r) + 1, N_tuned = 2 pairs (q, kv) per attention layer: 12 ViT + 12 self +
// 12 cross = 72 on retrieval; VQA adds the decoder's 24 layers (120). A and B are not counted.
START_TEST(test_vcra_counts) {
    const int64_t r = 16;
    blip_model *m;
    petl_config cfg = petl_config_none();
    cfg.vcra = petl_config_unitrans(r).vcra;
    petl_handle *h = attach_base(BLIP_RETRIEVAL, cfg, &m);
    ck_assert_int_eq(petl_count(h), 72 * (D + r) + 1);
    ck_assert_int_eq(petl_count_group(h, PETL_GROUP_SHARED), 1);
    ck_assert_int_eq(petl_count_group(h, PETL_GROUP_VISION), 24 * (D + r));
    ck_assert_int_eq(petl_count_group(h, PETL_GROUP_TEXT), 24 * (D + r));
    ck_assert_int_eq(petl_count_group(h, PETL_GROUP_MULTIMODAL), 24 * (D + r));
    ck_assert(!is_trainable(m, "vcra_A") && numel_of(m, "vcra_B") == D * r);
    blip_free(m);
    h = attach_base(BLIP_VQA, cfg, &m);
    ck_assert_int_eq(petl_count(h), 120 * (D + r) + 1);
    ck_assert_int_eq(petl_count_group(h, PETL_GROUP_DECODER), 48 * (D + r));
    ck_assert(registry_find(m->registry, "vcra_decoder_A") != NULL);
    blip_free(m);
}
END_TEST

// QASN: r + 3 d per fusion layer; UniTrans (VCRA + QASN + MCAM) adds nothing for MCAM.
START_TEST(test_qasn_and_unitrans_counts) {
    const int64_t r = 16;
    blip_model *m;
    petl_config cfg = petl_config_none();
    cfg.qasn = petl_config_unitrans(r).qasn;
    petl_handle *h = attach_base(BLIP_RETRIEVAL, cfg, &m);
    ck_assert_int_eq(petl_count(h), 12 * (r + 3 * D));
    ck_assert_int_eq(petl_count_group(h, PETL_GROUP_MULTIMODAL), 12 * (r + 3 * D));
    blip_free(m);
    h = attach_base(BLIP_RETRIEVAL, petl_config_unitrans(r), &m);
    ck_assert_int_eq(petl_count(h), 72 * (D + r) + 1 + 12 * (r + 3 * D));
    ck_assert_ptr_nonnull(m->itc_extra);
    blip_free(m);
}
END_TEST

// UniAdapter: 12 adapters of 4 d r + r + 7 d = 3073 r + 5376 each: 18,945,024 at r = 512 and
// 4,784,640 at r = 128 (the papers quote 18.8M and 4.6M; docs/petl.md compares).
START_TEST(test_adapter_counts) {
    static const struct { int64_t rank, count; } cases[] = {{512, 18945024}, {128, 4784640}};
    for (int i = 0; i < 2; i++) {
        int64_t r = cases[i].rank;
        blip_model *m;
        petl_handle *h = attach_base(BLIP_RETRIEVAL, petl_config_adapter(r), &m);
        ck_assert_int_eq(petl_count(h), 12 * (3073 * r + 5376));
        ck_assert_int_eq(petl_count(h), cases[i].count);
        ck_assert_int_eq(petl_count_group(h, PETL_GROUP_SHARED), 12 * (2 * D + D * r + r));
        ck_assert_int_eq(petl_count_group(h, PETL_GROUP_VISION), 12 * (r * D + D));
        ck_assert_int_eq(petl_count_group(h, PETL_GROUP_TEXT), 12 * (r * D + D));
        ck_assert_int_eq(petl_count_group(h, PETL_GROUP_MULTIMODAL), 12 * (r * D + D + 2 * D));
        // vision_proj, text_proj and itm_head train too, as in the released code
        ck_assert_int_eq(petl_count_group(h, PETL_GROUP_HEADS), 2 * (D * 256 + 256) + 2 * D + 2);
        blip_free(m);
    }
}
END_TEST

START_TEST(test_parse_and_errors) {
    petl_config c;
    ck_assert_int_eq(petl_config_parse("vcra+qasn+mcam", PETL_PAPER, 8, &c), PETAL_OK);
    petl_config u = petl_config_unitrans(8);
    ck_assert(c.vcra.enabled && c.qasn.enabled && c.mcam.enabled && c.vcra.rank == 8);
    ck_assert(c.qasn.seed == u.qasn.seed && c.mcam.tau == u.mcam.tau);
    ck_assert_int_eq(petl_config_parse("lora+adapter", PETL_PAPER, 4, &c), PETAL_OK);
    ck_assert(c.lora.enabled && c.adapter.enabled && c.adapter.scale == 0.1);
    int mark = scope_begin();
    tiny t = tiny_new(PETAL_F32);
    petl_config bad = petl_config_vera(2);
    bad.vera.targets = "*.no_such_layer";
    ck_assert_ptr_null(petl_attach(t.m, &bad));
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "vera: no Linear layer matches"));
    blip_free(t.m);
    blip_config cap = blip_config_tiny(BLIP_CAPTION);
    blip_model *m = blip_new_for_loading(&cap, PETAL_F32);
    petl_config qasn = only_qasn(PETL_ACT_GELU);
    ck_assert_ptr_null(petl_attach(m, &qasn));
    ck_assert_ptr_nonnull(
        strstr(petal_error_message(), "qasn: rank 3 (must be >= 1) on a caption"));
    blip_free(m);
    t = tiny_new(PETAL_F32);
    petl_config mcam = petl_config_none();
    mcam.mcam = (mcam_options){true, 0.0, 1.0};
    ck_assert_ptr_null(petl_attach(t.m, &mcam));
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "mcam: tau 0 must be > 0"));
    blip_free(t.m);
    scope_end(mark);
}
END_TEST

// ---- VeRA's initialisation: peft's, from the seed ----

START_TEST(test_vera_init) {
    int mark = scope_begin();
    tiny t = tiny_new(PETAL_F64);
    petl_config cfg = petl_config_vera(4);
    cfg.vera.seed = 7;
    petl_handle *h = petl_attach(t.m, &cfg);
    ck_assert_ptr_nonnull(h);
    tensor *a = registry_get(t.m->registry, "vera_A"), *b = registry_get(t.m->registry, "vera_B");
    ck_assert(a->shape[0] == 4 && a->shape[1] == 32 && b->shape[0] == 96 && b->shape[1] == 4);
    // A then B, kaiming-uniform with gain sqrt 2, from a generator seeded with vera.seed
    rng_generator g = {7, 0};
    tensor *want_a = tensor_empty_like(a), *want_b = tensor_empty_like(b);
    tensor_uniform_(want_a, -sqrt(6.0 / 32), sqrt(6.0 / 32), &g);
    tensor_uniform_(want_b, -sqrt(6.0 / 4), sqrt(6.0 / 4), &g);
    ck_assert(tensors_close("vera_A", a, want_a, 0, 1e-14));
    ck_assert(tensors_close("vera_B", b, want_b, 0, 1e-14));
    tensor *ld = registry_get(t.m->registry, "text_encoder.encoder.layer.1.attention.self.query"
                                             ".vera_lambda_d");
    ck_assert(tensor_close("lambda_d", ld, (double[]){0.1, 0.1, 0.1, 0.1}, 0, 0));
    blip_free(t.m);
    scope_end(mark);
}
END_TEST

// ---- step 0, merging ----

START_TEST(test_zero_init_leaves_outputs_unchanged) {
    petl_config configs[] = {petl_config_vera(4),
                             petl_config_adapter(4),
                             with_activation(PETL_ACT_GELU),
                             with_activation(PETL_ACT_RELU),
                             with_activation(PETL_ACT_SIGMOID),
                             with_activation(PETL_ACT_TANH),
                             petl_config_none()};
    configs[6].lora = petl_config_lora(2).lora; // lora + adapter
    configs[6].adapter = petl_config_adapter(3).adapter;
    check_unchanged_at_step0(configs, (int)(sizeof configs / sizeof configs[0]));
}
END_TEST

START_TEST(test_merge_and_unmerge) {
    check_merge(petl_config_vera(4), "*.vera_lambda_b", "vera");
    petl_config vcra = petl_config_none();
    vcra.vcra = petl_config_unitrans(4).vcra;
    check_merge(vcra, "*.vcra_lambda_b_*", "vcra");
}
END_TEST

// ---- QASN: the filter and the side state ----

// One fusion layer with and without the hooks, with Lambda_b = 0 (h = 0) and beta random: the
// difference is f(0) = act(beta) - act(0), which sigmoid shifts by -1/2.
START_TEST(test_qasn_filter_at_zero_state) {
    static const struct {
        petl_activation act;
        tensor *(*fn)(tensor *);
        double offset;
    } cases[] = {{PETL_ACT_GELU, tensor_gelu, 0}, {PETL_ACT_SIGMOID, tensor_sigmoid, -0.5}};
    for (int i = 0; i < 2; i++) {
        int mark = scope_begin();
        tiny t = tiny_new(PETAL_F64);
        petl_config cfg = only_qasn(cases[i].act);
        ck_assert(petl_attach(t.m, &cfg));
        randomise(t.m, "*.qasn_beta");
        const nn_ctx eval = NN_EVAL;
        tensor *x = tensor_empty(PETAL_F64, SHAPE(2, 6, 32)), *states = tensor_empty_like(x);
        tensor_normal_(x, 0, 1, NULL);
        tensor_normal_(states, 0, 1, NULL);
        bert_model *bert = &t.m->text;
        tensor *plain = bert_layer_forward(&bert->layers[0], &bert->cfg, x, NULL, states, NULL,
                                           NULL, NULL, 0, &eval);
        tensor *hooked = bert_layer_forward(&bert->layers[0], &bert->cfg, x, NULL, states, NULL,
                                            NULL, &bert->hooks, 0, &eval);
        tensor *beta = registry_get(t.m->registry, "text_encoder.encoder.layer.0.qasn_beta");
        tensor *f = tensor_add_scalar(cases[i].fn(beta), cases[i].offset);
        tensor *want = tensor_add(plain, f);
        ck_assert(tensors_close("layer output", hooked, want, 1e-12, 1e-12));
        blip_free(t.m);
        scope_end(mark);
    }
}
END_TEST

// Passes of different batch shapes (ITM positives, then negatives) in any order give the same
// results as alone: the state is reset at layer 0.
START_TEST(test_qasn_passes_are_independent) {
    int mark = scope_begin();
    tiny t = tiny_new(PETAL_F64);
    petl_config cfg = only_qasn(PETL_ACT_TANH);
    ck_assert(petl_attach(t.m, &cfg));
    randomise(t.m, "*.qasn_lambda_b");
    randomise(t.m, "*.qasn_beta");
    tensor *first = tiny_outputs(&t);
    const nn_ctx eval = NN_EVAL;
    tensor *embeds = blip_image_embeds(t.m, t.images, &eval);
    tensor *three = tensor_concat((tensor *[]){embeds, embeds, embeds}, 3, 0);
    tensor *ids3 = tensor_concat((tensor *[]){t.ids, t.ids, t.ids}, 3, 0);
    tensor *mask3 = tensor_concat((tensor *[]){t.mask, t.mask, t.mask}, 3, 0);
    tensor *h3 = blip_multimodal(t.m, ids3, mask3, three, &eval); // another batch shape between
    tensor *again = tiny_outputs(&t);
    ck_assert(tensors_close("outputs after a pass of 6", again, first, 0, 0));
    tensor *row = tensor_select(h3, 0, 4); // the 6-row pass agrees with the 2-row one
    tensor *two = blip_multimodal(t.m, t.ids, t.mask, embeds, &eval);
    ck_assert(tensors_close("row 4 of 6", row, tensor_select(two, 0, 0), 1e-12, 1e-12));
    blip_free(t.m);
    scope_end(mark);
}
END_TEST

static void layer_one_without_layer_zero(void) {
    tiny t = tiny_new(PETAL_F32);
    petl_config cfg = only_qasn(PETL_ACT_GELU);
    petl_attach(t.m, &cfg);
    const nn_ctx eval = NN_EVAL;
    tensor *x = tensor_zeros(PETAL_F32, SHAPE(2, 6, 32));
    bert_model *bert = &t.m->text;
    bert_layer_forward(&bert->layers[1], &bert->cfg, x, NULL, x, NULL, NULL, &bert->hooks, 1,
                       &eval);
}

START_TEST(test_qasn_state_is_keyed) {
    ck_assert(aborts_with(layer_one_without_layer_zero,
                          "qasn: fusion layer 1 runs without the side state of layer 0"));
}
END_TEST

// ---- MCAM ----

// weight * sum_i JS(softmax(S_v[i] / tau) || softmax(S_t[i] / tau)) in naive f64 loops.
static double mcam_reference(const double *img, const double *txt, int b, int e, double tau,
                             double weight) {
    double sv[16][16], total = 0;
    for (int i = 0; i < b; i++)
        for (int j = 0; j < b; j++) {
            double dot = 0, ni = 0, nj = 0;
            for (int k = 0; k < e; k++) {
                dot += img[i * e + k] * txt[j * e + k];
                ni += img[i * e + k] * img[i * e + k];
                nj += txt[j * e + k] * txt[j * e + k];
            }
            sv[i][j] = dot / sqrt(ni * nj) / tau;
        }
    for (int i = 0; i < b; i++) {
        double p[16], q[16], zp = 0, zq = 0;
        for (int j = 0; j < b; j++) {
            p[j] = exp(sv[i][j]); // row i of S_v
            q[j] = exp(sv[j][i]); // row i of S_t = S_v^T
            zp += p[j];
            zq += q[j];
        }
        for (int j = 0; j < b; j++) {
            double pj = p[j] / zp, qj = q[j] / zq, mj = (pj + qj) / 2;
            total += 0.5 * (pj * log(pj / mj) + qj * log(qj / mj));
        }
    }
    return weight * total;
}

START_TEST(test_mcam_value) {
    int mark = scope_begin();
    tiny t = tiny_new(PETAL_F64);
    petl_config cfg = petl_config_none();
    cfg.mcam = (mcam_options){true, 0.2, 0.5};
    petl_handle *h = petl_attach(t.m, &cfg);
    tensor *img = tensor_empty(PETAL_F64, SHAPE(5, 7)), *txt = tensor_empty_like(img);
    tensor_normal_(img, 0, 1, NULL);
    tensor_normal_(txt, 0, 1, NULL);
    double want = mcam_reference(tensor_data_f64(img), tensor_data_f64(txt), 5, 7, 0.2, 0.5);
    ck_assert(want > 1e-3);
    ck_assert(tensor_close("mcam", petl_extra_loss(h, img, txt), &want, 1e-12, 1e-10));
    // symmetric similarities (texts = images) rank alike both ways: no loss
    ck_assert_double_eq_tol(tensor_item(petl_extra_loss(h, img, img)), 0.0, 1e-12);
    blip_free(t.m);
    scope_end(mark);
}
END_TEST

// blip_retrieval_losses reports MCAM as itc_extra and adds it to ita.
START_TEST(test_mcam_joins_retrieval_losses) {
    int mark = scope_begin();
    tiny t = tiny_new(PETAL_F64);
    tensor *extra;
    tensor *plain = tiny_losses(&t, &extra);
    ck_assert_ptr_null(extra);
    petl_config cfg = petl_config_none();
    cfg.mcam = petl_config_unitrans(1).mcam;
    ck_assert(petl_attach(t.m, &cfg));
    tensor *with = tiny_losses(&t, &extra);
    ck_assert_ptr_nonnull(extra);
    ck_assert(tensor_item(extra) > 0);
    ck_assert_double_eq_tol(tensor_item(with), tensor_item(plain) + tensor_item(extra), 1e-12);
    blip_free(t.m);
    scope_end(mark);
}
END_TEST

// ---- gradchecks on the tiny model (f64) ----

START_TEST(test_gradcheck_vera) {
    petl_config cfg = petl_config_vera(3);
    cfg.vera.targets = "*.attn.qkv,*.crossattention.self.value";
    cfg.extra_trainable = "";
    gradcheck_config(cfg, "*.vera_lambda_b", NULL, false, "vera");
}
END_TEST

// Every VCRA tensor; vcra_scale gathers gradient from all 18 projections of 6 attention layers.
START_TEST(test_gradcheck_vcra) {
    petl_config cfg = petl_config_none();
    cfg.vcra = petl_config_unitrans(2).vcra;
    gradcheck_config(cfg, "*.vcra_lambda_b_*", NULL, false, "vcra");
}
END_TEST

START_TEST(test_gradcheck_qasn_sigmoid) {
    gradcheck_config(only_qasn(PETL_ACT_SIGMOID), "*.qasn_lambda_b", NULL, false, "qasn (sigmoid)");
}
END_TEST

// Adapters (rank 2) with LoRA on the ViT's qkv: adapter 1 (all of it) takes gradient from ViT
// block 1 and BERT layer 1 in text and multimodal passes; LoRA checked on block 0.
START_TEST(test_gradcheck_lora_adapter) {
    petl_config cfg = petl_config_adapter(2);
    cfg.lora = petl_config_lora(2).lora;
    cfg.lora.targets = "*.attn.qkv";
    cfg.extra_trainable = "";
    gradcheck_config(cfg, "adapters.*up_proj.weight,*.lora_B.weight",
                     "adapters.1.*,visual_encoder.blocks.0.attn.qkv.lora_*", false,
                     "lora + adapter");
}
END_TEST

// UniTrans (VCRA + QASN + MCAM) through the retrieval losses in training: ITC (with MCAM), then
// ITM positives and negatives, whose fusion passes each rebuild QASN's state. Checked: the shared
// scale, one layer's VCRA vectors, QASN's vectors of the last layer and the projection biases
// (MCAM's gradient reaches both towers through them).
START_TEST(test_gradcheck_unitrans_losses) {
    petl_config cfg = petl_config_unitrans(2);
    cfg.extra_trainable = "vision_proj.bias,text_proj.bias";
    gradcheck_config(cfg, "*.vcra_lambda_b_*,*.qasn_lambda_b",
                     "vcra_scale,text_encoder.encoder.layer.1.crossattention.self.vcra_lambda_*,"
                     "text_encoder.encoder.layer.1.qasn_*,*_proj.bias",
                     true, "unitrans: retrieval losses with MCAM");
}
END_TEST

// CP (paper) + MCAM, a combination neither paper ran, through the retrieval losses.
START_TEST(test_gradcheck_cp_mcam_losses) {
    petl_config cfg;
    ck_assert_int_eq(petl_config_parse("cp+mcam", PETL_PAPER, 2, &cfg), PETAL_OK);
    cfg.extra_trainable = "";
    gradcheck_config(cfg, "CP_V", "CP_P,CP_lambda.*", true, "cp + mcam: retrieval losses");
}
END_TEST

int main(void) {
    Suite *s = suite_create("petl_methods");
    TCase *counts = tcase_with_timeout("counts", 300);
    tcase_add_test(counts, test_vera_counts);
    tcase_add_test(counts, test_vcra_counts);
    tcase_add_test(counts, test_qasn_and_unitrans_counts);
    tcase_add_test(counts, test_adapter_counts);
    tcase_add_test(counts, test_parse_and_errors);
    suite_add_tcase(s, counts);
    TCase *tinyc = tcase_with_timeout("tiny", 300);
    tcase_add_test(tinyc, test_vera_init);
    tcase_add_test(tinyc, test_zero_init_leaves_outputs_unchanged);
    tcase_add_test(tinyc, test_merge_and_unmerge);
    tcase_add_test(tinyc, test_qasn_filter_at_zero_state);
    tcase_add_test(tinyc, test_qasn_passes_are_independent);
    tcase_add_test(tinyc, test_qasn_state_is_keyed);
    tcase_add_test(tinyc, test_mcam_value);
    tcase_add_test(tinyc, test_mcam_joins_retrieval_losses);
    suite_add_tcase(s, tinyc);
    TCase *grads = tcase_with_timeout("gradcheck", 600);
    tcase_add_test(grads, test_gradcheck_vera);
    tcase_add_test(grads, test_gradcheck_vcra);
    tcase_add_test(grads, test_gradcheck_qasn_sigmoid);
    tcase_add_test(grads, test_gradcheck_lora_adapter);
    tcase_add_test(grads, test_gradcheck_unitrans_losses);
    tcase_add_test(grads, test_gradcheck_cp_mcam_losses);
    suite_add_tcase(s, grads);
    return run_suite(s);
}
