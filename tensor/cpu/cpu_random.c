// Random fills and dropout from Philox (tensor/philox.h). Element i reads Philox outputs that
// depend only on (seed, offset, i): the same seed gives the same tensor for any thread count.
#include <math.h>

#include "tensor/cpu/cpu_iter.h"
#include "tensor/cpu/cpu_kernels.h"
#include "tensor/error.h"
#include "tensor/philox.h"

#define U32_TO_UNIT 2.3283064365386963e-10 // 2^-32

static double truncated(double u01, const double *p) {
    // Truncated normal by inverse CDF: u uniform in [cdf(lo), cdf(hi)],
    // x = mean + std sqrt2 erfinv(2u - 1), clamped against rounding.
    double mean = p[0], std = p[1];
    double lo = 0.5 * (1 + erf((p[2] - mean) / std / M_SQRT2));
    double hi = 0.5 * (1 + erf((p[3] - mean) / std / M_SQRT2));
    double x = mean + std * M_SQRT2 * ew_erfinv(2 * (lo + (hi - lo) * u01) - 1);
    return x < p[2] ? p[2] : (x > p[3] ? p[3] : x);
}

// Writes the elements of Philox block j: uniform and truncated-normal element i reads output i;
// normal element i reads outputs 2i and 2i + 1 (Box-Muller, u1 in (0, 1] keeps the log finite).
// Each block is computed once for all the elements it feeds.
static int64_t block_values(random_kind kind, rng_state rng, int64_t j, const double *p,
                            double *v) {
    philox_block b = philox4x32_10(rng.seed, rng.offset + (uint64_t)j);
    if (kind == RANDOM_NORMAL) {
        for (int k = 0; k < 2; k++) {
            double u1 = 1.0 - b.v[2 * k] * U32_TO_UNIT, u2 = b.v[2 * k + 1] * U32_TO_UNIT;
            v[k] = p[0] + p[1] * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
        }
        return 2;
    }
    for (int k = 0; k < 4; k++) {
        double u = b.v[k] * U32_TO_UNIT;
        v[k] = kind == RANDOM_UNIFORM ? p[0] + (p[1] - p[0]) * u : truncated(u, p);
    }
    return 4;
}

void cpu_random(random_kind kind, tensor *out, rng_state rng, const double *params) {
    PETAL_CHECK(tensor_is_contiguous(out), "random fill: the output must be contiguous");
    int64_t n = tensor_numel(out), per_block = kind == RANDOM_NORMAL ? 2 : 4;
    int64_t blocks = (n + per_block - 1) / per_block;
#pragma omp parallel for if (n >= CPU_PARALLEL_GRAIN)
    for (int64_t j = 0; j < blocks; j++) {
        double v[4];
        int64_t count = block_values(kind, rng, j, params, v);
        for (int64_t k = 0; k < count && j * count + k < n; k++) {
            int64_t i = j * count + k;
            if (out->dtype == PETAL_F32)
                tensor_data_f32(out)[i] = (float)v[k];
            else
                tensor_data_f64(out)[i] = v[k];
        }
    }
}

#define DROPOUT_DEFINE(T, S)                                                                       \
    static void dropout_##S(T *out, const T *x, int64_t n, double p, rng_state rng) {              \
        T scale = (T)(1.0 / (1.0 - p));                                                            \
        _Pragma("omp parallel for if (n >= CPU_PARALLEL_GRAIN)") for (int64_t i = 0; i < n; i++)   \
            out[i] = philox_uniform(rng.seed, rng.offset, (uint64_t)i) >= p ? x[i] * scale : (T)0; \
    }
DROPOUT_DEFINE(float, f32)
DROPOUT_DEFINE(double, f64)

void cpu_dropout(tensor *out, const tensor *x, double p, rng_state rng) {
    int64_t n = tensor_numel(out);
    if (out->dtype == PETAL_F32)
        dropout_f32(tensor_data_f32(out), tensor_data_f32(x), n, p, rng);
    else
        dropout_f64(tensor_data_f64(out), tensor_data_f64(x), n, p, rng);
}
