// petal train and petal eval end to end on a small synthetic data set: the run folder's files, a
// run killed with SIGKILL at several moments and resumed writes metrics.jsonl identical to the
// byte to an uninterrupted run's, a non-finite loss stops the run naming the step, and evaluation
// reads what training wrote; precision: bf16 trains close to f32.
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/tools/cli_run.h"

// A tiny BLIP pretrained from scratch on 64 images of 16 x 16 pixels.
static const char *const config_text =
    "task: pretrain\n"
    "data_root: %s\n"
    "image_root: images\n"
    "ann_root: annotations\n"
    "vocab: vocab.txt\n"
    "image_size: 16\n"
    "arch: {patch: 8, vision_width: 32, vision_depth: 2, vision_heads: 2, vision_mlp: 64,\n"
    "       text_hidden: 32, text_layers: 1, text_heads: 2, text_intermediate: 64,\n"
    "       max_positions: 40, embed_dim: 16}\n"
    "petl: {methods: full}\n"
    "batch_size_train: 8\n"
    "batch_size_test: 16\n"
    "init_lr: 1.0e-3\n"
    "lr_schedule: step_cosine\n"
    "warmup_steps: 3\n"
    "max_epoch: 10\n"
    "max_steps: 14\n"
    "queue_size: 16\n"
    "k_test: 4\n"
    "log_every: 1\n"
    "eval_every: 7\n"
    "save_every: 2\n"
    "threads: 1\n"
    "num_workers: 2\n"
    "seed: 3\n";

static const char *config_path;

static void setup(void) {
    test_dir_make();
    const char *data = test_dir_path("synth");
    free(run_ok(ARGS("data", "synth", data, "--train-images", "64", "--val-images", "16",
                     "--test-images", "16", "--image-size", "16")));
    config_path = test_dir_path("pretrain.yaml");
    FILE *f = fopen(config_path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, config_text, data);
    fclose(f);
}

static bool exists(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    return stat(path, &st) == 0 && st.st_size > 0;
}

static int count_lines(const char *text, const char *with) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, with)); p++) n++;
    return n;
}

START_TEST(test_train_writes_the_run_folder) {
    const char *out = test_dir_path("run");
    free(run_ok(ARGS("train", config_path, "--out", out)));
    const char *files[] = {"config.yaml", "metrics.jsonl", "timing.jsonl",
                           "log.txt",     "last.h5",       "best.h5",
                           "resume.h5",   "summary.json",  "events.out.tfevents.petal"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        ck_assert_msg(exists(out, files[i]), "the run folder has no %s", files[i]);
    char path[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    char *metrics = slurp(path);
    ck_assert_int_eq(count_lines(metrics, "\"loss_lm\""), 14);       // log_every 1
    ck_assert_int_eq(count_lines(metrics, "\"split\": \"val\""), 2); // steps 7 and 14
    ck_assert_int_eq(count_lines(metrics, "\"split\": \"test\""), 1);
    ck_assert_msg(strstr(metrics, "\"txt_mdr\""), "no median rank in %s", metrics);
    free(metrics);
    // The config that ran, read back, trains the same run: the folder's config.yaml is complete.
    snprintf(path, sizeof path, "%s/last.h5", out);
    char *line = run_ok(ARGS("eval", config_path, "--ckpt", path, "--split", "test"));
    ck_assert_msg(strstr(line, "\"split\": \"test\"") && strstr(line, "\"r_mean\""), "%s", line);
    free(line);
    // A second run into the same folder is refused, naming --resume.
    run_result r = run_petal(ARGS("train", config_path, "--out", out));
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "--resume"), "%s", r.err);
    run_result_free(&r);
}
END_TEST

static int file_lines(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    int n = 0;
    for (int c; f && (c = fgetc(f)) != EOF;) n += c == '\n';
    if (f) fclose(f);
    return n;
}

// Starts `petal train` into out and kills it with SIGKILL once metrics.jsonl has `lines` lines
// and `us` microseconds more have passed: a moment inside a step, an evaluation or a save.
// Fails unless the run was still going when killed.
static void train_and_kill(const char *out, bool resume, int lines, long us) {
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout)) _exit(127);
        const char *argv[] = {
            PETAL_BIN, "train", config_path, "--out", out, resume ? "--resume" : NULL, NULL};
        execv(PETAL_BIN, (char *const *)argv);
        _exit(127);
    }
    struct timespec poll = {0, 200000L}, rest = {us / 1000000, (us % 1000000) * 1000L};
    int status;
    while (file_lines(out, "metrics.jsonl") < lines && waitpid(pid, &status, WNOHANG) == 0)
        nanosleep(&poll, NULL);
    nanosleep(&rest, NULL);
    kill(pid, SIGKILL);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "the run ended before the kill (status %d): the test kills too late", status);
}

