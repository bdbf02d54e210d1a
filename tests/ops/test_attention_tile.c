// tests/ops: the fused attention's tiled algorithm (tensor/attention_tile.h) run on the CPU the way
// the CUDA kernels (tensor/cuda/cuda_attention.cu) run it, and compared with tensor_attention's
// GEMM path, forward and gradients: the same tiles of keys and queries, the same skipped causal
// tiles, ATTN_LANES lanes per row each holding its columns of the head dim, their dot products
// summed in the kernels' xor-shuffle order. CI has no GPU: this is what checks the kernels' math
// there. Also the tile bounds against the causal rule, the mask's broadcast strides, and the bf16
// rounding option.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "petal.h"
#include "tensor/attention_tile.h"
#include "tests/ops/attention_case.h"
#include "tests/test_util.h"

// Inputs and outputs of the tiled algorithm: contiguous CPU tensors, mask any broadcastable view.
typedef struct {
    tensor *q, *k, *v, *mask, *o, *lse, *go, *gq, *gk, *gv;
    attention_params p;
} tiled;

static attn_strides strides_of(const tensor *t) {
    return (attn_strides){t->strides[0], t->strides[1], t->strides[2]};
}

// The kernels' lanes of one row: lane l holds columns l, l + ATTN_LANES, ... of a head dim.
#define LANE_COLS(x, lane) ((x) + (lane)*ATTN_COLS)

