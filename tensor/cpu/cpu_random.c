// Random fills and dropout from Philox (tensor/philox.h). Element i reads Philox outputs that
// depend only on (seed, offset, i): the same seed gives the same tensor for any thread count.
#include <math.h>

#include "tensor/cpu/cpu_iter.h"
#include "tensor/cpu/cpu_kernels.h"
#include "tensor/error.h"
#include "tensor/philox.h"

// The i-th value of a random stream, as a double.
static double random_value(random_kind kind, rng_state rng, int64_t i, const double *p) {
    if (kind == RANDOM_UNIFORM)
        return p[0] + (p[1] - p[0]) * philox_uniform(rng.seed, rng.offset, (uint64_t)i);
    if (kind == RANDOM_NORMAL) {
        // Box-Muller on outputs 2i and 2i+1; u1 in (0, 1] keeps the log finite.
        double u1 = 1.0 - philox_uniform(rng.seed, rng.offset, 2 * (uint64_t)i);
        double u2 = philox_uniform(rng.seed, rng.offset, 2 * (uint64_t)i + 1);
        return p[0] + p[1] * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
    }
    // Truncated normal by inverse CDF: u uniform in [cdf(lo), cdf(hi)], x = mean + std sqrt2
    // erfinv(2u-1).
    double mean = p[0], std = p[1];
    double lo = 0.5 * (1 + erf((p[2] - mean) / std / M_SQRT2));
    double hi = 0.5 * (1 + erf((p[3] - mean) / std / M_SQRT2));
    double u = lo + (hi - lo) * philox_uniform(rng.seed, rng.offset, (uint64_t)i);
    double x = mean + std * M_SQRT2 * ew_erfinv(2 * u - 1);
    return x < p[2] ? p[2] : (x > p[3] ? p[3] : x);
}

void cpu_random(random_kind kind, tensor *out, rng_state rng, const double *params) {
    PETAL_CHECK(tensor_is_contiguous(out), "random fill: the output must be contiguous");
    int64_t n = tensor_numel(out);
#pragma omp parallel for if (n >= CPU_PARALLEL_GRAIN)
    for (int64_t i = 0; i < n; i++) {
        double v = random_value(kind, rng, i, params);
        if (out->dtype == PETAL_F32)
            tensor_data_f32(out)[i] = (float)v;
        else
            tensor_data_f64(out)[i] = v;
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
