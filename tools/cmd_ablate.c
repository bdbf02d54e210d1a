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

// "key=v1,v2" -> an axis (the string is split in place): 1, or 0 when it has no key=, or -1 after
// naming an empty value on stderr.
static int parse_axis(char *spec, ablate_axis *axis) {
    char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1]) return 0;
    *eq = '\0';
    axis->key = spec;
    int max = (int)strlen(eq + 1) + 1;
    axis->values = buffer_calloc((size_t)max, sizeof *axis->values, "ablate");
    char *value = buffer_strndup(eq + 1, strlen(eq + 1));
    axis->n = cli_split_list("petal ablate", "--grid", value, eq + 1, axis->values, max);
    free(value);
    return axis->n > 0 ? 1 : -1;
}

static int usage_error(const char *why, const char *arg) {
    fprintf(stderr, "petal ablate: %s%s%s%s\nusage: %s\n", why, arg ? " '" : "", arg ? arg : "",
            arg ? "'" : "", cmd_ablate_usage);
    return 2;
}

int cmd_ablate(int argc, char **argv) {
    ablate_axis axes[MAX_AXES] = {0}; // a bad --grid is counted before its values exist
    const char **sets = buffer_calloc((size_t)argc, sizeof *sets, "ablate");
    ablate_options o = {.axes = axes, .sets = sets, .seeds = 1, .out = "runs/ablate"};
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--grid") && next) {
            if (o.n_axes == MAX_AXES)
                rc = usage_error("at most 8 --grid axes", NULL);
            else if ((rc = parse_axis(argv[++i], &axes[o.n_axes++])) <= 0)
                rc = rc < 0 ? 2 : usage_error("--grid expects key=v1,v2,..., got", next);
            else
                rc = 0;
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