// One tiled pass per type, as the kernels: a block is a tile of ATTN_TILE_Q rows; keys (queries
// in the dk/dv pass) come in tiles of ATTN_TILE_K rows copied ATTN_HEAD_MAX apart.
#define TILED_DEFINE(T, S)                                                                         \
    /* The kernels' attn_lanes_sum: v[l] += v[l ^ o] for o = ATTN_LANES / 2, ..., 1. */            \
    static T lanes_sum_##S(const T *part) {                                                        \
        T v[ATTN_LANES], next[ATTN_LANES];                                                         \
        memcpy(v, part, sizeof v);                                                                 \
        for (int o = ATTN_LANES / 2; o > 0; o /= 2) {                                              \
            for (int l = 0; l < ATTN_LANES; l++) next[l] = v[l] + v[l ^ o];                        \
            memcpy(v, next, sizeof v);                                                             \
        }                                                                                          \
        return v[0];                                                                               \
    }                                                                                              \
    /* The lanes' dot product of x (lane columns) with a whole row y. */                           \
    static T lanes_dot_##S(const T *x, const T *y, int dim) {                                      \
        T part[ATTN_LANES];                                                                        \
        for (int l = 0; l < ATTN_LANES; l++)                                                       \
            part[l] = attn_partial_dot_##S(LANE_COLS(x, l), y, l, ATTN_LANES, dim);                \
        return lanes_sum_##S(part);                                                                \
    }                                                                                              \
    static void load_lanes_##S(T *dst, const T *row, int dim, bool rb) {                           \
        for (int l = 0; l < ATTN_LANES; l++)                                                       \
            for (int c = 0, d = l; d < dim; c++, d += ATTN_LANES)                                  \
                LANE_COLS(dst, l)[c] = attn_round_##S(row[d], rb);                                 \
    }                                                                                              \
    static void load_tile_##S(T *tile, const tensor *x, int64_t b, int64_t h, int64_t r0, int n,   \
                              bool rb) {                                                           \
        int dim = (int)x->shape[3];                                                                \
        const T *base = (const T *)tensor_data(x);                                                 \
        for (int r = 0; r < n; r++)                                                                \
            for (int d = 0; d < dim; d++)                                                          \
                tile[r * ATTN_HEAD_MAX + d] =                                                      \
                    attn_round_##S(base[attn_offset(strides_of(x), b, h, r0 + r) + d], rb);        \
    }                                                                                              \
    static T score_##S(const tiled *a, T dot, int64_t b, int64_t h, int64_t i, int64_t j) {        \
        int64_t t = a->q->shape[2], s = a->k->shape[2], mst[4];                                    \
        T mask = 0;                                                                                \
        if (a->mask) {                                                                             \
            attn_mask_strides(a->mask->ndim, a->mask->shape, a->mask->strides, mst);               \
            mask = ((const T *)tensor_data(a->mask))[attn_mask_offset(mst, b, h, i, j)];           \
        }                                                                                          \
        return attn_score_##S(dot, (T)a->p.scale, mask, attn_visible(a->p.causal, i, j, t, s));    \
    }                                                                                              \
    static void forward_row_##S(const tiled *a, int64_t b, int64_t h, int64_t i, int64_t end) {    \
        int64_t heads = a->q->shape[1], t = a->q->shape[2], s = a->k->shape[2];                    \
        int d = (int)a->q->shape[3], dv = (int)a->v->shape[3];                                     \
        bool rb = a->p.round_bf16;                                                                 \
        static T kt[ATTN_TILE_K * ATTN_HEAD_MAX], vt[ATTN_TILE_K * ATTN_HEAD_MAX];                 \
        T q[ATTN_HEAD_MAX] = {0}, acc[ATTN_HEAD_MAX] = {0}, m = (T)-INFINITY, l = 0;               \
        load_lanes_##S(q, (const T *)tensor_data(a->q) + attn_offset(strides_of(a->q), b, h, i),   \
                       d, rb);                                                                     \
        for (int64_t j0 = 0; j0 < end; j0 += ATTN_TILE_K) {                                        \
            int n = (int)(end - j0 < ATTN_TILE_K ? end - j0 : ATTN_TILE_K);                        \
            load_tile_##S(kt, a->k, b, h, j0, n, rb);                                              \
            load_tile_##S(vt, a->v, b, h, j0, n, rb);                                              \
            T sc[ATTN_TILE_K];                                                                     \
            for (int j = 0; j < n; j++)                                                            \
                sc[j] =                                                                            \
                    score_##S(a, lanes_dot_##S(q, kt + j * ATTN_HEAD_MAX, d), b, h, i, j0 + j);    \
            T alpha = attn_online_step_##S(&m, &l, sc, n);                                         \
            for (int j = 0; j < n; j++)                                                            \
                sc[j] = attn_round_##S(                                                            \
                    attn_drop_##S(sc[j], &a->p, attn_drop_index(b, h, i, j0 + j, heads, t, s)),    \
                    rb);                                                                           \
            for (int lane = 0; lane < ATTN_LANES; lane++)                                          \
                attn_accumulate_##S(LANE_COLS(acc, lane), alpha, sc, n, vt, ATTN_HEAD_MAX, lane,   \
                                    ATTN_LANES, dv);                                               \
        }                                                                                          \
        T *o = (T *)tensor_data(a->o) + attn_offset(strides_of(a->o), b, h, i), lse = 0;           \
        for (int lane = 0; lane < ATTN_LANES; lane++)                                              \
            lse = attn_finish_##S(o, LANE_COLS(acc, lane), m, l, lane, ATTN_LANES, dv);            \
        ((T *)tensor_data(a->lse))[(b * heads + h) * t + i] = lse;                                 \
    }                                                                                              \
    static void forward_##S(const tiled *a) {                                                      \
        int64_t t = a->q->shape[2], s = a->k->shape[2];                                            \
        for (int64_t b = 0; b < a->q->shape[0]; b++)                                               \
            for (int64_t h = 0; h < a->q->shape[1]; h++)                                           \
                for (int64_t i0 = 0; i0 < t; i0 += ATTN_TILE_Q) {                                  \
                    int64_t i_last = (i0 + ATTN_TILE_Q < t ? i0 + ATTN_TILE_Q : t) - 1;            \
                    int64_t end = attn_key_end(a->p.causal, i_last, t, s);                         \
                    for (int64_t i = i0; i <= i_last; i++) forward_row_##S(a, b, h, i, end);       \
                }                                                                                  \
    }                                                                                              \
    /* The dq pass of one query row; returns D_i. */                                               \
    static T dq_row_##S(const tiled *a, int64_t b, int64_t h, int64_t i, int64_t end) {            \
        int64_t heads = a->q->shape[1], t = a->q->shape[2], s = a->k->shape[2];                    \
        int d = (int)a->q->shape[3], dv = (int)a->v->shape[3];                                     \
        bool rb = a->p.round_bf16;                                                                 \
        static T kt[ATTN_TILE_K * ATTN_HEAD_MAX], vt[ATTN_TILE_K * ATTN_HEAD_MAX];                 \
        T q[ATTN_HEAD_MAX] = {0}, g[ATTN_HEAD_MAX] = {0}, dq[ATTN_HEAD_MAX] = {0};                 \
        load_lanes_##S(q, (const T *)tensor_data(a->q) + attn_offset(strides_of(a->q), b, h, i),   \
                       d, rb);                                                                     \
        load_lanes_##S(g, (const T *)tensor_data(a->go) + attn_offset(strides_of(a->go), b, h, i), \
                       dv, rb);                                                                    \
        const T *orow = (const T *)tensor_data(a->o) + attn_offset(strides_of(a->o), b, h, i);     \
        double part[ATTN_LANES];                                                                   \
        for (int l = 0; l < ATTN_LANES; l++)                                                       \
            part[l] = attn_partial_dot_wide_##S(LANE_COLS(g, l), orow, l, ATTN_LANES, dv);         \
        T dsum = (T)lanes_sum_f64(part);                                                           \
        T lse = ((const T *)tensor_data(a->lse))[(b * heads + h) * t + i];                         \
        for (int64_t j0 = 0; j0 < end; j0 += ATTN_TILE_K) {                                        \
            int n = (int)(end - j0 < ATTN_TILE_K ? end - j0 : ATTN_TILE_K);                        \
            load_tile_##S(kt, a->k, b, h, j0, n, rb);                                              \
            load_tile_##S(vt, a->v, b, h, j0, n, rb);                                              \
            for (int j = 0; j < n; j++) {                                                          \
                const T *kj = kt + j * ATTN_HEAD_MAX, *vj = vt + j * ATTN_HEAD_MAX;                \
                T p = attn_prob_##S(score_##S(a, lanes_dot_##S(q, kj, d), b, h, i, j0 + j), lse);  \
                T dp = lanes_dot_##S(g, vj, dv);                                                   \
                int64_t e = attn_drop_index(b, h, i, j0 + j, heads, t, s);                         \
                T ds = attn_round_##S(attn_dscore_##S(p, attn_drop_##S(dp, &a->p, e), dsum), rb);  \
                for (int l = 0; l < ATTN_LANES; l++)                                               \
                    attn_axpy_##S(LANE_COLS(dq, l), ds, kj, l, ATTN_LANES, d);                     \
            }                                                                                      \
        }                                                                                          \
        T *out = (T *)tensor_data(a->gq) + attn_offset(strides_of(a->gq), b, h, i);                \
        for (int l = 0; l < ATTN_LANES; l++)                                                       \
            for (int c = 0, dd = l; dd < d; c++, dd += ATTN_LANES)                                 \
                out[dd] = LANE_COLS(dq, l)[c] * (T)a->p.scale;                                     \
        return dsum;                                                                               \
    }                                                                                              \
    /* The dk/dv pass of one key row, over the query tiles from `begin`. */                        \
    static void dkdv_row_##S(const tiled *a, const T *dsums, int64_t b, int64_t h, int64_t j,      \
                             int64_t begin) {                                                      \
        int64_t heads = a->q->shape[1], t = a->q->shape[2], s = a->k->shape[2];                    \
        int d = (int)a->q->shape[3], dv = (int)a->v->shape[3];                                     \
        bool rb = a->p.round_bf16;                                                                 \
        static T qt[ATTN_TILE_K * ATTN_HEAD_MAX], gt[ATTN_TILE_K * ATTN_HEAD_MAX];                 \
        T k[ATTN_HEAD_MAX] = {0}, v[ATTN_HEAD_MAX] = {0}, dk[ATTN_HEAD_MAX] = {0},                 \
          dvv[ATTN_HEAD_MAX] = {0};                                                                \
        load_lanes_##S(k, (const T *)tensor_data(a->k) + attn_offset(strides_of(a->k), b, h, j),   \
                       d, rb);                                                                     \
        load_lanes_##S(v, (const T *)tensor_data(a->v) + attn_offset(strides_of(a->v), b, h, j),   \
                       dv, rb);                                                                    \
        const T *lses = (const T *)tensor_data(a->lse) + (b * heads + h) * t;                      \
        for (int64_t i0 = begin; i0 < t; i0 += ATTN_TILE_K) {                                      \
            int n = (int)(t - i0 < ATTN_TILE_K ? t - i0 : ATTN_TILE_K);                            \
            load_tile_##S(qt, a->q, b, h, i0, n, rb);                                              \
            load_tile_##S(gt, a->go, b, h, i0, n, rb);                                             \
            for (int r = 0; r < n; r++) {                                                          \
                const T *qi = qt + r * ATTN_HEAD_MAX, *gi = gt + r * ATTN_HEAD_MAX;                \
                int64_t i = i0 + r, e = attn_drop_index(b, h, i, j, heads, t, s);                  \
                T p = attn_prob_##S(score_##S(a, lanes_dot_##S(k, qi, d), b, h, i, j), lses[i]);   \
                T pd = attn_round_##S(attn_drop_##S(p, &a->p, e), rb);                             \
                for (int l = 0; l < ATTN_LANES; l++)                                               \
                    attn_axpy_##S(LANE_COLS(dvv, l), pd, gi, l, ATTN_LANES, dv);                   \
                T dp = lanes_dot_##S(v, gi, dv);                                                   \
                T ds = attn_round_##S(attn_dscore_##S(p, attn_drop_##S(dp, &a->p, e),              \
                                                      dsums[(b * heads + h) * t + i]),             \
                                      rb);                                                         \
                for (int l = 0; l < ATTN_LANES; l++)                                               \
                    attn_axpy_##S(LANE_COLS(dk, l), ds, qi, l, ATTN_LANES, d);                     \
            }                                                                                      \
        }                                                                                          \
        T *gk = (T *)tensor_data(a->gk) + attn_offset(strides_of(a->gk), b, h, j);                 \
        T *gv = (T *)tensor_data(a->gv) + attn_offset(strides_of(a->gv), b, h, j);                 \
        for (int l = 0; l < ATTN_LANES; l++) {                                                     \
            for (int c = 0, dd = l; dd < d; c++, dd += ATTN_LANES)                                 \
                gk[dd] = LANE_COLS(dk, l)[c] * (T)a->p.scale;                                      \
            for (int c = 0, dd = l; dd < dv; c++, dd += ATTN_LANES) gv[dd] = LANE_COLS(dvv, l)[c]; \
        }                                                                                          \
    }                                                                                              \
    static void backward_##S(const tiled *a) {                                                     \
        int64_t nb = a->q->shape[0], heads = a->q->shape[1], t = a->q->shape[2],                   \
                s = a->k->shape[2];                                                                \
        T *dsums = malloc((size_t)(nb * heads * t) * sizeof *dsums); /* D (B, H, T) */             \
        for (int64_t b = 0; b < nb; b++)                                                           \
            for (int64_t h = 0; h < heads; h++) {                                                  \
                for (int64_t i0 = 0; i0 < t; i0 += ATTN_TILE_Q) {                                  \
                    int64_t i_last = (i0 + ATTN_TILE_Q < t ? i0 + ATTN_TILE_Q : t) - 1;            \
                    int64_t end = attn_key_end(a->p.causal, i_last, t, s);                         \
                    for (int64_t i = i0; i <= i_last; i++)                                         \
                        dsums[(b * heads + h) * t + i] = dq_row_##S(a, b, h, i, end);              \
                }                                                                                  \
                for (int64_t j0 = 0; j0 < s; j0 += ATTN_TILE_Q) {                                  \
                    int64_t begin = attn_query_begin(a->p.causal, j0, t, s);                       \
                    for (int64_t j = j0; j < s && j < j0 + ATTN_TILE_Q; j++)                       \
                        dkdv_row_##S(a, dsums, b, h, j, begin);                                    \
                }                                                                                  \
            }                                                                                      \
        free(dsums);                                                                               \
    }