START_TEST(test_resume_after_kill_is_exact) {
    const char *whole = test_dir_path("whole"), *cut = test_dir_path("cut");
    free(run_ok(ARGS("train", config_path, "--out", whole)));
    // Kills at growing moments (after a number of metrics lines, plus a delay that lands inside
    // a step, an evaluation or a checkpoint write); each resume goes on from the last resume.h5,
    // or starts afresh when none was written yet. 14 steps, val at 7 and 14: 17 lines in all.
    struct {
        int lines;
        long us;
    } moments[] = {{0, 0}, {2, 3000}, {6, 9000}, {9, 500}, {13, 7000}};
    bool started = false;
    for (size_t i = 0; i < sizeof moments / sizeof moments[0]; i++) {
        train_and_kill(cut, started && exists(cut, "resume.h5"), moments[i].lines, moments[i].us);
        started = true;
        if (!exists(cut, "resume.h5")) {
            char cmd[1024];
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", cut);
            ck_assert_int_eq(system(cmd), 0);
            started = false;
        }
    }
    if (started)
        free(run_ok(ARGS("train", config_path, "--out", cut, "--resume")));
    else
        free(run_ok(ARGS("train", config_path, "--out", cut)));
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/metrics.jsonl", whole);
    snprintf(b, sizeof b, "%s/metrics.jsonl", cut);
    char *want = slurp(a), *got = slurp(b);
    ck_assert_msg(strcmp(want, got) == 0,
                  "metrics.jsonl after kills and resumes differs:\n--- uninterrupted\n%s\n--- "
                  "resumed\n%s",
                  want, got);
    free(want);
    free(got);
}
END_TEST

START_TEST(test_non_finite_loss_stops_the_run) {
    const char *out = test_dir_path("nan");
    run_result r = run_petal(ARGS("train", config_path, "--out", out, "--set", "init_lr=1e30",
                                  "--set", "warmup_steps=0"));
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "not finite") && strstr(r.err, "step "), "%s", r.err);
    run_result_free(&r);
}
END_TEST

START_TEST(test_bad_config_key_names_file_and_line) {
    const char *bad = test_dir_path("bad.yaml");
    FILE *f = fopen(bad, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "task: retrieval\nimage_root: x\nann_root: y\ninit_lr: fast\n");
    fclose(f);
    run_result r = run_petal(ARGS("train", bad, "--out", test_dir_path("never")));
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "bad.yaml:4") && strstr(r.err, "init_lr"), "%s", r.err);
    run_result_free(&r);
}
END_TEST

// The value of "key": in the line of text that holds `marker` (-1 if absent).
static double value_after(const char *text, const char *marker, const char *key) {
    const char *line = strstr(text, marker);
    const char *at = line ? strstr(line, key) : NULL;
    return at ? atof(at + strlen(key)) : -1;
}

static const char *const petl_config_text = "task: %s\n"
                                            "data_root: %s\n"
                                            "image_root: images_shifted\n"
                                            "ann_root: annotations\n"
                                            "pretrained: %s\n"
                                            "image_size: 16\n"
                                            "text_length: 16\n"
                                            "petl: {methods: %s, rank: 4}\n"
                                            "batch_size_train: 8\n"
                                            "batch_size_test: 16\n"
                                            "init_lr: 1.0e-2\n"
                                            "max_steps: 6\n"
                                            "k_test: 4\n"
                                            "log_every: 2\n"
                                            "eval_every: 6\n"
                                            "threads: 1\n";

// Pretrains, then trains `methods` for `task` on the shifted images; returns the run folder.
static const char *train_petl(const char *task, const char *methods, const char **config) {
    const char *pre = test_dir_path("pre");
    char ckpt[1024], name[64];
    snprintf(ckpt, sizeof ckpt, "%s/last.h5", pre);
    if (!exists(pre, "last.h5")) free(run_ok(ARGS("train", config_path, "--out", pre)));
    snprintf(name, sizeof name, "%s.yaml", task);
    *config = test_dir_path(name);
    FILE *f = fopen(*config, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, petl_config_text, task, test_dir_path("synth"), ckpt, methods);
    fclose(f);
    snprintf(name, sizeof name, "run_%s", task);
    const char *out = test_dir_path(name);
    free(run_ok(ARGS("train", *config, "--out", out)));
    return out;
}

