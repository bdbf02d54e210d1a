// OpenBLAS's kernel choice (tensor/blas.h).
#include "tensor/blas.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "tensor/cpu/cpu_path.h"

char *openblas_get_corename(void);

const char *blas_core_name(void) {
    return openblas_get_corename();
}

// OpenBLAS's kernel sets without AVX2 GEMM kernels: on a CPU with AVX2 they are a misdetection.
static bool core_predates_avx2(const char *core) {
    static const char *const old[] = {
        "Prescott",    "Core2",        "Penryn",     "Dunnington", "Nehalem", "Atom",
        "Sandybridge", "Katmai",       "Coppermine", "Northwood",  "Banias",  "Athlon",
        "Opteron",     "Opteron_SSE3", "Barcelona",  "Bobcat",     "Nano",    "Unknown"};
    for (size_t i = 0; i < sizeof old / sizeof *old; i++)
        if (strcasecmp(core, old[i]) == 0) return true;
    return false;
}

const char *blas_core_advice(void) {
    if (!core_predates_avx2(blas_core_name())) return NULL;
    return cpu_path_supported(CPU_PATH_AVX512) ? "SkylakeX"
           : cpu_path_supported(CPU_PATH_AVX2) ? "Haswell"
                                               : NULL;
}

// argv of this process from /proc/self/cmdline (NUL-separated); NULL if unreadable.
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

void blas_core_reexec(void) {
    const char *core = blas_core_advice();
    if (!core || getenv("OPENBLAS_CORETYPE")) return;
    static char buf[1 << 16];
    char **argv = own_argv(buf, sizeof buf);
    if (!argv || setenv("OPENBLAS_CORETYPE", core, 1) != 0) {
        free(argv);
        return;
    }
    // The program's own path, not /proc/self/exe: the process keeps its name (ps, top, gdb).
    static char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len > 0) {
        self[len] = '\0';
        execv(self, argv);
    }
    unsetenv("OPENBLAS_CORETYPE"); // the exec failed: go on as we are (and warn at the first GEMM)
    free(argv);
}

bool blas_core_warn_once(void) {
    static _Atomic int state =
        -1; // -1: not looked at yet; 0: OpenBLAS's choice is right; 1: warned
    int seen = atomic_load(&state);
    if (seen >= 0) return seen;
    const char *core = blas_core_advice();
    if (!atomic_compare_exchange_strong(&state, &seen, core != NULL)) return atomic_load(&state);
    if (!core) return false;
    const char *set = getenv("OPENBLAS_CORETYPE");
    fprintf(stderr,
            "petal: warning: OpenBLAS runs its %s kernels on this CPU, which has %s (%s%s): GEMMs "
            "run several times slower than they can; set OPENBLAS_CORETYPE=%s (or call "
            "blas_core_reexec first in main)\n",
            blas_core_name(), cpu_path_supported(CPU_PATH_AVX512) ? "AVX-512" : "AVX2",
            set ? "OPENBLAS_CORETYPE=" : "a CPU model newer than this OpenBLAS", set ? set : "",
            core);
    return true;
}
