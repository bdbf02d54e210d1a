// petl/: parameter counts against the released code's and the closed forms, zero-initialised
// methods leaving the backbone bit-for-bit unchanged, merge / unmerge, and f64 gradchecks of the
// methods on a tiny BLIP (shared factors receiving gradient from every layer).
#include <string.h>

#include "ops/ops.h"
#include "petl/petl.h"
#include "tensor/scope.h"
#include "tests/petl/petl_util.h"
#include "tests/test_util.h"

// docs/reference.md: Aurora's released code on BLIP-base retrieval (CP parameters only, GQT
// included): R=32 -> 125,696 (global 81,920 + ViT 4,608 + BERT 39,168, of which GQT 36,864), R=64
// -> 411,136, R=128 -> 2,358,272; all trainable at R=32 (with vision_proj, itm_head) 324,098; VQA
// R=32 -> 164,864.
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
            // BERT's 39,168: q/k/v coefficients 2,304 and GQT's vectors 36,864 (4 x 12 x 768).
            ck_assert_int_eq(petl_count_group(h, PETL_GROUP_TEXT) +
                                 petl_count_group(h, PETL_GROUP_MULTIMODAL),
                             2304);
            ck_assert_int_eq(petl_count_group(h, PETL_GROUP_GQT), 36864);
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

START_TEST(test_zero_init_leaves_outputs_unchanged) {
    petl_config configs[] = {petl_config_cp(PETL_CODE, 4), petl_config_cp(PETL_PAPER, 4),
                             petl_config_lora(4), petl_config_none()};
    configs[3].gqt = GQT_GATE;
    configs[3].ice = ICE_SOFTMAX; // training only: no effect here
    check_unchanged_at_step0(configs, 4);
}
END_TEST

START_TEST(test_merge_and_unmerge) {
    petl_config cfg = petl_config_cp(PETL_CODE, 4);
    cfg.lora = petl_config_lora(3).lora;
    check_merge(cfg, "CP_V.weight,*.lora_B.weight", "cp (code) + lora");
}
END_TEST

START_TEST(test_gradcheck_aurora_code) {
    petl_config cfg = petl_config_aurora(PETL_CODE, 3);
    cfg.cp.dropout = 0;
    cfg.extra_trainable = "itm_head.*";
    gradcheck_config(cfg, "CP_V.weight", NULL, false,
                     "aurora (code): CP + GQT, ITM logits and features");
}
END_TEST

START_TEST(test_gradcheck_aurora_paper) {
    petl_config cfg = petl_config_aurora(PETL_PAPER, 3);
    cfg.extra_trainable = "";
    gradcheck_config(cfg, "CP_V,text_encoder.encoder.layer.1.GQT_gate", NULL, true,
                     "aurora (paper): CP + GQT + ICE, retrieval losses in training");
}
END_TEST

START_TEST(test_gradcheck_lora) {
    petl_config cfg = petl_config_lora(2);
    cfg.lora.targets = "*.attn.qkv,*.crossattention.self.value";
    cfg.extra_trainable = "";
    gradcheck_config(cfg, "*.lora_B.weight", NULL, false, "lora");
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