TILED_DEFINE(double, f64)
TILED_DEFINE(float, f32)

// ---- the cases ----

static const attn_case cases[] = {
    {"one tile", 1, 2, 5, 7, 4, 3, MASK_NONE, false, 0},
    {"partial tiles, odd dims", 2, 3, 37, 53, 20, 13, MASK_NONE, false, 0},
    {"key padding mask", 2, 2, 19, 23, 16, 16, MASK_KEYS, false, 0},
    {"full mask", 1, 3, 21, 18, 9, 11, MASK_FULL, false, 0},
    {"row with no visible key", 1, 2, 6, 9, 5, 4, MASK_DEAD_ROW, false, 0},
    {"causal T = S", 2, 2, 40, 40, 8, 8, MASK_NONE, true, 0},
    {"causal KV cache (T < S)", 1, 2, 7, 45, 12, 6, MASK_NONE, true, 0},
    {"causal T > S (rows with no key)", 1, 2, 35, 20, 6, 10, MASK_NONE, true, 0},
    {"causal T > S (tiles with no key)", 1, 2, 40, 12, 6, 10, MASK_NONE, true, 0},
    {"dropout", 2, 2, 33, 29, 10, 7, MASK_NONE, false, 0.3},
    {"dropout, mask, causal", 2, 3, 30, 34, 16, 24, MASK_FULL, true, 0.2},
    {"head dim 128", 1, 2, 18, 20, 128, 128, MASK_KEYS, false, 0.1},
};

