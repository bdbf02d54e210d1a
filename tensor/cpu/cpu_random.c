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
// at a time): one Philox evaluation per four elements.
void cpu_dropout(tensor *out, const tensor *x, double p, rng_state rng) {
    int64_t n = tensor_numel(out), blocks = (n + 3) / 4;
    bool f32 = out->dtype == PETAL_F32;
    float *of = f32 ? tensor_data_f32(out) : NULL;
    const float *xf = f32 ? tensor_data_f32(x) : NULL;
    double *od = f32 ? NULL : tensor_data_f64(out);
    const double *xd = f32 ? NULL : tensor_data_f64(x);
    float scale_f = (float)(1.0 / (1.0 - p));
    double scale_d = 1.0 / (1.0 - p);
#pragma omp parallel for if (n >= CPU_PARALLEL_GRAIN)
    for (int64_t b = 0; b < blocks; b++) {
        philox_block r = philox4x32_10(rng.seed, rng.offset + (uint64_t)b);
        for (int64_t j = 0, i = 4 * b; j < 4 && i < n; j++, i++) {
            bool keep = random_keep_word(r.v[j], p);
            if (f32)
                of[i] = keep ? xf[i] * scale_f : 0.0f;
            else
                od[i] = keep ? xd[i] * scale_d : 0.0;
        }
    }
}
