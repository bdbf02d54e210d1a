// petal train: one PETL experiment from a YAML config into a run folder (train/trainer.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/config.h"
#include "train/trainer.h"
#include "tools/cli.h"

const char cmd_train_usage[] =
    "petal train CONFIG.yaml [--set key=value ...] [--out RUN_DIR] [--resume] [--stop-after N]\n"
    "  CONFIG.yaml      an experiment config (configs/*.yaml; every key in docs/config.md)\n"
    "  --set key=value  override a key, e.g. --set petl.rank=16 (repeatable)\n"
    "  --out RUN_DIR    the run folder (default runs/<config name>)\n"
    "  --resume         continue the run in RUN_DIR from its resume.h5 (default: start afresh)\n"
    "  --stop-after N   save the resume state and stop after optimizer step N (default: run to "
    "the\n"
    "                   end); a time-limited job goes on later with --resume\n"
    "under mpirun or srun every rank runs this same command: data-parallel training\n"
    "(docs/distributed.md; PETAL_DIST=mpi|nccl|auto, PETAL_DIST_TIMEOUT seconds)\n"
    "example: petal train configs/synth_retrieval.yaml --set petl.methods=lora --out runs/lora";

// Data parallelism with device: cuda: every rank computes on its own GPU, the one its nccl
// communicator was given (cuda:LOCAL_RANK); the mpi backend moves host tensors only.
static petal_status rank_device(train_config *c, const dist_comm *comm) {
    petal_device want = train_config_device(c), have = dist_device(comm);
    if (want.type == PETAL_CPU || device_equal(want, have)) return PETAL_OK;
    if (have.type == PETAL_CPU)
        return petal_error(PETAL_ERR_ARG,
                           "%s: device: %s in a data-parallel run needs the nccl backend "
                           "(PETAL_DIST=nccl); the %s backend averages host tensors only",
                           c->source, c->device, dist_backend_name(comm));
    char name[16], assignment[32];
    snprintf(assignment, sizeof assignment, "device=%s", device_name(have, name));
    return train_config_set(c, assignment);
}

// runs/<file name without directories and extension>
static char *default_out(const char *config) {
    const char *base = strrchr(config, '/');
    base = base ? base + 1 : config;
    size_t n = strcspn(base, ".");
    char *out = malloc(n + 6);
    if (out) snprintf(out, n + 6, "runs/%.*s", (int)n, base);
    return out;
}

int cmd_train(int argc, char **argv) {
    const char *config = NULL, *out = NULL, *stop_after = NULL;
    const char **sets = calloc((size_t)argc, sizeof *sets);
    int n_sets = 0;
    trainer_options o = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--resume") == 0)
            o.resume = true;
        else if (strcmp(argv[i], "--stop-after") == 0 && i + 1 < argc)
            stop_after = argv[++i];
        else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc)
            sets[n_sets++] = argv[++i];
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            out = argv[++i];
        else if (argv[i][0] != '-' && !config)
            config = argv[i];
        else {
            fprintf(stderr, "petal train: unexpected argument '%s'\nusage: %s\n", argv[i],
                    cmd_train_usage);
            free(sets);
            return 2;
        }
    }
    if (!config) {
        fprintf(stderr, "petal train: no config file given\nusage: %s\n", cmd_train_usage);
        free(sets);
        return 2;
    }
    if (stop_after) {
        char *end;
        long long n = strtoll(stop_after, &end, 10);
        if (end == stop_after || *end || n < 1) {
            fprintf(stderr, "petal train: --stop-after '%s': expected a step number >= 1\n",
                    stop_after);
            free(sets);
            return 2;
        }
        o.stop_after = n;
    }
    train_config c;
    petal_status s = train_config_load(config, sets, n_sets, &c);
    free(sets);
    if (s) {
        fprintf(stderr, "petal train: %s\n", petal_error_message());
        return 1;
    }
    char *dir = out ? NULL : default_out(config);
    s = dist_init_from_env(&o.comm);
    if (!s && o.comm) s = rank_device(&c, o.comm);
    if (!s) s = trainer_run_with(&c, out ? out : dir, &o);
    // One rank's failure ends the job: the others would wait for it until the timeout.
    if (s && o.comm) dist_abort(o.comm, "petal train");
    if (s) fprintf(stderr, "petal train: %s\n", petal_error_message());
    free(dir);
    train_config_free(&c);
    dist_free(o.comm);
    return s ? 1 : 0;
}
