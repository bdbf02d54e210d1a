#include "tensor/threads.h"

#include <stdlib.h>

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
