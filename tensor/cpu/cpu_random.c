// Random fills and dropout from Philox: the loops over the formulas of tensor/random_formula.h.
// Element i reads Philox outputs that depend only on (seed, offset, i): the same seed gives the
// same tensor for any thread count.

#include "tensor/cpu/cpu_iter.h"
#include "tensor/cpu/cpu_kernels.h"
#include "tensor/cpu/cpu_path.h"
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

// The CPU path's dropout_group (tensor/cpu/cpu_path_dropout.h) over groups of DROPOUT_LANES
// Philox blocks.
void cpu_dropout(tensor *out, const tensor *x, double p, rng_state rng) {
    int64_t n = tensor_numel(out), groups = (n + 4 * DROPOUT_LANES - 1) / (4 * DROPOUT_LANES);
    cpu_dropout_group_fn group = cpu_path_kernels_active()->dropout_group;
#pragma omp parallel for if (n >= CPU_PARALLEL_GRAIN)
    for (int64_t g = 0; g < groups; g++) group(g * DROPOUT_LANES, n, x, out, p, rng);
}
