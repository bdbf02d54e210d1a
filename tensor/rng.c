#include "tensor/rng.h"

#include <math.h>

#include "tensor/error.h"

static rng_generator default_generator = {0, 0};

rng_generator *rng_default(void) {
    return &default_generator;
}

void rng_manual_seed(uint64_t seed) {
    default_generator.seed = seed;
    default_generator.offset = 0;
}

rng_state rng_reserve(rng_generator *g, int64_t n) {
    if (!g) g = &default_generator;
    rng_state s = {g->seed, g->offset};
    // Normals use two outputs per element (Box-Muller), so reserve 2n outputs: n/2 blocks.
    g->offset += (uint64_t)(n + 1) / 2 + 1;
    return s;
}

static void fill_random(tensor *t, random_kind kind, const double *params, rng_generator *g,
                        const char *op) {
    PETAL_CHECK(dtype_is_float(t->dtype), "%s: the tensor is %s; random fills need f32 or f64", op,
                dtype_name(t->dtype));
    rng_state rng = rng_reserve(g, tensor_numel(t));
    tensor_bump_version(t);
    if (tensor_is_contiguous(t)) {
        backend_of(t)->random(kind, t, rng, params);
        return;
    }
    // Element i is the i-th in row-major order whatever the layout, so fill a contiguous copy.
    tensor *tmp = tensor_empty_like(t);
    backend_of(t)->random(kind, tmp, rng, params);
    backend_of(t)->copy(t, tmp);
    tensor_free(tmp);
}

void tensor_uniform_(tensor *t, double lo, double hi, rng_generator *g) {
    PETAL_CHECK(lo <= hi, "tensor_uniform_: lo %g > hi %g", lo, hi);
    const double p[2] = {lo, hi};
    fill_random(t, RANDOM_UNIFORM, p, g, "tensor_uniform_");
}

void tensor_normal_(tensor *t, double mean, double std, rng_generator *g) {
    PETAL_CHECK(std >= 0, "tensor_normal_: negative std %g", std);
    const double p[2] = {mean, std};
    fill_random(t, RANDOM_NORMAL, p, g, "tensor_normal_");
}

void tensor_trunc_normal_(tensor *t, double mean, double std, double lo, double hi,
                          rng_generator *g) {
    PETAL_CHECK(std > 0 && lo < hi,
                "tensor_trunc_normal_: need std > 0 and lo < hi (std %g, "
                "[%g, %g])",
                std, lo, hi);
    const double p[4] = {mean, std, lo, hi};
    fill_random(t, RANDOM_TRUNC_NORMAL, p, g, "tensor_trunc_normal_");
}

void init_fans(const tensor *w, int64_t *fan_in, int64_t *fan_out) {
    PETAL_CHECK(w->ndim >= 2, "init_fans: a %d-d tensor has no fan-in/fan-out (need >= 2 dims)",
                w->ndim);
    int64_t receptive = 1;
    for (int d = 2; d < w->ndim; d++) receptive *= w->shape[d];
    *fan_in = w->shape[1] * receptive;
    *fan_out = w->shape[0] * receptive;
}

void init_kaiming_uniform_(tensor *w, double a, rng_generator *g) {
    int64_t fan_in, fan_out;
    init_fans(w, &fan_in, &fan_out);
    double bound = sqrt(2.0 / (1.0 + a * a)) * sqrt(3.0 / (double)fan_in);
    tensor_uniform_(w, -bound, bound, g);
}

void init_xavier_uniform_(tensor *w, double gain, rng_generator *g) {
    int64_t fan_in, fan_out;
    init_fans(w, &fan_in, &fan_out);
    double bound = gain * sqrt(6.0 / (double)(fan_in + fan_out));
    tensor_uniform_(w, -bound, bound, g);
}
