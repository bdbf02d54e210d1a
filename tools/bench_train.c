// petal bench train: training steps of an experiment config (the model, PETL method, data set and
// loader it names) without evaluation or checkpoints: steps/s, peak memory and the fraction of
// the time spent waiting for the data loader, as one JSON line. With --model, one PETL training
// step of BLIP-base retrieval on random inputs instead, the step tools/bench_torch.py train times
// in PyTorch.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "autograd/memory_profile.h"
#include "io/image.h"
#include "models/blip/blip.h"
#include "tensor/blas.h"
#include "tensor/cpu/cpu_path.h"
#include "tensor/scope.h"
#include "tensor/storage.h"
#include "tensor/threads.h"
#include "tools/bench_train.h"
#include "tools/bench_util.h"
#include "tools/cli.h"
#include "train/step.h"
#include "train/trainer.h"

// --model: one Aurora (or other PETL) training step of a BLIP model at its real size on random
// inputs, as tools/bench_torch.py train runs it in PyTorch: no data loader, no run folder.
#define MAX_MODEL_STEPS 100

typedef struct {
    long batch, image_size, steps, rank;
    long memory_rows; // --memory: the profile's rows to print (0: no profile)
    const char *petl, *variant;
} model_bench;

static const int64_t TEXT_LENGTH = 35; // BLIP retrieval's max_length

// The step's inputs: normal images, captions of 35 ids ([CLS] first), distinct image ids.
static train_batch random_batch(const blip_config *cfg, int64_t n, int64_t size) {
    train_batch b = {.n = n};
    b.images = tensor_empty(PETAL_F32, SHAPE(n, 3, size, size)); // (B, 3, S, S)
    rng_generator g = {.seed = 1};
    tensor_normal_(b.images, 0, 1, &g);
    b.text_ids = tensor_empty(PETAL_I64, SHAPE(n, TEXT_LENGTH)); // (B, L)
    for (int64_t i = 0; i < n * TEXT_LENGTH; i++)
        tensor_data_i64(b.text_ids)[i] =
            i % TEXT_LENGTH == 0 ? cfg->tokens.cls : 1000 + (i * 7919) % 20000;
    b.text_mask = tensor_ones(PETAL_F32, SHAPE(n, TEXT_LENGTH)); // (B, L)
    b.image_ids = tensor_arange(PETAL_I64, 0, (double)n, 1);     // (B)
    return b;
}

// The config the step reads (task, losses, optimizer, petl: block) with the options applied.
static petal_status model_config(const model_bench *mb, train_config *c) {
    train_config_defaults(TRAIN_TASK_RETRIEVAL, c);
    char sets[3][96];
    snprintf(sets[0], sizeof sets[0], "petl.methods=%s", mb->petl);
    snprintf(sets[1], sizeof sets[1], "petl.variant=%s", mb->variant);
    snprintf(sets[2], sizeof sets[2], "petl.rank=%ld", mb->rank);
    petal_status s = PETAL_OK;
    for (int i = 0; i < 3 && !s; i++) s = train_config_set(c, sets[i]);
    free(c->prompt); // captioning's; retrieval has none
    c->prompt = NULL;
    c->image_size = mb->image_size;
    c->batch_size_train = mb->batch;
    return s; // not train_config_check: it asks for the data keys, which this bench does not read
}

// The timed steps: forward (ITC with the momentum encoders and queues, ITM with hard negatives),
// backward, AdamW. Times in ms; rss_delta: what the steps added to the process's peak RSS.
static void model_steps(const model_bench *mb, const train_config *c, train_model *tm, double *ms,
                        size_t *rss_delta, size_t *alloc_peak) {
    blip_config cfg = blip_config_base(BLIP_RETRIEVAL);
    optim_adamw *opt = train_model_optimizer(tm, c, NULL);
    train_batch b = random_batch(&cfg, mb->batch, mb->image_size);
    rng_generator g = {.seed = (uint64_t)c->seed};
    size_t rss0, hwm0, rss1, hwm1, base = memory_get_stats(DEVICE_CPU).current;
    bench_rss(&rss0, &hwm0);
    memory_reset_peak(DEVICE_CPU);
    if (mb->memory_rows) memory_profile_begin(DEVICE_CPU);
    for (int64_t i = -1; i < mb->steps; i++) { // one untimed step: caches and BLAS buffers fill
        double t0 = bench_now_ms();
        int mark = scope_begin();
        adamw_zero_grad(opt);
        step_parts p;
        autograd_backward(step_loss(tm, c, &b, c->alpha, &g, NULL, &p), NULL, false);
        adamw_step(opt);
        scope_end(mark);
        if (i >= 0) ms[i] = bench_now_ms() - t0;
    }
    bench_rss(&rss1, &hwm1);
    *rss_delta = hwm1 > rss0 ? hwm1 - rss0 : 0;
    *alloc_peak = memory_get_stats(DEVICE_CPU).peak - base;
    if (mb->memory_rows) {
        memory_profile_print(stderr, (int)mb->memory_rows);
        memory_profile_end();
    }
    train_batch_free(&b);
    adamw_free(opt);
}

