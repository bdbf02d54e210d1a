// petal ablate end to end on a tiny synthetic set: a 2 x 2 grid over one loaded model writes one
// run folder per point, results.csv / results.md and plots; a point trained inside the grid
// writes the same metrics.jsonl, to the byte, as the same config trained alone (the model is
// restored and the method detached between runs); a finished grid is not trained again; axes that
// would change the shared model are refused.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/tools/cli_run.h"

static const char *const pretrain_text = "task: pretrain\n"
                                         "data_root: %s\n"
                                         "image_root: images\n"
                                         "ann_root: annotations\n"
                                         "vocab: vocab.txt\n"
                                         "image_size: 16\n"
                                         "text_length: 16\n"
                                         "arch: {patch: 8, vision_width: 32, vision_depth: 1, "
                                         "vision_heads: 2, vision_mlp: 64, text_hidden: 32, "
                                         "text_layers: 1, text_heads: 2, text_intermediate: 64, "
                                         "max_positions: 40, embed_dim: 16}\n"
                                         "petl: {methods: full}\n"
                                         "batch_size_train: 8\n"
                                         "queue_size: 16\n"
                                         "max_steps: 6\n"
                                         "k_test: 4\n"
                                         "threads: 1\n";

static const char *const retrieval_text = "task: retrieval\n"
                                          "data_root: %s\n"
                                          "image_root: images_shifted\n"
                                          "ann_root: annotations\n"
                                          "pretrained: %s/pre/last.h5\n"
                                          "image_size: 16\n"
                                          "text_length: 16\n"
                                          "petl: {methods: cp, rank: 2}\n"
                                          "batch_size_train: 8\n"
                                          "queue_size: 16\n"
                                          "init_lr: 1.0e-2\n"
                                          "max_steps: 4\n"
                                          "log_every: 1\n"
                                          "k_test: 4\n"
                                          "threads: 1\n";

static const char *config;

static const char *write_config(const char *name, const char *format) {
    char text[2048];
    snprintf(text, sizeof text, format, test_dir_path("synth"), test_dir_path(""));
    return test_dir_write(name, text);
}

static void setup(void) {
    test_dir_make();
    free(run_ok(ARGS("data", "synth", test_dir_path("synth"), "--train-images", "32",
                     "--val-images", "8", "--test-images", "8", "--image-size", "16")));
    const char *pre = write_config("pre.yaml", pretrain_text);
    free(run_ok(ARGS("train", pre, "--out", test_dir_path("pre"))));
    config = write_config("ret.yaml", retrieval_text);
}

static int count(const char *text, const char *what) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)); p++) n++;
    return n;
}

static char *read_in(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return slurp(path);
}

START_TEST(test_grid_writes_runs_results_and_plots) {
    const char *out = test_dir_path("grid");
    free(run_ok(ARGS("ablate", config, "--grid", "petl.rank=2,4", "--grid", "petl.methods=cp,lora",
                     "--out", out)));
    char *md = read_in(out, "results.md"), *csv = read_in(out, "results.csv");
    ck_assert_int_eq(count(md, "\n| "), 5); // the header and four points
    ck_assert_msg(strstr(md, "| 4 | lora |") && strstr(md, "r_mean"), "%s", md);
    ck_assert_msg(!strncmp(csv, "petl.rank,petl.methods,trainable,txt_r1_mean,txt_r1_std", 55),
                  "%s", csv);
    const char *pngs[] = {"plots/score_vs_params.png", "plots/score_vs_rank.png",
                          "plots/score_vs_methods.png"};
    for (size_t i = 0; i < 3; i++) {
        char path[1024];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", out, pngs[i]);
        ck_assert_msg(stat(path, &st) == 0 && st.st_size > 1000, "no plot %s", path);
    }
    // A point of the grid (run after others on the same model) equals the config trained alone.
    char *alone = run_ok(ARGS("train", config, "--set", "petl.rank=4", "--set", "petl.methods=cp",
                              "--out", test_dir_path("alone")));
    free(alone);
    char *want = read_in(test_dir_path("alone"), "metrics.jsonl");
    char *got = read_in(out, "rank=4,methods=cp/seed0/metrics.jsonl");
    ck_assert_msg(!strcmp(want, got), "alone:\n%s\nin the grid:\n%s", want, got);
    // Nothing is trained again when the grid is run a second time.
    char *again = run_ok(ARGS("ablate", config, "--grid", "petl.rank=2,4", "--grid",
                              "petl.methods=cp,lora", "--out", out));
    ck_assert_int_eq(count(again, "finished before, kept"), 4);
    free(again);
    free(want);
    free(got);
    free(md);
    free(csv);
}
END_TEST

START_TEST(test_model_keys_are_not_axes) {
    run_result r = run_petal(
        ARGS("ablate", config, "--grid", "image_size=16,32", "--out", test_dir_path("bad")));
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "--grid image_size") && strstr(r.err, "shares"), "%s", r.err);
    run_result_free(&r);
    r = run_petal(ARGS("ablate", config, "--grid", "petl.rank=", "--out", test_dir_path("bad")));
    ck_assert_int_eq(r.status, 2);
    run_result_free(&r);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ablate_cli");
    TCase *tc = tcase_with_timeout("ablate", 300);
    tcase_add_checked_fixture(tc, setup, test_dir_remove);
    tcase_add_test(tc, test_grid_writes_runs_results_and_plots);
    tcase_add_test(tc, test_model_keys_are_not_axes);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
