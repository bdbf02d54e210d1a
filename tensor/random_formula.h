// The value of element i of a random fill and the dropout mask, written once for every backend
// (like tensor/elementwise.h): the CPU loop (tensor/cpu/cpu_random.c) and the CUDA kernel
// (tensor/cuda/cuda_random.cu) call these, so a seed gives the same tensor on every device, up to
// the last bits of libm's and CUDA's log, cos and erf.
#pragma once

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "tensor/backend.h"
#include "tensor/philox.h"

// Element i of a random stream: U[p0, p1), N(p0, p1^2), or N(p0, p1^2) truncated to [p2, p3].
PETAL_HD static inline double random_value(random_kind kind, rng_state rng, int64_t i,
                                           const double *p) {
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

// Dropout keeps an element (with drop probability p) when the uniform of its Philox word is at
// least p; element i reads word i of the stream.
PETAL_HD static inline bool random_keep_word(uint32_t w, double p) {
    return philox_unit(w) >= p;
}

PETAL_HD static inline bool random_keep(rng_state rng, int64_t i, double p) {
    return random_keep_word(philox_u32(rng.seed, rng.offset, (uint64_t)i), p);
}
