// Dropout's kernel for one CPU path, included (by tensor/cpu/cpu_path_table.h) once into each
// path's translation unit (tensor/cpu/cpu_path_*.c): the Philox rounds of a group run side by side,
// as vector code as wide as the path's.
#include "tensor/cpu/cpu_path.h"
#include "tensor/random_formula.h"

// Elements 4b .. 4b + 3 read the four words of Philox block b (the words random_keep reads one
// at a time): one Philox evaluation per four elements. Blocks go in groups of DROPOUT_LANES whose
// Philox rounds run side by side (the compiler turns the lane loop into vector instructions: the
// generator is most of dropout's cost). The vectoriser takes the lane loop only once -O3 has
// unrolled the ten rounds: built at the paths' -O2 it stayed scalar, twice as slow (GCC only:
// clang has no per-function optimisation level).
#ifdef __clang__
#define DROPOUT_O3
#else
#define DROPOUT_O3 __attribute__((optimize("O3")))
#endif
// w[4 l + j] = word j of Philox block b0 + l, for the DROPOUT_LANES blocks of a group: the words of
// elements 4 b0 ... Inlined into the O3 callers, whose vectoriser then takes the lane loop.
__attribute__((always_inline)) static inline void philox_group(uint32_t *w, int64_t b0,
                                                               rng_state rng) {
    for (int l = 0; l < DROPOUT_LANES; l++) {
        philox_block r = philox4x32_10(rng.seed, rng.offset + (uint64_t)(b0 + l));
        for (int j = 0; j < 4; j++) w[4 * l + j] = r.v[j];
    }
}

DROPOUT_O3 static void dropout_group(int64_t b0, int64_t n, const tensor *x, tensor *out, double p,
                                     rng_state rng) {
    uint32_t w[4 * DROPOUT_LANES]; // the words of element first + i
    philox_group(w, b0, rng);
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
