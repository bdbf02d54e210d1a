// Choosing the CPU path (tensor/cpu/cpu_path.h) and dispatching the narrow GEMMs to it.
#include "tensor/cpu/cpu_path.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/cpu/cpu_kernels.h"

static const cpu_path_kernels *const path_kernels[CPU_PATH_COUNT] = {
    [CPU_PATH_GENERIC] = &cpu_path_generic_kernels,
    [CPU_PATH_AVX2] = &cpu_path_avx2_kernels,
    [CPU_PATH_AVX512] = &cpu_path_avx512_kernels,
};

// -1 until a path is chosen. Kernels read it from several threads; any two racing first calls
// choose the same path.
static _Atomic int active = -1;

const char *cpu_path_name(cpu_path path) {
    return path_kernels[path]->name;
}

// The x86-64 levels the path TUs are compiled for (CMakeLists.txt), by the features that define
// them (the checks include the OS's support for the wider registers). Spelled out because clang
// before 16 knows no "x86-64-v3"; the rest of a level (v3's F16C, LZCNT, MOVBE; v2's SSSE3) came
// on every CPU with the features checked.
bool cpu_path_supported(cpu_path path) {
    __builtin_cpu_init();
    bool v2 = __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("popcnt");
    bool v3 = v2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
              __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
    bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
              __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
              __builtin_cpu_supports("avx512cd");
    return path == CPU_PATH_GENERIC ? v2 : path == CPU_PATH_AVX2 ? v3 : v4;
}

petal_status cpu_path_parse(const char *name, cpu_path *path) {
    for (int p = 0; p < CPU_PATH_COUNT; p++)
        if (strcmp(name, cpu_path_name((cpu_path)p)) == 0) {
            *path = (cpu_path)p;
            return PETAL_OK;
        }
    return petal_error(PETAL_ERR_ARG, "PETAL_CPU='%s': expected generic, avx2 or avx512", name);
}

petal_status cpu_path_set(cpu_path path) {
    if (!cpu_path_supported(path))
        return petal_error(PETAL_ERR_DEVICE,
                           "PETAL_CPU=%s: this CPU lacks the instructions of the %s path (%s)",
                           cpu_path_name(path), cpu_path_name(path),
                           path == CPU_PATH_AVX512 ? "x86-64-v4: AVX-512 F, BW, CD, DQ, VL"
                           : path == CPU_PATH_AVX2 ? "x86-64-v3: AVX2, FMA, BMI1, BMI2"
                                                   : "x86-64-v2: SSE4.2, POPCNT");
    atomic_store(&active, (int)path);
    return PETAL_OK;
}

petal_status cpu_path_init(void) {
    if (atomic_load(&active) >= 0) return PETAL_OK;
    const char *env = getenv("PETAL_CPU");
    if (env && *env) {
        cpu_path path;
        petal_status st = cpu_path_parse(env, &path);
        return st != PETAL_OK ? st : cpu_path_set(path);
    }
    int best = CPU_PATH_AVX512;
    while (best > CPU_PATH_GENERIC && !cpu_path_supported((cpu_path)best)) best--;
    return cpu_path_set((cpu_path)best); // refused below x86-64-v2 (CPUs from before 2009)
}

cpu_path cpu_path_active(void) {
    int path = atomic_load(&active);
    if (path >= 0) return (cpu_path)path;
    petal_status st = cpu_path_init();
    PETAL_CHECK(st == PETAL_OK, "%s", petal_error_message());
    return (cpu_path)atomic_load(&active);
}

const cpu_path_kernels *cpu_path_kernels_active(void) {
    return path_kernels[cpu_path_active()];
}

bool cpu_sgemm_narrow(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                      float *c, int64_t ldc) {
    cpu_sgemm_narrow_fn fn = cpu_path_kernels_active()->sgemm_narrow;
    return fn && fn(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