static tensor *make_mask(const attn_case *c, petal_dtype dtype) {
    if (c->mask == MASK_NONE) return NULL;
    if (c->mask == MASK_FULL) {
        tensor *m = tensor_empty(dtype, SHAPE(c->t, c->s));
        tensor_normal_(m, 0, 2, &(rng_generator){17, 0});
        return m;
    }
    bool keys = c->mask == MASK_KEYS;
    int64_t n = keys ? c->b * c->s : c->t * c->s;
    double *m = calloc((size_t)n, sizeof *m);
    for (int64_t j = 0; j < c->s; j++) {
        if (keys && c->b > 1 && j >= c->s - 3) m[c->s + j] = -INFINITY; // batch 1's last 3 keys
        if (!keys) m[2 * c->s + j] = -INFINITY;                         // query 2 sees nothing
    }
    tensor *f64 = keys ? tensor_from_data(PETAL_F64, SHAPE(c->b, 1, 1, c->s), m)
                       : tensor_from_data(PETAL_F64, SHAPE(c->t, c->s), m);
    free(m);
    tensor *cast = tensor_cast(f64, dtype);
    tensor_free(f64);
    return cast;
}

static tensor *random_input(petal_dtype dtype, int64_t b, int64_t h, int64_t n, int64_t d,
                            uint64_t seed) {
    tensor *t = tensor_empty(dtype, SHAPE(b, h, n, d));
    tensor_normal_(t, 0, 1, &(rng_generator){seed, 0});
    return t;
}

