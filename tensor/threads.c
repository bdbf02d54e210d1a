#include "tensor/threads.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/blas.h"
#include "tensor/error.h"

#ifdef _OPENMP
#include <omp.h>
#endif

void openblas_set_num_threads(int num_threads);

static int n_threads;

void threads_set(int n) {
    PETAL_CHECK(n >= 1, "threads_set: need at least one thread, got %d", n);
    n_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

void threads_init(void) {
    if (n_threads > 0) return;
    const char *env = getenv("PETAL_NUM_THREADS");
    int n = 1;
#ifdef _OPENMP
    n = omp_get_max_threads();
#endif
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        PETAL_CHECK(*end == '\0' && v >= 1 && v <= 4096,
                    "PETAL_NUM_THREADS='%s': expected a positive integer", env);
        n = (int)v;
    }
    threads_set(n);
}

int threads_get(void) {
    threads_init();
    return n_threads;
}

// argv of this process from /proc/self/cmdline (NUL-separated) into buf; NULL if unreadable.
static char **own_argv(char *buf, size_t size) {
    FILE *f = fopen("/proc/self/cmdline", "rb");
    if (!f) return NULL;
    size_t n = fread(buf, 1, size - 1, f);
    bool whole = feof(f);
    fclose(f);
    if (!whole || n == 0) return NULL;
    buf[n] = '\0';
    size_t argc = 0;
    for (size_t i = 0; i < n; i++) argc += buf[i] == '\0';
    char **argv = calloc(argc + 1, sizeof *argv);
    if (!argv) return NULL;
    for (size_t i = 0, a = 0; i < n && a < argc; i += strlen(buf + i) + 1) argv[a++] = buf + i;
    return argv;
}

// Sets name=value unless name is set; whether it did.
static bool set_default(const char *name, const char *value) {
    return value && !getenv(name) && setenv(name, value, 1) == 0;
}

void threads_reexec(void) {
    bool blas = set_default("OPENBLAS_CORETYPE", blas_core_advice());
    bool spin = !getenv("OMP_WAIT_POLICY") && set_default("GOMP_SPINCOUNT", "10000");
    if (!blas && !spin) return;
    static char buf[1 << 16], self[4096];
    char **argv = own_argv(buf, sizeof buf);
    // The program's own path, not /proc/self/exe: the process keeps its name (ps, top, gdb).
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (argv && len > 0) {
        self[len] = '\0';
        execv(self, argv);
    }
    // The exec failed: go on as we are (OpenBLAS's choice is warned about at the first GEMM).
    free(argv);
    if (blas) unsetenv("OPENBLAS_CORETYPE");
    if (spin) unsetenv("GOMP_SPINCOUNT");
}
