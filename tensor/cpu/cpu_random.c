// Random fills and dropout from Philox: the loops over the formulas of tensor/random_formula.h.
// Element i reads Philox outputs that depend only on (seed, offset, i): the same seed gives the
// same tensor for any thread count.

#include "tensor/cpu/cpu_iter.h"
#include "tensor/cpu/cpu_kernels.h"
#include "tensor/error.h"
#include "tensor/random_formula.h"

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

// Elements 4b .. 4b + 3 read the four words of Philox block b (the words random_keep reads one
// at a time): one Philox evaluation per four elements. Blocks go in groups of DROPOUT_LANES whose
// Philox rounds run side by side (the compiler turns the lane loop into vector instructions: the
// generator is most of dropout's cost).
#define DROPOUT_LANES 16

static void dropout_group(int64_t b0, int64_t n, const tensor *x, tensor *out, double p,
                          rng_state rng) {
    uint32_t w[4 * DROPOUT_LANES]; // the words of element first + i
    for (int l = 0; l < DROPOUT_LANES; l++) {
        philox_block r = philox4x32_10(rng.seed, rng.offset + (uint64_t)(b0 + l));
        for (int j = 0; j < 4; j++) w[4 * l + j] = r.v[j];
    }
    int64_t first = 4 * b0, count = n - first < 4 * DROPOUT_LANES ? n - first : 4 * DROPOUT_LANES;
    if (out->dtype == PETAL_F32) {
        float *o = tensor_data_f32(out) + first, scale = (float)(1.0 / (1.0 - p));
        const float *xi = tensor_data_f32(x) + first;
        for (int64_t i = 0; i < count; i++) o[i] = random_keep_word(w[i], p) ? xi[i] * scale : 0.0f;
    } else {
        double *o = tensor_data_f64(out) + first, scale = 1.0 / (1.0 - p);
        const double *xi = tensor_data_f64(x) + first;
        for (int64_t i = 0; i < count; i++) o[i] = random_keep_word(w[i], p) ? xi[i] * scale : 0.0;
    }
}

void cpu_dropout(tensor *out, const tensor *x, double p, rng_state rng) {
    int64_t n = tensor_numel(out), groups = (n + 4 * DROPOUT_LANES - 1) / (4 * DROPOUT_LANES);
#pragma omp parallel for if (n >= CPU_PARALLEL_GRAIN)
    for (int64_t g = 0; g < groups; g++) dropout_group(g * DROPOUT_LANES, n, x, out, p, rng);
}