// The tiled passes on a case's inputs: o, lse, then the gradients for output gradient go.
static tiled run_tiled(const attn_case *c, petal_dtype dtype, bool round_bf16, rng_state rng) {
    tiled a = {.q = random_input(dtype, c->b, c->h, c->t, c->d, 1),
               .k = random_input(dtype, c->b, c->h, c->s, c->d, 2),
               .v = random_input(dtype, c->b, c->h, c->s, c->dv, 3),
               .go = random_input(dtype, c->b, c->h, c->t, c->dv, 4),
               .mask = make_mask(c, dtype),
               .p = {.scale = 1.0 / sqrt((double)c->d),
                     .causal = c->causal,
                     .dropout = c->dropout,
                     .rng = rng,
                     .round_bf16 = round_bf16}};
    a.o = tensor_empty(dtype, SHAPE(c->b, c->h, c->t, c->dv));
    a.lse = tensor_empty(dtype, SHAPE(c->b, c->h, c->t));
    a.gq = tensor_empty_like(a.q), a.gk = tensor_empty_like(a.k), a.gv = tensor_empty_like(a.v);
    if (dtype == PETAL_F64) {
        forward_f64(&a);
        backward_f64(&a);
    } else {
        forward_f32(&a);
        backward_f32(&a);
    }
    return a;
}

// The tiled algorithm against tensor_attention's GEMM path: the output and the three gradients.
static void check_case(const attn_case *c, petal_dtype dtype, double tol) {
    int mark = scope_begin();
    rng_generator gen = {9, 4};
    rng_state rng = {9, 4}; // what tensor_attention reserves from gen
    tiled a = run_tiled(c, dtype, false, rng);
    setenv("PETAL_ATTENTION", "unfused", 1); // not the CPU's own fused kernels (f32)
    tensor *q = tensor_set_requires_grad(tensor_contiguous(a.q), true);
    tensor *k = tensor_set_requires_grad(tensor_contiguous(a.k), true);
    tensor *v = tensor_set_requires_grad(tensor_contiguous(a.v), true);
    attention_options o = {a.mask, c->causal, 0, c->dropout, c->dropout > 0, &gen};
    tensor *want = tensor_attention(q, k, v, &o);
    autograd_backward(want, a.go, false);
    const char *type = dtype_name(dtype);
    char what[4][128];
    const char *part[4] = {"output", "dq", "dk", "dv"};
    for (int i = 0; i < 4; i++)
        snprintf(what[i], sizeof what[i], "%s (%s) %s", c->name, type, part[i]);
    ck_assert_msg(tensors_close_scaled(what[0], a.o, want, tol), "%s", what[0]);
    ck_assert_msg(tensors_close_scaled(what[1], a.gq, q->grad, tol), "%s", what[1]);
    ck_assert_msg(tensors_close_scaled(what[2], a.gk, k->grad, tol), "%s", what[2]);
    ck_assert_msg(tensors_close_scaled(what[3], a.gv, v->grad, tol), "%s", what[3]);
    scope_end(mark);
}

