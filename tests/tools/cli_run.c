#include "tests/tools/cli_run.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/buffer.h"

void run_result_free(run_result *r) {
    free(r->out);
    free(r->err);
}

char *slurp(const char *path) {
    char *data;
    size_t len;
    ck_assert_msg(buffer_read_file(path, &data, &len) == PETAL_OK, "%s", petal_error_message());
    return data;
}

run_result run_program(const char *const *argv) {
    const char *out = test_dir_path("stdout"), *err = test_dir_path("stderr");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0) _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return (run_result){WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
}

// Runs the petal binary with args (NULL-terminated, the subcommand first).
run_result run_petal(const char *const *args) {
    const char *argv[32] = {PETAL_BIN};
    int n = 1;
    for (; args[n - 1]; n++) {
        ck_assert_int_lt(n, 31);
        argv[n] = args[n - 1];
    }
    argv[n] = NULL;
    return run_program(argv);
}

// Runs and expects success; returns stdout (malloc'd).
char *run_ok(const char *const *args) {
    run_result r = run_petal(args);
    ck_assert_msg(r.status == 0, "petal %s exited with %d: %s", args[0], r.status, r.err);
    free(r.err);
    return r.out;
}
