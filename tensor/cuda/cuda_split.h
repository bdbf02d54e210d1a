// The chunking of the CUDA backend's two-pass reductions (tensor/cuda/cuda_reduce.cu, and the
// weight and bias gradients of tensor/cuda/cuda_layer_norm.cu), in plain C so that the CPU suites
// check it (tests/cuda/test_cuda_tiling.c).
//
// A reduction of `rows` rows of `len` elements whose row tiles (cuda_common.cuh) make too few
// blocks to fill a GPU, say a sum over dim 0 of a (6304, 768) gradient (24 blocks on 132 SMs),
// cuts every row into `chunks` runs of chunk_len consecutive elements (the last may be shorter).
// Pass 1 reduces each (chunk, row) pair into a partial result; pass 2 combines a row's partials in
// chunk order. Both passes add in a fixed order, so a result repeats bit for bit from run to run.
// The target block count is a constant, not the device's SM count, so the chunking (and with it
// the result's last bits) is the same on every GPU too.
#pragma once

#include <stdint.h>

#include "tensor/elementwise.h" // PETAL_HD

#define SPLIT_TARGET_BLOCKS 528 // 4 blocks for each of an H100's 132 SMs
#define SPLIT_MIN_CHUNK     64  // elements per chunk at least: pass 2 must stay cheap

typedef struct {
    int64_t chunks, chunk_len; // chunks == 1: one pass, no split
} split_plan;

// The split of rows of `len` elements whose unsplit launch has row_blocks blocks: enough chunks
// that row_blocks * chunks reaches SPLIT_TARGET_BLOCKS, none shorter than SPLIT_MIN_CHUNK, none
// empty.
static inline split_plan split_plan_for(int64_t row_blocks, int64_t len) {
    split_plan p;
    int64_t want = (SPLIT_TARGET_BLOCKS + row_blocks - 1) / (row_blocks > 0 ? row_blocks : 1);
    int64_t most = len / SPLIT_MIN_CHUNK;
    int64_t chunks = want < most ? want : most;
    if (chunks < 2) {
        p.chunks = 1;
        p.chunk_len = len;
        return p;
    }
    p.chunk_len = (len + chunks - 1) / chunks;
    p.chunks = (len + p.chunk_len - 1) / p.chunk_len; // rounding up may leave fewer, never empty
    return p;
}

// Pass 1's partial v (a "virtual row" of the tiles) is chunk v / rows of row v % rows: neighbouring
// threads take neighbouring rows of one chunk, so their reads stay coalesced as in the unsplit
// tiles; the partials form a (chunks, rows) matrix.
PETAL_HD static inline int64_t split_row(int64_t v, int64_t rows) {
    return v % rows;
}
PETAL_HD static inline int64_t split_chunk(int64_t v, int64_t rows) {
    return v / rows;
}

// Elements [*begin, *end) of a row are chunk k's.
PETAL_HD static inline void split_bounds(split_plan p, int64_t len, int64_t k, int64_t *begin,
                                         int64_t *end) {
    int64_t b = k * p.chunk_len, e = b + p.chunk_len;
    *begin = b < len ? b : len;
    *end = e < len ? e : len;
}
