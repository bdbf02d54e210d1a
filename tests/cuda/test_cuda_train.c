// tests/cuda: `petal train` with device: cuda against the same config on the CPU. A tiny BLIP
// built from arch trains 3 steps of each task (with several PETL methods) on the synthetic data
// set on both devices: the losses of every step and the validation and test scores agree within
// 1e-5 relative in f32, 1e-10 in f64, and the cuda run's last.h5, read back on the CPU, holds the
// CPU run's weights; a cuda run stopped and resumed repeats the whole run's losses. Skips where
// cuda:0 cannot be used, as the GPU suite does (gpu_gate.h); under the host emulator (ctest -L
// gpu in a PETAL_CUDA_EMU build) it runs.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "tests/cuda/gpu_gate.h"
#include "tests/test_util.h"
#include "train/synth.h"
#include "train/trainer.h"

#define STEPS 3

static const char *const config_text =
    "task: %s\n"
    "data_root: %s\n"
    "image_root: images\n"
    "ann_root: annotations\n"
    "vocab: vocab.txt\n"
    "image_size: 16\n"
    "arch: {patch: 8, vision_width: 16, vision_depth: 1, vision_heads: 2, vision_mlp: 32,\n"
    "       text_hidden: 16, text_layers: 1, text_heads: 2, text_intermediate: 32,\n"
    "       max_positions: 40, embed_dim: 8}\n"
    "petl: {methods: %s, rank: 2}\n"
    "text_length: 12\n"
    "batch_size_train: 4\n"
    "batch_size_test: 8\n"
    "init_lr: 1.0e-3\n"
    "max_steps: 3\n"
    "queue_size: 8\n"
    "k_test: 2\n"
    "log_every: 1\n"
    "eval_every: 3\n"
    "save_every: 3\n"
    "threads: 1\n"
    "num_workers: 1\n"
    "dtype: %s\n"
    "device: %s\n";

typedef struct {
    const char *task, *methods, *score_key;
} train_case;

static const train_case cases[] = {
    {"vqa", "lora", "vqa_acc"},      {"retrieval", "aurora", "r_mean"},
    {"caption", "adapter", "CIDEr"}, {"pretrain", "full", "r_mean"},
    {"retrieval", "cp", "r_mean"},   {"caption", "vera", "CIDEr"},
    {"vqa", "unitrans", "vqa_acc"},  {"retrieval", "vcra", "r_mean"},
};

static void setup(void) {
    test_dir_make();
    synth_options o = synth_defaults();
    o.train_images = 8;
    o.val_images = 8;
    o.test_images = 8;
    o.image_size = 16;
    ck_assert_int_eq(synth_write(test_dir_path("synth"), &o, NULL), PETAL_OK);
}

// Trains the case on `device` into run_<name>, with options o; returns the run folder.
static const char *train_into(const train_case *tc, const char *dtype, const char *device,
                              const char *name, const trainer_options *o) {
    char path[128], text[2048];
    snprintf(path, sizeof path, "%s.yaml", name);
    snprintf(text, sizeof text, config_text, tc->task, test_dir_path("synth"), tc->methods, dtype,
             device);
    train_config c;
    petal_status s = train_config_load(test_dir_write(path, text), NULL, 0, &c);
    ck_assert_msg(s == PETAL_OK, "%s", petal_error_message());
    snprintf(path, sizeof path, "run_%s", name);
    const char *out = test_dir_path(path);
    s = trainer_run_with(&c, out, o);
    ck_assert_msg(s == PETAL_OK, "%s on %s: %s", tc->task, device, petal_error_message());
    train_config_free(&c);
    return out;
}

static const char *train_on(const train_case *tc, const char *dtype, const char *device) {
    char name[64];
    snprintf(name, sizeof name, "%s_%s_%s", tc->task, dtype, device);
    return train_into(tc, dtype, device, name, &(trainer_options){0});
}

// The values of `key` in the run's metrics.jsonl, in order (at most cap); returns how many.
static int read_values(const char *run, const char *key, double *out, int cap) {
    char path[1024], pattern[64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    snprintf(pattern, sizeof pattern, "\"%s\": ", key);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[4096];
    int n = 0;
    while (n < cap && fgets(line, sizeof line, f)) {
        const char *at = strstr(line, pattern);
        if (at) out[n++] = strtod(at + strlen(pattern), NULL);
    }
    fclose(f);
    return n;
}

static bool file_has_line(const char *path, const char *want) {
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, want) != NULL;
    fclose(f);
    return found;
}

static void check_close(const char *what, const double *cpu, const double *cuda, int n,
                        double rtol) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double rel = fabs(cuda[i] - cpu[i]) / fmax(fabs(cpu[i]), 1e-30);
        if (rel > worst) worst = rel;
        ck_assert_msg(rel <= rtol, "%s %d: cpu %.17g, cuda %.17g (relative %.3g > %.3g)", what, i,
                      cpu[i], cuda[i], rel, rtol);
    }
    printf("%s: %d values, worst relative difference %.3g\n", what, n, worst);
}

