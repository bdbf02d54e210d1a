// Which kernel an element-wise CUDA op (tensor/cuda/cuda_elementwise.cu) runs, decided from its
// iteration plan (tensor/cpu/cpu_iter.h), and the index math of the fast ones: plain C, so the
// CPU suites check the decision and the offsets (tests/cuda/test_cuda_tiling.c).
//
// The general kernel walks the plan with 64-bit div/mod per dim and element. Most element-wise
// work in training is simpler: every operand contiguous with the output's shape (the plan has
// merged it into one dim), or a row vector added over contiguous rows (a bias). Below 2^31
// elements those take kernels with 32-bit indices; contiguous operands whose addresses are all
// 16-byte aligned move 16 bytes per access (four f32 or i32, two f64 or i64), the few elements
// past the last whole 16 bytes one at a time.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "tensor/cpu/cpu_iter.h"
#ifdef __cplusplus
}
#endif

#include "tensor/elementwise.h" // PETAL_HD

#define EW_PACK_BYTES 16
#define EW_MAX_NUMEL  ((int64_t)1 << 31) // the 32-bit kernels' grid-stride loops stay below 2^32

typedef enum {
    EW_PATH_STRIDED, // the general kernel
    EW_PATH_FLAT,    // all contiguous and aligned: element i of every operand at index i
    EW_PATH_ROWS,    // contiguous (rows, cols) output; each input contiguous or one row repeated
                     // (all contiguous but not aligned: one row)
} ew_path_kind;

typedef struct {
    ew_path_kind kind;
    int64_t cols;                  // the row length (EW_PATH_ROWS), numel (EW_PATH_FLAT)
    bool repeat[CPU_ITER_MAX_OPS]; // EW_PATH_ROWS: operand k repeats one row (stride 0 over rows)
} ew_path;

// The path of plan `it` whose elements are elem_size bytes.
static inline ew_path ew_path_choose(const cpu_iter *it, int64_t elem_size) {
    ew_path p = {EW_PATH_STRIDED, 0, {false}};
    if (it->numel <= 0 || it->numel >= EW_MAX_NUMEL) return p;
    bool contiguous = it->ndim == 1, aligned = true;
    for (int k = 0; k < it->n_ops; k++) {
        contiguous = contiguous && it->strides[k][0] == elem_size;
        aligned = aligned && (uintptr_t)it->data[k] % EW_PACK_BYTES == 0;
    }
    if (contiguous) { // unaligned: one row of numel, one element per access
        p.kind = aligned ? EW_PATH_FLAT : EW_PATH_ROWS;
        p.cols = it->numel;
        return p;
    }
    if (it->ndim != 2) return p;
    int64_t cols = it->shape[1], row_bytes = cols * elem_size;
    bool rows = it->strides[0][0] == row_bytes && it->strides[0][1] == elem_size;
    for (int k = 1; k < it->n_ops && rows; k++) {
        p.repeat[k] = it->strides[k][0] == 0;
        rows = (p.repeat[k] || it->strides[k][0] == row_bytes) && it->strides[k][1] == elem_size;
    }
    if (!rows) return p;
    p.kind = EW_PATH_ROWS;
    p.cols = cols;
    return p;
}

// EW_PATH_ROWS: the index, in elements, of output element i in an operand.
PETAL_HD static inline uint32_t ew_rows_index(uint32_t i, uint32_t cols, bool repeat) {
    return repeat ? i % cols : i;
}

// EW_PATH_FLAT: n elements make n / per_pack whole packs of EW_PACK_BYTES; the rest, from
// ew_tail_start, go one by one.
PETAL_HD static inline uint32_t ew_tail_start(uint32_t n, uint32_t per_pack) {
    return n / per_pack * per_pack;
}
