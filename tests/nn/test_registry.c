// nn/registry: names, glob patterns, freezing, counts.
#include "nn/registry.h"
#include "petal.h"
#include "tests/test_util.h"

START_TEST(test_glob_patterns) {
    ck_assert(registry_match("visual_encoder.blocks.*.attn.qkv.weight",
                             "visual_encoder.blocks.11.attn.qkv.weight"));
    ck_assert(!registry_match("visual_encoder.blocks.*.attn.qkv.weight",
                              "visual_encoder.blocks.11.attn.proj.weight"));
    ck_assert(registry_match("*", "anything.at.all"));
    ck_assert(registry_match("*CP_*", "text_encoder.encoder.layer.0.CP_U.weight"));
    ck_assert(registry_match("text_encoder.*.crossattention.*",
                             "text_encoder.encoder.layer.3.crossattention.self.key.bias"));
    ck_assert(registry_match("blocks.?.norm1.*", "blocks.7.norm1.bias"));
    ck_assert(!registry_match("blocks.?.norm1.*", "blocks.10.norm1.bias"));
    ck_assert(registry_match("a*b*c", "aXXbYYbZc"));
    ck_assert(!registry_match("a*b*c", "aXXbYYbZ"));
}
END_TEST

START_TEST(test_freeze_and_count) {
    param_registry *r = registry_new();
    registry_add(r, "visual_encoder.blocks.0.attn.qkv.weight", tensor_zeros(PETAL_F32, SHAPE(6, 2)),
                 MODALITY_VISION, true);
    registry_add(r, "visual_encoder.blocks.0.attn.qkv.bias", tensor_zeros(PETAL_F32, SHAPE(6)),
                 MODALITY_VISION, false);
    registry_add(r, "itm_head.weight", tensor_zeros(PETAL_F32, SHAPE(2, 2)), MODALITY_NONE, true);
    ck_assert_int_eq((int)registry_count(r, false), 22);
    ck_assert_int_eq((int)registry_count(r, true), 0);
    ck_assert_int_eq(registry_set_trainable(r, "*.qkv.*", true), 2);
    ck_assert_int_eq((int)registry_count(r, true), 18);
    ck_assert(registry_get(r, "visual_encoder.blocks.0.attn.qkv.bias")->requires_grad);
    tensor *train[4];
    ck_assert_int_eq(registry_trainable(r, train, 4), 2);
    registry_freeze_all(r);
    ck_assert(!registry_get(r, "itm_head.weight")->requires_grad);
    ck_assert_ptr_null(registry_find(r, "missing"));
    registry_free(r);
    ck_assert_uint_eq(memory_get_stats(DEVICE_CPU).current, 0);
}
END_TEST

static void duplicate_name(void) {
    param_registry *r = registry_new();
    registry_add(r, "w", tensor_zeros(PETAL_F32, SHAPE(1)), MODALITY_NONE, true);
    registry_add(r, "w", tensor_zeros(PETAL_F32, SHAPE(1)), MODALITY_NONE, true);
}

static void missing_name(void) {
    registry_get(registry_new(), "text_encoder.embeddings.word_embeddings.weight");
}

START_TEST(test_errors) {
    ck_assert(aborts_with(duplicate_name, "registry_add: 'w' is already registered"));
    ck_assert(aborts_with(missing_name,
                          "no parameter named 'text_encoder.embeddings.word_embeddings.weight'"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("nn_registry");
    TCase *tc = tcase_with_timeout("registry", 10);
    tcase_add_test(tc, test_glob_patterns);
    tcase_add_test(tc, test_freeze_and_count);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