START_TEST(test_tiled_matches_unfused_f64) {
    check_case(&cases[_i], PETAL_F64, 1e-12);
}
END_TEST

START_TEST(test_tiled_matches_unfused_f32) {
    check_case(&cases[_i], PETAL_F32, 2e-5);
}
END_TEST

// The lse saved per row is log sum_j exp(s_j) (-inf on a row with no visible key), and a fully
// masked row gives NaN, as the unfused softmax does.
START_TEST(test_lse_and_dead_rows) {
    int mark = scope_begin();
    const attn_case *c = &cases[4]; // row with no visible key
    tiled a = run_tiled(c, PETAL_F64, false, (rng_state){0, 0});
    tensor *scores = tensor_add(
        tensor_mul_scalar(tensor_matmul(a.q, tensor_transpose(a.k, -1, -2)), a.p.scale), a.mask);
    tensor *want = tensor_logsumexp(scores, 3, false);
    ck_assert(tensors_close_scaled("lse", a.lse, want, 1e-13));
    for (int64_t h = 0; h < c->h; h++) {
        ck_assert(isinf(tensor_get_flat(a.lse, h * c->t + 2)));
        for (int64_t d = 0; d < c->dv; d++)
            ck_assert(isnan(tensor_get_flat(a.o, (h * c->t + 2) * c->dv + d)));
        ck_assert(!isnan(tensor_get_flat(a.o, (h * c->t + 1) * c->dv)));
    }
    scope_end(mark);
}
END_TEST

static double max_abs_diff(const tensor *a, const tensor *b) {
    double worst = 0;
    for (int64_t i = 0; i < tensor_numel(a); i++)
        worst = fmax(worst, fabs(tensor_get_flat(a, i) - tensor_get_flat(b, i)));
    return worst;
}

// round_bf16: the f32 result moves to bf16 accuracy (near the f64 result, clearly off the plain
// f32 one), and inputs already bf16 see only the rounding of P and dS.
START_TEST(test_round_bf16) {
    int mark = scope_begin();
    const attn_case *c = &cases[10]; // dropout, mask, causal
    rng_state rng = {5, 0};
    tiled exact = run_tiled(c, PETAL_F64, false, rng), plain = run_tiled(c, PETAL_F32, false, rng);
    tiled rounded = run_tiled(c, PETAL_F32, true, rng);
    tensor *got[4] = {rounded.o, rounded.gq, rounded.gk, rounded.gv};
    tensor *want[4] = {exact.o, exact.gq, exact.gk, exact.gv};
    tensor *f32[4] = {plain.o, plain.gq, plain.gk, plain.gv};
    for (int i = 0; i < 4; i++) {
        ck_assert(tensors_close_scaled("bf16-rounded vs f64", got[i], want[i], 3e-2));
        ck_assert(tensors_close_scaled("plain f32 vs f64", f32[i], want[i], 1e-5));
        ck_assert_msg(max_abs_diff(got[i], f32[i]) > 1e-3,
                      "round_bf16 changed nothing in result %d", i);
    }
    ck_assert(attn_round_f32(1.0f + 1.0f / 256, true) == 1.0f); // ties to even
    ck_assert(attn_round_f32(1.0f + 3.0f / 256, true) == 1.0f + 1.0f / 64);
    ck_assert(attn_round_f64(0.1, true) == (double)bf16_to_f32(f32_to_bf16(0.1f)));
    ck_assert(attn_round_f32(0.1f, false) == 0.1f);
    scope_end(mark);
}
END_TEST

