// The `petal` command: one subcommand per file (tools/cmd_*.c).
#pragma once

typedef struct {
    const char *name;
    const char *summary;
    // The command's help: the synopsis on the first line (printed after "usage: "), then every
    // option with its default, then an "example: " line. `petal CMD --help` prints it; usage
    // errors print it (or its first line, where the message must stay one line).
    const char *usage;
    int (*run)(int argc, char **argv); // argv[0] is the subcommand name
} cli_command;

extern const char cmd_gradcheck_usage[], cmd_bench_usage[], cmd_params_usage[], cmd_convert_usage[],
    cmd_inspect_usage[], cmd_itm_usage[], cmd_caption_usage[], cmd_vqa_usage[], cmd_train_usage[],
    cmd_eval_usage[], cmd_data_usage[], cmd_plot_usage[], cmd_score_usage[], cmd_runs_usage[],
    cmd_ablate_usage[], cmd_grads_usage[], cmd_diff_usage[], cmd_frames_usage[];

int cmd_gradcheck(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_params(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_itm(int argc, char **argv);
int cmd_caption(int argc, char **argv);
int cmd_vqa(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_runs(int argc, char **argv);
int cmd_ablate(int argc, char **argv);
int cmd_grads(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_frames(int argc, char **argv);

// Option parsing shared by subcommands: "--name value" pairs.
const char *cli_option(int argc, char **argv, const char *name, const char *fallback);
// Exits with status 2 when the value is not an integer.
long cli_option_long(int argc, char **argv, const char *name, long fallback);
// The integer value of option `name` (fallback when absent) into *out: 0, or 2 after printing one
// line naming the option and the range when the value is not an integer in [lo, hi].
int cli_option_range(int argc, char **argv, const char *name, long fallback, long lo, long hi,
                     long *out);
// Splits `list`, a writable copy of option `name`'s value `value`, at its commas in place into
// items (at most max). Returns the number of items, or -1 after printing one line, "<cmd>: <name>
// '<value>': item K is empty" (4,,8 or 4,: skipping it would silently drop a row) or "more than
// <max> items".
int cli_split_list(const char *cmd, const char *name, const char *value, char *list, char **items,
                   int max);
// The length of the first line of a usage text: its synopsis.
int cli_synopsis_len(const char *usage);
// For commands that take exactly n_files paths and no options: 0, or 2 after printing the
// unexpected argument (or the missing count) and the usage.
int cli_check_file_args(int argc, char **argv, int n_files, const char *usage);
// Returns 2 after printing one line (with the usage's synopsis) when argv has an option not in
// `known` (NULL-terminated) or an option without its value; 0 otherwise.
int cli_check_options(int argc, char **argv, const char *const *known, const char *usage);
