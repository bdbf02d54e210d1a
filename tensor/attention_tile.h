// Fused scaled-dot-product attention (flash-style tiling): the pieces of the algorithm, written
// once for every backend like tensor/elementwise.h. The CUDA kernels
// (tensor/cuda/cuda_attention.cu) call them per thread; tests/ops/test_attention_tile.c runs the
// same tiled algorithm on the CPU and compares it with tensor_attention (ops/attention.c), so the
// kernels' math is checked on machines without a GPU. docs/cuda.md "Fused attention" says how it is
// used.
//
// Forward, for query row i over tiles of ATTN_TILE_K keys (m: running max, l: running sum):
//   s_j = scale q_i.k_j + mask_ij (-inf where causal hides key j)
//   m' = max(m, max_j s_j),  alpha = exp(m - m'),  p_j = exp(s_j - m'),  l = alpha l + sum_j p_j
//   acc = alpha acc + sum_j drop(p_j) v_j;  at the end o_i = acc / l,  lse_i = m + log l
// where drop(x) = keep_ij ? x / (1 - p_drop) : 0 with the unfused op's mask, so that o equals
// dropout(softmax(S)) v (the division by l commutes with the mask). A row whose scores are all
// -inf so far uses 0 for its max (as softmax does): exp(-inf - 0) = 0, so a row with no visible
// key ends with l = 0, o_i = 0 / 0 = NaN and lse_i = -inf, which is what the unfused op gives (its
// softmax divides 0 by 0: a NaN row; the one difference: where dropout drops every key of such a
// row, the unfused o_i is 0).
//
// Backward, from the saved o and lse (P is recomputed tile by tile, never stored):
//   P_ij = exp(s_ij - lse_i),  D_i = rowsum(dO_i * o_i),  dP'_ij = drop(dO_i . v_j)
//   dS_ij = P_ij (dP'_ij - D_i),  dq_i = scale sum_j dS_ij k_j,  dk_j = scale sum_i dS_ij q_i,
//   dv_j = sum_i drop(P_ij) dO_i
// (D_i = sum_j dP'_ij P_ij, the unfused softmax backward's row sum, since o_i = sum_j P'_ij v_j.)
//
// A thread works on one row (a query row, or a key row in the dk/dv pass) with ATTN_LANES threads
// per row splitting the head dim: lane d0 holds columns d0, d0 + ATTN_LANES, ... The functions
// below take such a column set as (d0, step), at most ATTN_COLS columns; the CPU test runs the
// same lanes one after the other.
//
// round_bf16 rounds to bf16 what a bf16 tensor-core kernel would feed its matrix units: q, k, v
// and dO as they are loaded, the (dropped) probabilities before P v and P'^T dO, and dS before
// dS k and dS^T q; scores, running max and sums, accumulators and outputs stay in T.
#pragma once

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "tensor/backend.h"
#include "tensor/dtype_convert.h"
#include "tensor/random_formula.h"

#define ATTN_TILE_Q   16  // query rows of a block (forward, dq pass); key rows in the dk/dv pass
#define ATTN_TILE_K   16  // rows of a shared-memory tile of keys and values (queries in dk/dv)
#define ATTN_LANES    8   // threads per row: a power of two, at most 32 (one warp's shuffles)
#define ATTN_HEAD_MAX 128 // the largest head dim (D and Dv) the fused kernels take
#define ATTN_COLS     (ATTN_HEAD_MAX / ATTN_LANES) // head-dim columns one lane holds

// The loops over a lane's columns and a tile's rows have constant bounds (and an early exit), so
// that nvcc can unroll them and keep a lane's arrays in registers. A column set (d0, step) is at
// most ATTN_COLS columns, a tile at most ATTN_TILE_K rows.
#ifdef __CUDA_ARCH__ // nvcc's device pass; a host compiler knows no such pragma
#define ATTN_UNROLL _Pragma("unroll")
#else
#define ATTN_UNROLL
#endif
// c over a lane's columns: d = d0 + c step < dim, at most ATTN_COLS of them.
#define ATTN_FOR_COLS(c, d, d0, step, dim)                                                         \
    ATTN_UNROLL for (int c = 0, d = (d0); c < ATTN_COLS && d < (dim); c++, d += (step))
