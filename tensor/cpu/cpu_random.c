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

#define DROPOUT_DEFINE(T, S)                                                                       \
    static void dropout_##S(T *out, const T *x, int64_t n, double p, rng_state rng) {              \
        T scale = (T)(1.0 / (1.0 - p));                                                            \
        _Pragma("omp parallel for if (n >= CPU_PARALLEL_GRAIN)") for (int64_t i = 0; i < n; i++)   \
            out[i] = random_keep(rng, i, p) ? x[i] * scale : (T)0;                                 \
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
