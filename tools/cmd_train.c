// petal train: one PETL experiment from a YAML config into a run folder (train/trainer.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/config.h"
#include "train/trainer.h"
#include "tools/cli.h"

const char cmd_train_usage[] =
    "petal train CONFIG.yaml [--set key=value ...] [--out RUN_DIR] [--resume]\n"
    "  CONFIG.yaml      an experiment config (configs/*.yaml; every key in docs/config.md)\n"
    "  --set key=value  override a key, e.g. --set petl.rank=16 (repeatable)\n"
    "  --out RUN_DIR    the run folder (default runs/<config name>)\n"
    "  --resume         continue the run in RUN_DIR from its resume.h5 (default: start afresh)\n"
    "example: petal train configs/synth_retrieval.yaml --set petl.methods=lora --out runs/lora";

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
    const char *config = NULL, *out = NULL;
    const char **sets = calloc((size_t)argc, sizeof *sets);
    int n_sets = 0;
    bool resume = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--resume") == 0)
            resume = true;
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
    train_config c;
    petal_status s = train_config_load(config, sets, n_sets, &c);
    free(sets);
    if (s) {
        fprintf(stderr, "petal train: %s\n", petal_error_message());
        return 1;
    }
    char *dir = out ? NULL : default_out(config);
    s = trainer_run(&c, out ? out : dir, resume);
    if (s) fprintf(stderr, "petal train: %s\n", petal_error_message());
    free(dir);
    train_config_free(&c);
    return s ? 1 : 0;
}
