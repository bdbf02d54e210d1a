// The `petal` command: one subcommand per file (tools/cmd_*.c).
#pragma once

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); // argv[0] is the subcommand name
} cli_command;

int cmd_gradcheck(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_params(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_inspect(int argc, char **argv);

// Option parsing shared by subcommands: "--name value" pairs.
const char *cli_option(int argc, char **argv, const char *name, const char *fallback);
long cli_option_long(int argc, char **argv, const char *name, long fallback);
// Aborts with a usage message when argv has an option not in `known` (NULL-terminated).
int cli_check_options(int argc, char **argv, const char *const *known, const char *usage);
