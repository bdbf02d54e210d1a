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

// A fill's parameters with what every element shares computed once: p0, p1 as given and, for
// the truncated normal, the normal CDF at its bounds p2, p3.
typedef struct {
    double p[4];
    double cdf_lo, cdf_hi;
} random_params;

PETAL_HD static inline random_params random_prepare(random_kind kind, const double *p) {
    random_params r = {{p[0], p[1], 0, 0}, 0, 0};
    if (kind == RANDOM_TRUNC_NORMAL) {
        r.p[2] = p[2], r.p[3] = p[3];
        r.cdf_lo = 0.5 * (1 + erf((p[2] - p[0]) / p[1] / M_SQRT2));
        r.cdf_hi = 0.5 * (1 + erf((p[3] - p[0]) / p[1] / M_SQRT2));
    }
    return r;
}

// The value of an element from its Philox words: U[p0, p1) and the truncated normal read w0;
// N(p0, p1^2) reads w0 and w1 (Box-Muller; u1 in (0, 1] keeps the log finite). The truncated
// normal is N(p0, p1^2) restricted to [p2, p3] by inverse CDF: u uniform in [cdf(lo), cdf(hi)],
// x = mean + std sqrt2 erfinv(2u-1).
PETAL_HD static inline double random_of_words(random_kind kind, const random_params *r, uint32_t w0,
                                              uint32_t w1) {
    const double *p = r->p;
    if (kind == RANDOM_UNIFORM) return p[0] + (p[1] - p[0]) * philox_unit(w0);
    if (kind == RANDOM_NORMAL) {
        double u1 = 1.0 - philox_unit(w0), u2 = philox_unit(w1);
        return p[0] + p[1] * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
    }
    double u = r->cdf_lo + (r->cdf_hi - r->cdf_lo) * philox_unit(w0);
    double x = p[0] + p[1] * M_SQRT2 * ew_erfinv(2 * u - 1);
    return x < p[2] ? p[2] : (x > p[3] ? p[3] : x);
}

// Element i of a random stream: U[p0, p1), N(p0, p1^2), or N(p0, p1^2) truncated to [p2, p3].
// The normal's element i reads outputs 2i and 2i + 1, the others output i.
PETAL_HD static inline double random_value(random_kind kind, rng_state rng, int64_t i,
                                           const random_params *r) {
    uint64_t w = kind == RANDOM_NORMAL ? 2 * (uint64_t)i : (uint64_t)i;
    return random_of_words(kind, r, philox_u32(rng.seed, rng.offset, w),
                           kind == RANDOM_NORMAL ? philox_u32(rng.seed, rng.offset, w + 1) : 0);
}

// Dropout keeps an element (with drop probability p) when the uniform of its Philox word is at
// least p; element i reads word i of the stream.
PETAL_HD static inline bool random_keep_word(uint32_t w, double p) {
    return philox_unit(w) >= p;
}

PETAL_HD static inline bool random_keep(rng_state rng, int64_t i, double p) {
    return random_keep_word(philox_u32(rng.seed, rng.offset, (uint64_t)i), p);
}
