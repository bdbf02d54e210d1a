// Runs the petal command as its own process from a Check test (tests/tools suites are built with
// PETAL_BIN, the path of the petal binary). Output goes to files in the test's directory.
#pragma once

#include "tests/test_util.h"

// NULL-terminated lists of arguments and of what a message must name.
#define ARGS(...)  ((const char *[]){__VA_ARGS__, NULL})
#define NAMES(...) ((const char *const[]){__VA_ARGS__, NULL})

typedef struct {
    int status; // the exit status, or -1 when the program did not exit normally
    char *out, *err;
} run_result;

void run_result_free(run_result *r);
// The whole file (malloc'd), failing the test if it cannot be read.
char *slurp(const char *path);
// Runs argv[0] (a path) with argv (NULL-terminated), its output into files of the test directory.
run_result run_program(const char *const *argv);
// Runs the petal binary with args (NULL-terminated, the subcommand first).
run_result run_petal(const char *const *args);
// Runs and expects success; returns stdout (malloc'd).
char *run_ok(const char *const *args);
