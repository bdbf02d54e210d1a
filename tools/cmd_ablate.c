// petal ablate: a grid of experiments over config keys, each point trained with several seeds,
// summarised in results.csv / results.md and plots (train/ablate.h).
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "tools/cli.h"
#include "train/ablate.h"

const char cmd_ablate_usage[] =
    "petal ablate CONFIG.yaml --grid key=v1,v2,... [--grid ...] [--set key=value ...] "
    "[--seeds N] [--out DIR]\n"
    "  --grid key=v1,v2  an axis of the grid: every value of the key (repeatable; the grid is "
    "their product)\n"
    "  --set key=value   a value for every run (repeatable)\n"
    "  --seeds N         runs per point, with the config's seed, seed + 1, ... (default 1)\n"
    "  --out DIR         the grid folder (default runs/ablate); an interrupted grid continues\n"
    "example: petal ablate configs/synth_retrieval.yaml --grid petl.rank=4,8,16 "
    "--grid petl.methods=cp,cp+ice,cp+ice+gqt --seeds 3 --out runs/ablate";

#define MAX_AXES 8

// "key=v1,v2" -> an axis (the string is split in place); false when malformed.
static bool parse_axis(char *spec, ablate_axis *axis) {
    char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1]) return false;
    *eq = '\0';
    axis->key = spec;
    axis->n = 0;
    axis->values = buffer_calloc(strlen(eq + 1) + 1, sizeof *axis->values, "ablate");
    for (char *save, *v = strtok_r(eq + 1, ",", &save); v; v = strtok_r(NULL, ",", &save))
        axis->values[axis->n++] = v;
    return axis->n > 0 && eq[1 + strlen(eq + 1) - 1] != ',';
}

static int usage_error(const char *why, const char *arg) {
    fprintf(stderr, "petal ablate: %s%s%s%s\nusage: %s\n", why, arg ? " '" : "", arg ? arg : "",
            arg ? "'" : "", cmd_ablate_usage);
    return 2;
}

int cmd_ablate(int argc, char **argv) {
    ablate_axis axes[MAX_AXES];
    const char **sets = buffer_calloc((size_t)argc, sizeof *sets, "ablate");
    ablate_options o = {.axes = axes, .sets = sets, .seeds = 1, .out = "runs/ablate"};
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--grid") && next) {
            if (o.n_axes == MAX_AXES)
                rc = usage_error("at most 8 --grid axes", NULL);
            else if (!parse_axis(argv[++i], &axes[o.n_axes++]))
                rc = usage_error("--grid expects key=v1,v2,... without empty values, got", next);
        } else if (!strcmp(argv[i], "--set") && next) {
            sets[o.n_sets++] = argv[++i];
        } else if (!strcmp(argv[i], "--seeds") && next) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 100) rc = usage_error("--seeds expects 1 to 100, got", next);
            o.seeds = (int)n;
        } else if (!strcmp(argv[i], "--out") && next) {
            o.out = argv[++i];
        } else if (argv[i][0] != '-' && !o.config) {
            o.config = argv[i];
        } else {
            rc = usage_error("unexpected argument", argv[i]);
        }
    }
    if (!rc && !o.config) rc = usage_error("no config file given", NULL);
    if (!rc && ablate_run(&o) != PETAL_OK) {
        fprintf(stderr, "petal ablate: %s\n", petal_error_message());
        rc = 1;
    }
    for (int a = 0; a < o.n_axes; a++) free(axes[a].values);
    free(sets);
    return rc;
}