// A PETL run's best.h5, evaluated by petal eval, scores what the run logged for it.
static void check_eval_matches(const char *config, const char *out, const char *key) {
    char path[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    char *metrics = slurp(path);
    snprintf(path, sizeof path, "%s/best.h5", out);
    char *line = run_ok(ARGS("eval", config, "--petl", path, "--split", "val"));
    double logged = value_after(metrics, "\"split\": \"val\"", key);
    double again = value_after(line, "\"split\": \"val\"", key);
    ck_assert_msg(logged >= 0 && logged == again, "%s: the run logged %.9g, petal eval gave %.9g",
                  key, logged, again);
    free(metrics);
    free(line);
}

// Trains `methods` for `task`, checks metrics.jsonl has 3 lines with the loss and 2 with the
// score (validation at step 6, test), and that petal eval reproduces the logged score.
static const char *check_petl_run(const char *task, const char *methods, const char *loss,
                                  const char *score) {
    const char *config;
    const char *out = train_petl(task, methods, &config);
    char path[1024], key[64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    char *metrics = slurp(path);
    snprintf(key, sizeof key, "\"%s\"", loss);
    ck_assert_int_eq(count_lines(metrics, key), 3);
    snprintf(key, sizeof key, "\"%s\"", score);
    ck_assert_int_eq(count_lines(metrics, key), 2);
    free(metrics);
    snprintf(key, sizeof key, "\"%s\": ", score);
    check_eval_matches(config, out, key);
    return out;
}

START_TEST(test_vqa_with_aurora_and_eval) {
    const char *out = check_petl_run("vqa", "aurora", "loss_vqa", "vqa_acc");
    ck_assert(exists(out, "results/test_step6.json"));
}
END_TEST

START_TEST(test_caption_with_lora_and_eval) {
    check_petl_run("caption", "lora", "loss_lm", "CIDEr");
}
END_TEST

START_TEST(test_bad_image_is_named_or_skipped) {
    char path[1024];
    snprintf(path, sizeof path, "%s/images/train/synth_5.png", test_dir_path("synth"));
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not a png", f);
    fclose(f);
    run_result r = run_petal(ARGS("train", config_path, "--out", test_dir_path("bad")));
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "coco_karpathy_train.json entry") && strstr(r.err, "synth_5.png"),
                  "%s", r.err);
    run_result_free(&r);
    char *out = run_ok(ARGS("train", config_path, "--out", test_dir_path("skip"), "--set",
                            "skip_bad_images=true"));
    ck_assert_msg(strstr(out, "skipped ") && strstr(out, "unreadable training images"), "%s", out);
    free(out);
}
END_TEST

// Texts cut to the maximum length are counted and said, not dropped silently.
START_TEST(test_cut_texts_are_reported) {
    char *out = run_ok(ARGS("train", config_path, "--out", test_dir_path("short"), "--set",
                            "text_length=4", "--set", "max_steps=3", "--set", "eval_every=0"));
    ck_assert_msg(strstr(out, "training texts to the maximum length"), "%s", out);
    free(out);
}
END_TEST

// The losses of the first `n` steps of a run's metrics.jsonl.
static void read_losses(const char *out, int n, double *loss) {
    char path[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    char *metrics = slurp(path), *p = metrics;
    for (int i = 0; i < n; i++) {
        p = strstr(p, "\"loss\": ");
        ck_assert_msg(p, "step %d has no loss in %s", i + 1, metrics);
        loss[i] = strtod(p += strlen("\"loss\": "), NULL);
    }
    free(metrics);
}

// precision: bf16 trains: the log names it, every loss is finite, and the first step's loss (the
// same weights and batch as f32's) differs from f32's by what bf16 GEMM inputs cost: more than
// nothing, less than a percent. A bad value is refused naming the key and the choices.
START_TEST(test_bf16_run_near_f32) {
    const char *f32 = test_dir_path("f32"), *bf16 = test_dir_path("bf16");
    free(run_ok(
        ARGS("train", config_path, "--out", f32, "--set", "max_steps=3", "--set", "eval_every=0")));
    char *out = run_ok(ARGS("train", config_path, "--out", bf16, "--set", "max_steps=3", "--set",
                            "eval_every=0", "--set", "precision=bf16"));
    ck_assert_msg(strstr(out, "precision: bf16"), "%s", out);
    free(out);
    double a[3], b[3];
    read_losses(f32, 3, a);
    read_losses(bf16, 3, b);
    for (int i = 0; i < 3; i++) ck_assert_msg(isfinite(b[i]), "step %d: bf16 loss %g", i + 1, b[i]);
    double rel = fabs(b[0] - a[0]) / fabs(a[0]);
    printf("first step's loss: f32 %.9g, bf16 %.9g (relative difference %.3g)\n", a[0], b[0], rel);
    ck_assert_msg(rel > 1e-7 && rel < 1e-2, "f32 %.9g, bf16 %.9g", a[0], b[0]);
    run_result r = run_petal(
        ARGS("train", config_path, "--out", test_dir_path("bad"), "--set", "precision=fp16"));
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "precision: expected one of f32, tf32, bf16, found 'fp16'"), "%s",
                  r.err);
    run_result_free(&r);
}
END_TEST

int main(void) {
    Suite *s = suite_create("train_cli");
    TCase *tc = tcase_with_timeout("train", 240);
    tcase_add_checked_fixture(tc, setup, test_dir_remove);
    tcase_add_test(tc, test_train_writes_the_run_folder);
    tcase_add_test(tc, test_cut_texts_are_reported);
    tcase_add_test(tc, test_bf16_run_near_f32);
    tcase_add_test(tc, test_resume_after_kill_is_exact);
    tcase_add_test(tc, test_non_finite_loss_stops_the_run);
    tcase_add_test(tc, test_bad_config_key_names_file_and_line);
    tcase_add_test(tc, test_vqa_with_aurora_and_eval);
    tcase_add_test(tc, test_caption_with_lora_and_eval);
    tcase_add_test(tc, test_bad_image_is_named_or_skipped);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
