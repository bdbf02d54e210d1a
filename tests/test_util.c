#include "tests/test_util.h"

#include "tensor/threads.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

bool tensor_close(const char *what, const tensor *got, const double *want, double atol,
                  double rtol) {
    int64_t n = tensor_numel(got);
    double *g = malloc((size_t)(n ? n : 1) * sizeof *g);
    tensor_to_doubles(got, g);
    int64_t worst = -1;
    double worst_ratio = 0;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs(g[i] - want[i]), ratio = err / (atol + rtol * fabs(want[i]));
        if (isnan(g[i]) != isnan(want[i])) ratio = INFINITY;
        if (isnan(g[i]) && isnan(want[i])) ratio = 0;
        if (isinf(want[i]) && g[i] == want[i]) ratio = 0;
        if (ratio > worst_ratio || (worst < 0 && ratio > 1)) {
            worst_ratio = ratio;
            worst = i;
        }
    }
    bool ok = worst_ratio <= 1.0;
    if (!ok)
        fprintf(stderr,
                "%s: worst element %lld of %lld: got %.10g, want %.10g (|diff| %.3g, atol %.3g, "
                "rtol %.3g)\n",
                what, (long long)worst, (long long)n, g[worst], want[worst],
                fabs(g[worst] - want[worst]), atol, rtol);
    free(g);
    return ok;
}

bool tensors_close(const char *what, const tensor *got, const tensor *want, double atol,
                   double rtol) {
    if (!tensor_same_shape(got, want)) {
        char a[SHAPE_STR_MAX], b[SHAPE_STR_MAX];
        fprintf(stderr, "%s: shape %s, want %s\n", what,
                shape_str(got->ndim, got->shape, a, sizeof a),
                shape_str(want->ndim, want->shape, b, sizeof b));
        return false;
    }
    int64_t n = tensor_numel(want);
    double *w = malloc((size_t)(n ? n : 1) * sizeof *w);
    tensor_to_doubles(want, w);
    bool ok = tensor_close(what, got, w, atol, rtol);
    free(w);
    return ok;
}

double tensor_finite_scale(const tensor *t) {
    double scale = 1;
    for (int64_t i = 0; i < tensor_numel(t); i++) {
        double v = tensor_get_flat(t, i);
        if (isfinite(v)) scale = fmax(scale, fabs(v));
    }
    return scale;
}

bool tensors_close_scaled(const char *what, const tensor *got, const tensor *want, double tol) {
    return tensors_close(what, got, want, tol * tensor_finite_scale(want), tol);
}

bool aborts_with(void (*fn)(void), const char *expect) {
    char path[] = "/tmp/petal-abort-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return false;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 2);
        fn();
        _exit(0); // no abort: the parent reports it
    }
    int status = 0;
    waitpid(pid, &status, 0);
    char buf[4096] = {0};
    lseek(fd, 0, SEEK_SET);
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    unlink(path);
    if (got < 0) got = 0;
    buf[got] = '\0';
    bool aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    bool matched = strstr(buf, expect) != NULL;
    if (!aborted || !matched)
        fprintf(stderr, "expected an abort with \"%s\"; %s, stderr was:\n%s\n", expect,
                aborted ? "it aborted" : "it did not abort", buf);
    return aborted && matched;
}

static char test_dir[64];
static char *test_paths[256];
static int n_test_paths;

void test_dir_make(void) {
    strcpy(test_dir, "/tmp/petal-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(test_dir));
}

void test_dir_remove(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_dir);
    ck_assert_int_eq(system(cmd), 0);
    for (int i = 0; i < n_test_paths; i++) free(test_paths[i]);
    n_test_paths = 0;
}

const char *test_dir_path(const char *name) {
    ck_assert_int_lt(n_test_paths, 256);
    size_t n = strlen(test_dir) + strlen(name) + 2;
    char *p = test_paths[n_test_paths++] = malloc(n);
    snprintf(p, n, "%s/%s", test_dir, name);
    return p;
}

TCase *tcase_with_timeout(const char *name, double seconds) {
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, seconds);
    return tc;
}

// Before main (and its forks): every suite's GEMMs at the speed the CPU allows (tensor/blas.h).
__attribute__((constructor)) static void blas_core_at_start(void) {
    threads_reexec();
}

int run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

const char *test_dir_write(const char *name, const char *text) {
    const char *path = test_dir_path(name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}
