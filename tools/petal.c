// petal: command-line entry point. `petal help` lists the subcommands.
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/threads.h"
#include "tools/cli.h"

static const cli_command commands[] = {
    {"gradcheck", "check every op's backward rule against finite differences", cmd_gradcheck_usage,
     cmd_gradcheck},
    {"bench", "benchmarks: gemm, block, vit, blip-itm, train, allreduce", cmd_bench_usage,
     cmd_bench},
    {"params", "count the parameters a PETL method trains on a BLIP model", cmd_params_usage,
     cmd_params},
    {"convert", "a .pth or .safetensors state dict -> a petal HDF5 checkpoint", cmd_convert_usage,
     cmd_convert},
    {"inspect", "the tensors of a .h5, .pth or .safetensors file", cmd_inspect_usage, cmd_inspect},
    {"itm", "image-text matching and ITC scores of an image and a text", cmd_itm_usage, cmd_itm},
    {"caption", "a caption for an image (beam search)", cmd_caption_usage, cmd_caption},
    {"vqa", "the answer to a question about an image (generated or ranked)", cmd_vqa_usage,
     cmd_vqa},
    {"train", "train a PETL experiment from a YAML config into a run folder", cmd_train_usage,
     cmd_train},
    {"eval", "evaluate a trained model or PETL file on a config's split", cmd_eval_usage, cmd_eval},
    {"data", "data sets: `petal data synth DIR` writes the synthetic vision-language set",
     cmd_data_usage, cmd_data},
    {"frames", "the frames a video model sees: sampled, decoded, resized, as PNG files",
     cmd_frames_usage, cmd_frames},
    {"plot", "loss, learning rate and eval metrics of a run folder as PNG plots (gnuplot)",
     cmd_plot_usage, cmd_plot},
    {"ablate", "a grid of experiments over config keys, with seeds, tables and plots",
     cmd_ablate_usage, cmd_ablate},
    {"runs", "a table of finished runs: trainable params, test metrics, train time", cmd_runs_usage,
     cmd_runs},
    {"grads", "record or compare the gradients of one training batch (regression files)",
     cmd_grads_usage, cmd_grads},
    {"diff", "per-tensor differences of two petal HDF5 files", cmd_diff_usage, cmd_diff},
    {"score", "caption metrics of a results file: `petal score captions --pred P --ann A`",
     cmd_score_usage, cmd_score},
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

int cli_split_list(const char *cmd, const char *name, const char *value, char *list, char **items,
                   int max) {
    int n = 0;
    for (char *item = list;; n++) {
        char *comma = strchr(item, ',');
        if (comma) *comma = '\0';
        if (n == max) {
            fprintf(stderr, "%s: %s '%s': more than %d items\n", cmd, name, value, max);
            return -1;
        }
        if (!*item) {
            fprintf(stderr, "%s: %s '%s': item %d is empty\n", cmd, name, value, n + 1);
            return -1;
        }
        items[n] = item;
        if (!comma) return n + 1;
        item = comma + 1;
    }
}

long cli_option_long(int argc, char **argv, const char *name, long fallback) {
    long x;
    if (cli_option_range(argc, argv, name, fallback, LONG_MIN, LONG_MAX, &x)) exit(2);
    return x;
}

int cli_synopsis_len(const char *usage) {
    return (int)strcspn(usage, "\n");
}

int cli_check_file_args(int argc, char **argv, int n_files, const char *usage) {
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' || i > n_files) {
            fprintf(stderr, "petal %s: unexpected argument '%s'\nusage: %s\n", argv[0], argv[i],
                    usage);
            return 2;
        }
    if (argc - 1 == n_files) return 0;
    fprintf(stderr, "petal %s: expected %d file%s, got %d\nusage: %s\n", argv[0], n_files,
            n_files == 1 ? "" : "s", argc - 1, usage);
    return 2;
}

int cli_check_options(int argc, char **argv, const char *const *known, const char *usage) {
    for (int i = 1; i < argc; i += 2) {
        bool ok = false;
        for (const char *const *k = known; *k && !ok; k++) ok = strcmp(argv[i], *k) == 0;
        if (!ok || i + 1 >= argc) {
            fprintf(stderr, "petal %s: %s '%s' (usage: %.*s)\n", argv[0],
                    ok ? "missing value for" : "unknown option", argv[i], cli_synopsis_len(usage),
                    usage);
            return 2;
        }
    }
    return 0;
}

static void list_commands(FILE *f) {
    fprintf(f, "usage: petal <command> [options]   (petal help <command>: its options)\n\n"
               "commands:\n");
    for (int i = 0; i < n_commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

static const cli_command *find_command(const char *name) {
    for (int i = 0; i < n_commands; i++)
        if (strcmp(name, commands[i].name) == 0) return &commands[i];
    return NULL;
}

// --help or -h anywhere after the command (`petal bench gemm --help` too) asks for its help.
static bool wants_help(int argc, char **argv) {
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return true;
    return false;
}

// petal help [CMD]
static int help(int argc, char **argv) {
    const cli_command *c = argc > 2 ? find_command(argv[2]) : NULL;
    if (argc > 3 || (argc == 3 && !c)) {
        fprintf(stderr, "petal help: unknown command '%s'\n", argv[2]);
        list_commands(stderr);
        return 2;
    }
    if (c)
        printf("usage: %s\n", c->usage);
    else
        list_commands(stdout);
    return 0;
}

int main(int argc, char **argv) {
    threads_reexec();
    if (argc < 2) {
        list_commands(stderr);
        return 2;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0)
        return help(argc, argv);
    const cli_command *c = find_command(argv[1]);
    if (!c) {
        fprintf(stderr, "petal: unknown command '%s'\n", argv[1]);
        list_commands(stderr);
        return 2;
    }
    if (wants_help(argc, argv)) {
        printf("usage: %s\n", c->usage);
        return 0;
    }
    return c->run(argc - 1, argv + 1);
}