// Both runs' last.h5 read on the CPU: the same tensors, equal within atol + rtol |cpu|.
static void check_checkpoints(const char *cpu_run, const char *cuda_run, double atol, double rtol) {
    char path[1024];
    tensor_list a, b;
    snprintf(path, sizeof path, "%s/last.h5", cpu_run);
    ck_assert_msg(checkpoint_read(path, &a, NULL) == PETAL_OK, "%s", petal_error_message());
    snprintf(path, sizeof path, "%s/last.h5", cuda_run);
    ck_assert_msg(checkpoint_read(path, &b, NULL) == PETAL_OK, "%s", petal_error_message());
    ck_assert_int_eq(a.n, b.n);
    ck_assert_int_gt(a.n, 0);
    for (int i = 0; i < a.n; i++) {
        named_tensor *other = tensor_list_find(&b, a.items[i].name);
        ck_assert_msg(other != NULL, "%s: no '%s'", path, a.items[i].name);
        ck_assert(other->value->device.type == PETAL_CPU);
        ck_assert(tensors_close(a.items[i].name, other->value, a.items[i].value, atol, rtol));
    }
    tensor_list_free(&a);
    tensor_list_free(&b);
}

static void check_case(const train_case *tc, const char *dtype, double rtol, double weight_atol) {
    const char *cpu = train_on(tc, dtype, "cpu");
    const char *cuda = train_on(tc, dtype, "cuda");
    double a[STEPS + 2], b[STEPS + 2];
    int n = read_values(cpu, "loss", a, STEPS + 2);
    ck_assert_int_eq(n, STEPS);
    ck_assert_int_eq(read_values(cuda, "loss", b, STEPS + 2), n);
    char what[64];
    snprintf(what, sizeof what, "%s %s %s step losses", tc->task, tc->methods, dtype);
    check_close(what, a, b, n, rtol);
    // The validation and test scores.
    ck_assert_int_eq(read_values(cpu, tc->score_key, a, STEPS + 2), 2);
    ck_assert_int_eq(read_values(cuda, tc->score_key, b, STEPS + 2), 2);
    snprintf(what, sizeof what, "%s %s %s scores", tc->task, tc->methods, dtype);
    check_close(what, a, b, 2, rtol);
    check_checkpoints(cpu, cuda, weight_atol, rtol);
    // The cuda run said where it ran.
    char path[1024];
    snprintf(path, sizeof path, "%s/log.txt", cuda);
    ck_assert_msg(file_has_line(path, "device: cuda\n"), "%s lacks 'device: cuda'", path);
}

START_TEST(test_train_f32_equals_cpu) {
    GPU_REQUIRE();
    // A weight whose gradient is rounding noise (an attention key's bias: softmax ignores it)
    // gets f32 noise of either device's order of AdamW's eps, which AdamW turns into steps of up
    // to the learning rate: the weights agree within STEPS * init_lr, the losses within 1e-5.
    check_case(&cases[_i], "f32", 1e-5, STEPS * 1e-3);
}
END_TEST

START_TEST(test_train_f64_equals_cpu) {
    GPU_REQUIRE();
    check_case(&cases[_i], "f64", 1e-10, 1e-12);
}
END_TEST

// A cuda run stopped after step 1 and resumed (the optimizer state read back onto the device)
// logs the losses of the uninterrupted cuda run, bit for bit.
START_TEST(test_resume_on_cuda_is_exact) {
    GPU_REQUIRE();
    const train_case *tc = &cases[0];
    const char *whole = train_on(tc, "f32", "cuda");
    train_into(tc, "f32", "cuda", "parts", &(trainer_options){.stop_after = 1});
    const char *parts = train_into(tc, "f32", "cuda", "parts", &(trainer_options){.resume = true});
    double a[STEPS + 2], b[STEPS + 2];
    ck_assert_int_eq(read_values(whole, "loss", a, STEPS + 2), STEPS);
    ck_assert_int_eq(read_values(parts, "loss", b, STEPS + 2), STEPS);
    for (int i = 0; i < STEPS; i++)
        ck_assert_msg(a[i] == b[i], "step %d: whole run %.17g, resumed %.17g", i + 1, a[i], b[i]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("cuda_train");
    TCase *tc = tcase_with_timeout("train: cuda vs cpu", 300);
    tcase_add_checked_fixture(tc, setup, test_dir_remove);
    int n = (int)(sizeof cases / sizeof cases[0]);
    tcase_add_loop_test(tc, test_train_f32_equals_cpu, 0, n);
    tcase_add_loop_test(tc, test_train_f64_equals_cpu, 0, n);
    tcase_add_test(tc, test_resume_on_cuda_is_exact);
    suite_add_tcase(s, tc);
    return gpu_gate_run_suite(s);
}
