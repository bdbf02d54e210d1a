// petal: command-line entry point. `petal help` lists the subcommands.
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli.h"

static const cli_command commands[] = {
    {"gradcheck", "check every op's backward rule against finite differences", cmd_gradcheck},
    {"bench", "benchmarks: gemm, block, vit, blip-itm, train", cmd_bench},
    {"params", "count the parameters a PETL method trains on a BLIP model", cmd_params},
    {"convert", "a .pth or .safetensors state dict -> a petal HDF5 checkpoint", cmd_convert},
    {"inspect", "the tensors of a .h5, .pth or .safetensors file", cmd_inspect},
    {"itm", "image-text matching and ITC scores of an image and a text", cmd_itm},
    {"caption", "a caption for an image (beam search)", cmd_caption},
    {"vqa", "the answer to a question about an image (generated or ranked)", cmd_vqa},
    {"train", "train a PETL experiment from a YAML config into a run folder", cmd_train},
    {"eval", "evaluate a trained model or PETL file on a config's split", cmd_eval},
    {"data", "data sets: `petal data synth DIR` writes the synthetic vision-language set",
     cmd_data},
    {"plot", "loss, learning rate and eval metrics of a run folder as PNG plots (gnuplot)",
     cmd_plot},
    {"ablate", "a grid of experiments over config keys, with seeds, tables and plots", cmd_ablate},
    {"runs", "a table of finished runs: trainable params, test metrics, train time", cmd_runs},
    {"grads", "record or compare the gradients of one training batch (regression files)",
     cmd_grads},
    {"diff", "per-tensor differences of two petal HDF5 files", cmd_diff},
    {"score", "caption metrics of a results file: `petal score captions --pred P --ann A`",
     cmd_score},
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

const char *cli_option(int argc, char **argv, const char *name, const char *fallback) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return fallback;
}

int cli_option_range(int argc, char **argv, const char *name, long fallback, long lo, long hi,
                     long *out) {
    const char *v = cli_option(argc, argv, name, NULL);
    *out = fallback;
    if (!v) return 0;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (*v && *end == '\0' && errno == 0 && x >= lo && x <= hi) {
        *out = x;
        return 0;
    }
    if (lo == LONG_MIN && hi == LONG_MAX)
        fprintf(stderr, "petal %s: option %s expects an integer, got '%s'\n", argv[0], name, v);
    else
        fprintf(stderr, "petal %s: option %s expects an integer from %ld to %ld, got '%s'\n",
                argv[0], name, lo, hi, v);
    return 2;
}

long cli_option_long(int argc, char **argv, const char *name, long fallback) {
    long x;
    if (cli_option_range(argc, argv, name, fallback, LONG_MIN, LONG_MAX, &x)) exit(2);
    return x;
}

int cli_check_options(int argc, char **argv, const char *const *known, const char *usage) {
    for (int i = 1; i < argc; i += 2) {
        bool ok = false;
        for (const char *const *k = known; *k && !ok; k++) ok = strcmp(argv[i], *k) == 0;
        if (!ok || i + 1 >= argc) {
            fprintf(stderr, "petal %s: %s '%s' (usage: %s)\n", argv[0],
                    ok ? "missing value for" : "unknown option", argv[i], usage);
            return 2;
        }
    }
    return 0;
}

static void usage(void) {
    printf("usage: petal <command> [options]\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++)
        printf("  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    for (int i = 0; i < n_commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "petal: unknown command '%s'\n", argv[1]);
    usage();
    return 2;
}