// The skipped tiles hold no visible key (end, begin), the bounds are tight, and no row without a
// visible key is skipped (its NaN must reach the gradients), for every size.
START_TEST(test_causal_tile_bounds) {
    for (int64_t t = 1; t <= 40; t++)
        for (int64_t s = 1; s <= 40; s++) {
            for (int64_t i0 = 0; i0 < t; i0 += ATTN_TILE_Q) {
                int64_t i_last = i0 + ATTN_TILE_Q < t ? i0 + ATTN_TILE_Q - 1 : t - 1;
                int64_t end = attn_key_end(true, i_last, t, s);
                for (int64_t i = i0; i <= i_last; i++)
                    for (int64_t j = end; j < s; j++) ck_assert(!attn_visible(true, i, j, t, s));
                ck_assert(end >= 1 && (end == 1 || attn_visible(true, i_last, end - 1, t, s)));
                ck_assert(attn_key_end(false, i_last, t, s) == s);
            }
            for (int64_t j0 = 0; j0 < s; j0++) {
                int64_t begin = attn_query_begin(true, j0, t, s);
                for (int64_t i = 0; i < begin; i++) {
                    ck_assert(attn_visible(true, i, 0, t, s)); // sees some key
                    for (int64_t j = j0; j < s; j++) ck_assert(!attn_visible(true, i, j, t, s));
                }
                ck_assert(begin < t && (begin == 0 || attn_visible(true, begin, j0, t, s)));
                ck_assert(attn_query_begin(false, j0, t, s) == 0);
            }
        }
}
END_TEST

// Broadcast strides: size-1 and missing dims read the same element; dropout indices are P's
// row-major offsets.
START_TEST(test_mask_strides_and_drop_index) {
    int64_t out[4];
    attn_mask_strides(SHAPE(3, 1, 1, 7), (const int64_t[]){7, 7, 7, 1}, out);
    ck_assert(out[0] == 7 && out[1] == 0 && out[2] == 0 && out[3] == 1);
    attn_mask_strides(SHAPE(5, 7), (const int64_t[]){7, 1}, out);
    ck_assert(out[0] == 0 && out[1] == 0 && out[2] == 7 && out[3] == 1);
    attn_mask_strides(SHAPE(5, 1), (const int64_t[]){1, 1}, out);
    ck_assert(out[2] == 1 && out[3] == 0);
    ck_assert(attn_mask_offset((const int64_t[]){7, 0, 0, 1}, 2, 5, 4, 3) == 17);
    ck_assert(attn_drop_index(1, 2, 3, 4, 3, 5, 6) == ((1 * 3 + 2) * 5 + 3) * 6 + 4);
    attn_strides st = {60, 20, 4};
    ck_assert(attn_offset(st, 1, 2, 3) == 112);
}
END_TEST

static void attention_with_bad_env(void) {
    setenv("PETAL_ATTENTION", "flash", 1);
    tensor *q = tensor_zeros(PETAL_F32, SHAPE(1, 1, 2, 4));
    tensor_attention(q, q, q, NULL);
}

// PETAL_ATTENTION takes fused or unfused; anything else is refused on every backend. unfused (the
// CPU's path anyway) gives the same result as unset.
START_TEST(test_env_checked) {
    ck_assert(aborts_with(attention_with_bad_env,
                          "PETAL_ATTENTION=flash: expected fused (the default) or unfused"));
    int mark = scope_begin();
    tensor *q = random_input(PETAL_F64, 1, 2, 5, 4, 1), *k = random_input(PETAL_F64, 1, 2, 6, 4, 2);
    tensor *plain = tensor_attention(q, k, k, NULL);
    setenv("PETAL_ATTENTION", "unfused", 1);
    ck_assert(
        tensors_close("PETAL_ATTENTION=unfused", tensor_attention(q, k, k, NULL), plain, 0, 0));
    unsetenv("PETAL_ATTENTION");
    scope_end(mark);
}
END_TEST

int main(void) {
    Suite *s = suite_create("attention_tile");
    int n = (int)(sizeof cases / sizeof cases[0]);
    TCase *vs = tcase_with_timeout("tiled vs unfused", 60);
    tcase_add_loop_test(vs, test_tiled_matches_unfused_f64, 0, n);
    tcase_add_loop_test(vs, test_tiled_matches_unfused_f32, 0, n);
    suite_add_tcase(s, vs);
    TCase *parts = tcase_with_timeout("pieces", 30);
    tcase_add_test(parts, test_lse_and_dead_rows);
    tcase_add_test(parts, test_round_bf16);
    tcase_add_test(parts, test_causal_tile_bounds);
    tcase_add_test(parts, test_mask_strides_and_drop_index);
    tcase_add_test(parts, test_env_checked);
    suite_add_tcase(s, parts);
    return run_suite(s);
}
