// petal bench train: training steps of an experiment config (the model, PETL method, data set and
// loader it names) without evaluation or checkpoints: steps/s, peak memory and the fraction of
// the time spent waiting for the data loader, as one JSON line.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/bench_train.h"
#include "tools/cli.h"
#include "train/trainer.h"

int bench_train(int argc, char **argv) {
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
               "\"comm_ms_per_step\": %.4g}\n",
               config, train_task_name(c.task), c.petl.methods, (long long)c.batch_size_train,
               (long long)c.num_workers, (long long)c.threads, (long long)r.trainable,
               (long long)r.steps, (double)r.steps / r.seconds, 1e3 * r.seconds / (double)r.steps,
               r.data_wait_s / r.seconds, (double)r.peak_bytes / 1048576.0, ranks,
               1e3 * r.comm_s / (double)r.steps);
    else if (s)
        fprintf(stderr, "petal bench train: %s\n", petal_error_message());
    train_config_free(&c);
    dist_free(comm);
    return s ? 1 : 0;
}
