// OpenBLAS's kernel choice (tensor/blas.h).
#include "tensor/blas.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

bool blas_core_warn_once(void) {
    // -1: not looked at yet; 0: OpenBLAS's choice is right; 1: warned
    static _Atomic int state = -1;
    int seen = atomic_load(&state);
    if (seen >= 0) return seen;
    const char *core = blas_core_advice();
    if (!atomic_compare_exchange_strong(&state, &seen, core != NULL)) return atomic_load(&state);
    if (!core) return false;
    const char *set = getenv("OPENBLAS_CORETYPE");
    fprintf(stderr,
            "petal: warning: OpenBLAS runs its %s kernels on this CPU, which has %s (%s%s): GEMMs "
            "run several times slower than they can; set OPENBLAS_CORETYPE=%s (or call "
            "threads_reexec first in main)\n",
            blas_core_name(), cpu_path_supported(CPU_PATH_AVX512) ? "AVX-512" : "AVX2",
            set ? "OPENBLAS_CORETYPE=" : "a CPU model newer than this OpenBLAS", set ? set : "",
            core);
    return true;
}
