// petal grads and petal diff end to end on a tiny synthetic set and the synthetic pretraining
// config: the same batch passes, another seed's batch or another method fails naming what changed,
// and diff tells identical files from different ones.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/tools/cli_run.h"

// The shipped synthetic pretraining config (a small BLIP trained from scratch), on 16 images.
static const char *const config_path = PETAL_TEST_DATA "/../../configs/synth_pretrain.yaml";
static char data_root[300];
static const char *recorded;

static void setup(void) {
    test_dir_make();
    const char *data = test_dir_path("synth");
    free(run_ok(ARGS("data", "synth", data, "--train-images", "16", "--val-images", "4",
                     "--test-images", "4", "--image-size", "32")));
    snprintf(data_root, sizeof data_root, "data_root=%s", data);
    recorded = test_dir_path("grads.h5");
    char *out = run_ok(ARGS("grads", "record", "--config", config_path, "--set", data_root,
                            "--batch", "4", recorded));
    ck_assert_msg(strstr(out, "154 trainable gradients"), "%s", out);
    free(out);
}

// Runs `petal grads compare` with the extra options and checks the exit status.
static run_result compare(const char *opt, const char *value, int status) {
    run_result r = run_petal(ARGS("grads", "compare", "--config", config_path, "--set", data_root,
                                  "--batch", "4", opt, value, recorded));
    ck_assert_msg(r.status == status, "exit %d, expected %d\n%s%s", r.status, status, r.out, r.err);
    return r;
}

START_TEST(test_the_same_batch_passes) {
    run_result r = compare("--atol", "0", 0);
    ck_assert_msg(strstr(r.out, "all 155 tensors within rtol 0.0001, atol 0"), "%s", r.out);
    run_result_free(&r);
}
END_TEST

START_TEST(test_another_batch_or_method_fails_naming_it) {
    run_result r = compare("--seed", "4", 1);
    ck_assert_msg(strstr(r.out, "input    recorded seed 0, samples"), "%s", r.out);
    ck_assert_msg(strstr(r.out, "changed  loss: 1 elements, worst at [0]"), "%s", r.out);
    ck_assert_msg(strstr(r.err, "tensors differ beyond rtol 0.0001, atol 1e-06"), "%s", r.err);
    run_result_free(&r);
    r = compare("--set", "petl.methods=lora", 1);
    ck_assert_msg(strstr(r.out, "method   recorded full, now lora"), "%s", r.out);
    ck_assert_msg(strstr(r.out, "missing  visual_encoder.blocks.0.attn.qkv.lora_A.weight"), "%s",
                  r.out);
    run_result_free(&r);
    r = compare("--rtol", "-1", 2);
    ck_assert_msg(strstr(r.err, "bad option '--rtol' with value -1"), "%s", r.err);
    run_result_free(&r);
}
END_TEST

START_TEST(test_diff_tells_identical_from_different) {
    const char *other = test_dir_path("other.h5");
    free(run_ok(ARGS("grads", "record", "--config", config_path, "--set", data_root, "--batch", "4",
                     "--set", "petl.methods=lora", other)));
    run_result r = run_petal(ARGS("diff", recorded, recorded));
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(strstr(r.out, "155 tensors in both, 0 differ; 0 only in"), "%s", r.out);
    run_result_free(&r);
    r = run_petal(ARGS("diff", recorded, other));
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.out, "grad.visual_encoder.blocks.0.attn.qkv.lora_A.weight: only in"),
                  "%s", r.out);
    ck_assert_msg(strstr(r.out, "grad.visual_encoder.pos_embed: only in"), "%s", r.out);
    run_result_free(&r);
    free(run_ok(ARGS("grads", "record", "--config", config_path, "--set", data_root, "--batch", "4",
                     "--seed", "4", other)));
    r = run_petal(ARGS("diff", recorded, other));
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.out, "loss: f64 [1], 1 of 1 elements differ, max abs"), "%s", r.out);
    ck_assert_msg(strstr(r.out, "155 tensors in both, 155 differ; 0 only in"), "%s", r.out);
    run_result_free(&r);
    r = run_petal(ARGS("diff", recorded, test_dir_path("absent.h5")));
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "absent.h5"), "%s", r.err);
    run_result_free(&r);
}
END_TEST

int main(void) {
    Suite *s = suite_create("grads_cli");
    TCase *tc = tcase_with_timeout("grads_cli", 30);
    tcase_add_checked_fixture(tc, setup, test_dir_remove);
    tcase_add_test(tc, test_the_same_batch_passes);
    tcase_add_test(tc, test_another_batch_or_method_fails_naming_it);
    tcase_add_test(tc, test_diff_tells_identical_from_different);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
