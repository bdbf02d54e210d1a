// petal runs: a table of finished runs (their summary.json): trainable parameters, the test
// split's metrics and the training time, one row per run folder, or per comma-joined list of
// folders (the retrieval and VQA runs of one method: their metrics side by side, times added).
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "petl/petl.h"
#include "tools/cli.h"

#define DEFAULT_METRICS "txt_r1,txt_r5,txt_r10,img_r1,img_r5,img_r10,vqa_acc,CIDEr"

const char cmd_runs_usage[] =
    "petal runs RUN_DIR[,RUN_DIR...] [RUN_DIR ...] [--metrics a,b,...]\n"
    "  RUN_DIR          a finished run folder (its summary.json); comma-joined folders share a "
    "row\n"
    "  --metrics a,b    the test metrics to show (default " DEFAULT_METRICS ")\n"
    "example: petal runs runs/synth_retrieval_* --metrics txt_r1,img_r1,r_mean";

#define MAX_JOINED 4

// The cell of metric `name`: the first of the joined runs' test lines that has it.
static void print_metric(json_value *const *runs, int n, const char *name) {
    for (int r = 0; r < n; r++) {
        double v;
        const json_value *x = json_get(json_get(runs[r], "test"), name);
        if (x && json_as_number(x, &v) == PETAL_OK) {
            printf(" %8.1f", v);
            return;
        }
    }
    printf(" %8s", "-");
}

// The run folders of one argument ("a,b": one row), split in place into dirs; -1 after naming an
// empty item.
static int split_runs(char *arg, char **dirs) {
    char *value = strdup(arg);
    int n = cli_split_list("petal runs", "run", value ? value : "", arg, dirs, MAX_JOINED);
    free(value);
    return n;
}

static int print_row(char *arg, char *const *metrics, int n_metrics) {
    json_value *runs[MAX_JOINED];
    int n = 0, rc = 0;
    const char *first = arg;
    char *dir_list[MAX_JOINED];
    int n_dirs = split_runs(arg, dir_list);
    for (int k = 0; k < n_dirs; k++) {
        const char *dir = dir_list[k];
        char path[4096];
        snprintf(path, sizeof path, "%s/summary.json", dir);
        if (json_parse_file(path, &runs[n]) != PETAL_OK) {
            fprintf(stderr, "petal runs: %s\n", petal_error_message());
            rc = 1;
            break;
        }
        n++;
    }
    if (!rc && n > 0) {
        const char *methods = "?";
        int64_t trainable = 0;
        double seconds = 0, s;
        json_get_string(runs[0], "methods", &methods, NULL);
        json_get_int(runs[0], "trainable", &trainable);
        for (int r = 0; r < n; r++)
            if (json_get_number(runs[r], "train_seconds", &s) == PETAL_OK) seconds += s;
        const char *name = strrchr(first, '/');
        char count[32];
        printf("%-28s %-10s %12s", name && name[1] ? name + 1 : first, methods,
               petl_format_count(trainable, count, sizeof count));
        for (int i = 0; i < n_metrics; i++) print_metric(runs, n, metrics[i]);
        printf(" %8.1f\n", seconds);
    }
    for (int r = 0; r < n; r++) json_free(runs[r]);
    return rc;
}

// 0, or 2 after printing what is wrong: no folder, an option other than --metrics, no value.
static int check_args(int argc, char **argv) {
    int n_dirs = 0;
    for (int i = 1; i < argc; i++) {
        bool metrics = strcmp(argv[i], "--metrics") == 0;
        if ((argv[i][0] == '-' && !metrics) || (metrics && i + 1 == argc)) {
            fprintf(stderr, "petal runs: %s '%s'\nusage: %s\n",
                    metrics ? "missing value for" : "unknown option", argv[i], cmd_runs_usage);
            return 2;
        }
        i += metrics;
        n_dirs += !metrics;
    }
    if (n_dirs > 0) return 0;
    fprintf(stderr, "petal runs: no RUN_DIR given\nusage: %s\n", cmd_runs_usage);
    return 2;
}

int cmd_runs(int argc, char **argv) {
    char list[512];
    snprintf(list, sizeof list, "%s", cli_option(argc, argv, "--metrics", DEFAULT_METRICS));
    char *metrics[32];
    int rc = check_args(argc, argv);
    if (rc) return rc;
    const char *given = cli_option(argc, argv, "--metrics", DEFAULT_METRICS);
    int n_metrics = cli_split_list("petal runs", "--metrics", given, list, metrics, 32);
    if (n_metrics < 0) return 2;
    for (int i = 1; i < argc; i++) { // every row's list checked before the table starts
        char *copy = strdup(argv[i]), *dirs[MAX_JOINED];
        bool bad = strcmp(argv[i], "--metrics") != 0 && copy && split_runs(copy, dirs) < 0;
        i += strcmp(argv[i], "--metrics") == 0;
        free(copy);
        if (bad) return 2;
    }
    printf("%-28s %-10s %12s", "run", "methods", "trainable");
    for (int i = 0; i < n_metrics; i++) printf(" %8s", metrics[i]);
    printf(" %8s\n", "train s");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--metrics") == 0) {
            i++;
            continue;
        }
        rc |= print_row(argv[i], metrics, n_metrics);
    }
    return rc;
}