// j over the rows of a tile: j < n, at most ATTN_TILE_K.
#define ATTN_FOR_TILE(j, n) ATTN_UNROLL for (int j = 0; j < ATTN_TILE_K && j < (n); j++)

// Element strides of a (B, H, rows, dim) view whose last dim is contiguous.
typedef struct {
    int64_t b, h, row;
} attn_strides;

PETAL_HD static inline int64_t attn_offset(attn_strides s, int64_t b, int64_t h, int64_t r) {
    return b * s.b + h * s.h + r * s.row;
}

// The strides of an additive mask broadcast to (B, H, T, S): right-aligned, 0 along a size-1 or
// missing dim.
PETAL_HD static inline void attn_mask_strides(int ndim, const int64_t *shape,
                                              const int64_t *strides, int64_t out[4]) {
    for (int d = 0; d < 4; d++) {
        int src = d - (4 - ndim);
        out[d] = src < 0 || shape[src] == 1 ? 0 : strides[src];
    }
}

PETAL_HD static inline int64_t attn_mask_offset(const int64_t st[4], int64_t b, int64_t h,
                                                int64_t i, int64_t j) {
    return b * st[0] + h * st[1] + i * st[2] + j * st[3];
}

// Causal attention: query i of t sees key j of s when j <= i + (s - t) (the diagonal shifted so
// that the last query sees every key: a KV-cached decoder step).
PETAL_HD static inline bool attn_visible(bool causal, int64_t i, int64_t j, int64_t t, int64_t s) {
    return !causal || j <= i + (s - t);
}

// Keys [0, end) hold every key that queries 0..i_last see; the tiles beyond are skipped (their
// scores are all -inf, which changes neither m, l nor acc). At least one key is visited: a row
// with no visible key (causal with T > S) then gets P = NaN in the backward, so its NaN reaches
// dq, dk and dv as in the unfused op.
PETAL_HD static inline int64_t attn_key_end(bool causal, int64_t i_last, int64_t t, int64_t s) {
    if (!causal) return s;
    int64_t end = i_last + (s - t) + 1;
    return end < 1 ? (s < 1 ? s : 1) : (end > s ? s : end);
}

// Queries [begin, t) hold every query that sees key j_first or a later key, and every query that
// sees no key at all (T > S: its NaN reaches every dk and dv, as in the unfused op), for the dk/dv
// pass of a key tile starting at j_first.
PETAL_HD static inline int64_t attn_query_begin(bool causal, int64_t j_first, int64_t t,
                                                int64_t s) {
    if (!causal || t > s) return 0;
    int64_t begin = j_first - (s - t);
    return begin < 0 ? 0 : begin;
}

// The index of P[b, h, i, j] in P's (B, H, T, S) layout: the counter of its dropout decision, so
// the fused and unfused paths drop the same elements for one rng state.
PETAL_HD static inline int64_t attn_drop_index(int64_t b, int64_t h, int64_t i, int64_t j,
                                               int64_t heads, int64_t t, int64_t s) {
    return ((b * heads + h) * t + i) * s + j;
}