static int bench_train_model(int argc, char **argv) {
    static const char *const known[] = {"--model",      "--petl",  "--variant", "--rank", "--batch",
                                        "--image-size", "--steps", "--memory",  NULL};
    if (cli_check_options(argc, argv, known, cmd_bench_usage)) return 2;
    const char *model = cli_option(argc, argv, "--model", NULL);
    if (strcmp(model, "blip-base-retrieval") != 0) {
        fprintf(stderr, "petal bench train: --model '%s': expected blip-base-retrieval\n", model);
        return 2;
    }
    model_bench mb = {.petl = cli_option(argc, argv, "--petl", "aurora"),
                      .variant = cli_option(argc, argv, "--variant", "code")};
    if (cli_option_range(argc, argv, "--batch", 4, 1, 4096, &mb.batch) ||
        cli_option_range(argc, argv, "--image-size", 224, 16, IMAGE_MAX_MODEL_SIZE,
                         &mb.image_size) ||
        cli_option_range(argc, argv, "--steps", 3, 1, MAX_MODEL_STEPS, &mb.steps) ||
        cli_option_range(argc, argv, "--rank", 32, 1, 768, &mb.rank) ||
        cli_option_range(argc, argv, "--memory", 0, 1, 1000, &mb.memory_rows))
        return 2;
    train_config c;
    if (model_config(&mb, &c)) {
        fprintf(stderr, "petal bench train: %s\n", petal_error_message());
        train_config_free(&c);
        return 2;
    }
    blip_config cfg = blip_config_base(BLIP_RETRIEVAL);
    cfg.vision.image_size = mb.image_size;
    cfg.queue_size = c.queue_size;
    train_model tm = {.m = blip_new(&cfg, PETAL_F32, (uint64_t)c.seed)};
    double ms[MAX_MODEL_STEPS];
    size_t rss_delta = 0, alloc_peak = 0;
    petal_status s = train_model_attach(&c, &tm);
    if (!s) model_steps(&mb, &c, &tm, ms, &rss_delta, &alloc_peak);
    if (s)
        fprintf(stderr, "petal bench train: %s\n", petal_error_message());
    else
        printf("{\"bench\": \"train\", \"impl\": \"petal\", \"model\": \"%s\", \"petl\": \"%s\", "
               "\"variant\": \"%s\", \"rank\": %ld, \"batch\": %ld, \"image_size\": %ld, "
               "\"text_length\": %lld, \"threads\": %d, \"cpu_path\": \"%s\", "
               "\"blas_core\": \"%s\", \"trainable\": %lld, \"steps\": %lld, "
               "\"ms_per_step\": %.1f, \"peak_bytes\": %zu, \"alloc_peak_bytes\": %zu}\n",
               model, mb.petl, mb.variant, mb.rank, mb.batch, mb.image_size, (long long)TEXT_LENGTH,
               threads_get(), cpu_path_name(cpu_path_active()), blas_core_name(),
               (long long)registry_count(tm.m->registry, true), (long long)mb.steps,
               bench_median(ms, (int)mb.steps), rss_delta, alloc_peak);
    train_model_free(&tm);
    train_config_free(&c);
    return s ? 1 : 0;
}

static int bench_train_config(int argc, char **argv) {
    static const char *const known[] = {"--config", "--steps", "--set", NULL};
    if (cli_check_options(argc, argv, known, cmd_bench_usage)) return 2;
    const char *config = cli_option(argc, argv, "--config", NULL);
    long steps;
    if (!config) {
        fprintf(stderr, "petal bench train: missing --config\nusage: %s\n", cmd_bench_usage);
        return 2;
    }
    if (cli_option_range(argc, argv, "--steps", 20, 1, 100000, &steps)) return 2;
    const char *sets[16];
    int n_sets = 0;
    for (int i = 1; i + 1 < argc && n_sets < 16; i++)
        if (strcmp(argv[i], "--set") == 0) sets[n_sets++] = argv[++i];
    train_config c;
    if (train_config_load(config, sets, n_sets, &c)) {
        fprintf(stderr, "petal bench train: %s\n", petal_error_message());
        return 1;
    }
    dist_comm *comm;
    petal_status s = dist_init_from_env(&comm);
    trainer_bench_result r;
    if (!s) s = trainer_bench(&c, comm, steps, &r);
    int ranks = comm ? dist_world_size(comm) : 1;
    if (!s && (!comm || dist_rank(comm) == 0))
        printf("{\"bench\": \"train\", \"config\": \"%s\", \"task\": \"%s\", \"methods\": \"%s\", "
               "\"batch\": %lld, \"workers\": %lld, \"threads\": %lld, \"trainable\": %lld, "
               "\"steps\": %lld, \"steps_per_s\": %.4g, \"ms_per_step\": %.4g, "
               "\"data_wait_fraction\": %.4g, \"peak_mb\": %.1f, \"ranks\": %d, "
               "\"comm_ms_per_step\": %.4g, \"cpu_path\": \"%s\", \"blas_core\": \"%s\"}\n",
               config, train_task_name(c.task), c.petl.methods, (long long)c.batch_size_train,
               (long long)c.num_workers, (long long)c.threads, (long long)r.trainable,
               (long long)r.steps, (double)r.steps / r.seconds, 1e3 * r.seconds / (double)r.steps,
               r.data_wait_s / r.seconds, (double)r.peak_bytes / 1048576.0, ranks,
               1e3 * r.comm_s / (double)r.steps, cpu_path_name(cpu_path_active()),
               blas_core_name());
    else if (s)
        fprintf(stderr, "petal bench train: %s\n", petal_error_message());
    train_config_free(&c);
    dist_free(comm);
    return s ? 1 : 0;
}

int bench_train(int argc, char **argv) {
    return cli_option(argc, argv, "--model", NULL) ? bench_train_model(argc, argv)
                                                   : bench_train_config(argc, argv);
}
