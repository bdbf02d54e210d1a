// Random fills and dropout from Philox: the loops over the formulas of tensor/random_formula.h.
// Element i reads Philox outputs that depend only on (seed, offset, i): the same seed gives the
// same tensor for any thread count.

#include "tensor/cpu/cpu_iter.h"
#include "tensor/cpu/cpu_kernels.h"
#include "tensor/cpu/cpu_path.h"
#include "tensor/error.h"
#include "tensor/random_formula.h"

// One Philox block per four outputs: the normal's elements 2b and 2b + 1 read words 0, 1 and 2, 3
// of block b, the other fills' elements 4b .. 4b + 3 one word each.
void cpu_random(random_kind kind, tensor *out, rng_state rng, const double *params) {
    PETAL_CHECK(tensor_is_contiguous(out), "random fill: the output must be contiguous");
    random_params r = random_prepare(kind, params);
    int64_t n = tensor_numel(out), per_block = kind == RANDOM_NORMAL ? 2 : 4;
    int64_t blocks = (n + per_block - 1) / per_block;
#pragma omp parallel for if (n >= CPU_PARALLEL_GRAIN)
    for (int64_t b = 0; b < blocks; b++) {
        philox_block w = philox4x32_10(rng.seed, rng.offset + (uint64_t)b);
        for (int64_t j = 0; j < per_block && b * per_block + j < n; j++) {
            int64_t i = b * per_block + j;
            double v = per_block == 2 ? random_of_words(kind, &r, w.v[2 * j], w.v[2 * j + 1])
                                      : random_of_words(kind, &r, w.v[j], 0);
            if (out->dtype == PETAL_F32)
                tensor_data_f32(out)[i] = (float)v;
            else
                tensor_data_f64(out)[i] = v;
        }
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