#define PETAL_ATTN_DEFINE(T, S, EXP)                                                               \
    PETAL_HD static inline T attn_round_##S(T x, bool round_bf16) {                                \
        return round_bf16 ? (T)bf16_to_f32(f32_to_bf16((float)x)) : x;                             \
    }                                                                                              \
    /* The score of (i, j) from its dot product q_i.k_j: the unfused op's scale * dot + mask, with \
     * -inf where the key is not visible. */                                                       \
    PETAL_HD static inline T attn_score_##S(T dot, T scale, T mask, bool visible) {                \
        return visible ? scale * dot + mask : (T)-INFINITY;                                        \
    }                                                                                              \
    /* Dropout on one element of P (or of dP) as the backend's dropout: x / (1 - p) or 0. */       \
    PETAL_HD static inline T attn_drop_##S(T x, const attention_params *a, int64_t e) {            \
        if (a->dropout == 0) return x;                                                             \
        T keep_scale = (T)(1.0 / (1.0 - a->dropout));                                              \
        return random_keep(a->rng, e, a->dropout) ? x * keep_scale : (T)0;                         \
    }                                                                                              \
    /* sum_c x[c] y[d0 + c step] over the columns d0, d0 + step, ... < dim: x holds a lane's       \
     * columns (registers), y a whole row (shared memory). */                                      \
    PETAL_HD static inline T attn_partial_dot_##S(const T *x, const T *y, int d0, int step,        \
                                                  int dim) {                                       \
        T acc = 0;                                                                                 \
        ATTN_FOR_COLS(c, d, d0, step, dim) acc += x[c] * y[d];                                     \
        return acc;                                                                                \
    }                                                                                              \
    /* The same in double (D_i = dO_i . o_i: the unfused op sums its row in double). */            \
    PETAL_HD static inline double attn_partial_dot_wide_##S(const T *x, const T *y, int d0,        \
                                                            int step, int dim) {                   \
        double acc = 0;                                                                            \
        ATTN_FOR_COLS(c, d, d0, step, dim) acc += x[c] * y[d];                                     \
        return acc;                                                                                \
    }                                                                                              \
    /* dst[c] += w * y[d0 + c step]: one row's contribution to a lane's accumulator. */            \
    PETAL_HD static inline void attn_axpy_##S(T *dst, T w, const T *y, int d0, int step,           \
                                              int dim) {                                           \
        ATTN_FOR_COLS(c, d, d0, step, dim) dst[c] += w * y[d];                                     \
    }                                                                                              \
    /* One key tile of a query row's online softmax: the tile's scores s[0..n) become exp(s - m')  \
     * in place, m and l move on to the tile, and the factor that rescales the row's accumulator   \
     * is returned. */                                                                             \
    PETAL_HD static inline T attn_online_step_##S(T *m, T *l, T *s, int n) {                       \
        T mt = *m;                                                                                 \
        ATTN_FOR_TILE(j, n) mt = s[j] > mt ? s[j] : mt;                                            \
        T shift = mt == (T)-INFINITY ? (T)0 : mt; /* an all -inf row so far */                     \
        T alpha = EXP(*m - shift), sum = 0;                                                        \
        ATTN_FOR_TILE(j, n) {                                                                      \
            s[j] = EXP(s[j] - shift);                                                              \
            sum += s[j];                                                                           \
        }                                                                                          \
        *l = *l * alpha + sum;                                                                     \
        *m = mt;                                                                                   \
        return alpha;                                                                              \
    }                                                                                              \
    /* acc = alpha acc + sum_j p[j] v[j][d] for a lane's columns; p holds the tile's dropped (and  \
     * rounded) probabilities, v the tile's rows ldv apart. */                                     \
    PETAL_HD static inline void attn_accumulate_##S(                                               \
        T *acc, T alpha, const T *p, int n, const T *v, int ldv, int d0, int step, int dim) {      \
        ATTN_FOR_COLS(c, d, d0, step, dim) {                                                       \
            T a = acc[c] * alpha;                                                                  \
            ATTN_FOR_TILE(j, n) a += p[j] * v[j * ldv + d];                                        \
            acc[c] = a;                                                                            \
        }                                                                                          \
    }                                                                                              \
    /* The end of a query row: o = acc / l (NaN for l = 0: no visible key), lse = m + log l. */    \
    PETAL_HD static inline T attn_finish_##S(T *o, const T *acc, T m, T l, int d0, int step,       \
                                             int dim) {                                            \
        T inv = (T)(1.0 / (double)l);                                                              \
        ATTN_FOR_COLS(c, d, d0, step, dim) o[d] = acc[c] * inv;                                    \
        return (m == (T)-INFINITY ? (T)0 : m) + (T)log((double)l);                                 \
    }                                                                                              \
    /* P_ij recomputed from its score and the row's saved lse (NaN on a row with no visible key,   \
     * as the unfused P). */                                                                       \
    PETAL_HD static inline T attn_prob_##S(T s, T lse) {                                           \
        return EXP(s - lse);                                                                       \
    }                                                                                              \
    PETAL_HD static inline T attn_dscore_##S(T p, T dp_dropped, T d) {                             \
        return p * (dp_dropped - d);                                                               \
    }
PETAL_ATTN_DEFINE(float, f32, ew_expf)
PETAL_ATTN_DEFINE(double, f64, exp)
#undef PETAL_ATTN_DEFINE
