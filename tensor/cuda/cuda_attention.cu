// Fused scaled-dot-product attention on the device, forward and backward: the flash-style tiled
// algorithm of tensor/attention_tile.h, whose pieces every thread calls (the CPU runs the same
// pieces in tests/ops/test_attention_tile.c). P (B, H, T, S) is never stored: the forward keeps a
// running max and sum per query row and writes o and the row's log-sum-exp; the backward
// recomputes P tile by tile from q, k and lse.
//
// A block is ATTN_TILE_Q rows of ATTN_LANES threads; a row's lanes split the head dim (lane d0
// holds columns d0, d0 + ATTN_LANES, ...) and meet in a fixed xor-shuffle tree, so every result
// repeats bit for bit. Keys and values (or queries and output gradients) pass through shared
// memory in tiles of ATTN_TILE_K rows. Plain arithmetic, no tensor cores (a bf16 tensor-core
// version is future work; round_bf16 rounds where it would).
//
// The backward is two kernels and uses no atomics: the dq pass (one row per query, looping over
// key tiles) also writes D_i = dO_i . o_i; the dk/dv pass (one row per key, looping over query
// tiles) then reads it and accumulates dk_j and dv_j in its registers.
#include "tensor/cuda/cuda_kernels.cuh"
extern "C" {
#include "tensor/attention_tile.h"
}

// attention_tile.h's functions by type (its names carry the type: C has no overloads).
#define ATTN_OVERLOADS(T, S)                                                                       \
    __device__ inline T attn_round(T x, bool r) {                                                  \
        return attn_round_##S(x, r);                                                               \
    }                                                                                              \
    __device__ inline T attn_score(T dot, T scale, T mask, bool visible) {                         \
        return attn_score_##S(dot, scale, mask, visible);                                          \
    }                                                                                              \
    __device__ inline T attn_drop(T x, const attention_params *a, int64_t e) {                     \
        return attn_drop_##S(x, a, e);                                                             \
    }                                                                                              \
    __device__ inline T attn_partial_dot(const T *x, const T *y, int d0, int step, int dim) {      \
        return attn_partial_dot_##S(x, y, d0, step, dim);                                          \
    }                                                                                              \
    __device__ inline double attn_partial_dot_wide(const T *x, const T *y, int d0, int step,       \
                                                   int dim) {                                      \
        return attn_partial_dot_wide_##S(x, y, d0, step, dim);                                     \
    }                                                                                              \
    __device__ inline void attn_axpy(T *dst, T w, const T *y, int d0, int step, int dim) {         \
        attn_axpy_##S(dst, w, y, d0, step, dim);                                                   \
    }                                                                                              \
    __device__ inline T attn_online_step(T *m, T *l, T *s, int n) {                                \
        return attn_online_step_##S(m, l, s, n);                                                   \
    }                                                                                              \
    __device__ inline void attn_accumulate(T *acc, T alpha, const T *p, int n, const T *v,         \
                                           int ldv, int d0, int step, int dim) {                   \
        attn_accumulate_##S(acc, alpha, p, n, v, ldv, d0, step, dim);                              \
    }                                                                                              \
    __device__ inline T attn_finish(T *o, const T *acc, T m, T l, int d0, int step, int dim) {     \
        return attn_finish_##S(o, acc, m, l, d0, step, dim);                                       \
    }                                                                                              \
    __device__ inline T attn_prob(T s, T lse) {                                                    \
        return attn_prob_##S(s, lse);                                                              \
    }                                                                                              \
    __device__ inline T attn_dscore(T p, T dp, T d) {                                              \
        return attn_dscore_##S(p, dp, d);                                                          \
    }
ATTN_OVERLOADS(float, f32)
ATTN_OVERLOADS(double, f64)
#undef ATTN_OVERLOADS

// Everything a pass reads: the views (strides in elements, last dim contiguous), the broadcast
// mask's strides, the sizes and the parameters. The backward's fields are NULL in the forward.
template <typename T> struct attn_args {
    const T *q, *k, *v, *mask, *go;
    T *o, *lse, *gq, *gk, *gv;
    T *dsum; // D (B, H, T): written by the dq pass, read by the dk/dv pass
    attn_strides sq, sk, sv, so, sgo, sgq, sgk, sgv;
    int64_t mst[4];
    int64_t heads, t, s;
    int d, dv;
    attention_params p;
};

// The sum of v over the ATTN_LANES lanes of this thread's row; every lane gets the same bits
// (each step adds the same two values in either order).
template <typename V> __device__ inline V attn_lanes_sum(V v) {
    for (int o = ATTN_LANES / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Copies rows r0 .. r0 + n of a (B, H, rows, dim) view into a tile of rows ATTN_HEAD_MAX apart.
template <typename T>
__device__ void attn_load_tile(T *tile, const T *x, attn_strides st, int64_t b, int64_t h,
                               int64_t r0, int n, int dim, bool round_bf16) {
    int tid = threadIdx.y * blockDim.x + threadIdx.x, threads = blockDim.x * blockDim.y;
    for (int e = tid; e < n * dim; e += threads) {
        int r = e / dim, d = e % dim;
        tile[r * ATTN_HEAD_MAX + d] = attn_round(x[attn_offset(st, b, h, r0 + r) + d], round_bf16);
    }
}

// A lane's columns of one row, rounded as loaded.
template <typename T>
__device__ void attn_load_lane(T *dst, const T *row, int lane, int dim, bool round_bf16) {
    ATTN_FOR_COLS(c, d, lane, ATTN_LANES, dim)
    dst[c] = attn_round(row[d], round_bf16);
}

// The score of (i, j): the lanes' dot product, scaled, the mask added, causal applied.
template <typename T>
__device__ inline T attn_score_at(const attn_args<T> &a, T dot, int64_t b, int64_t h, int64_t i,
                                  int64_t j, bool live) {
    T mask = a.mask && live ? a.mask[attn_mask_offset(a.mst, b, h, i, j)] : (T)0;
    return attn_score(dot, (T)a.p.scale, mask, attn_visible(a.p.causal, i, j, a.t, a.s));
}

// The row a thread reads: its own, or row 0 for the threads past the end (which only join the
// loads and the lanes' sums).
__device__ inline int64_t live_row(int64_t r, int64_t rows) {
    return r < rows ? r : 0;
}

// The (batch, head) of this block: blockIdx.x.
#define ATTN_BLOCK_HEAD(a, b, h) int64_t b = blockIdx.x / (a).heads, h = blockIdx.x % (a).heads

template <typename T> __global__ void attention_forward_kernel(attn_args<T> a) {
    __shared__ T kt[ATTN_TILE_K * ATTN_HEAD_MAX]; // (ATTN_TILE_K, D) keys of the tile
    __shared__ T vt[ATTN_TILE_K * ATTN_HEAD_MAX]; // (ATTN_TILE_K, Dv) their values
    ATTN_BLOCK_HEAD(a, b, h);
    int lane = threadIdx.x;
    int64_t i0 = blockIdx.y * (int64_t)ATTN_TILE_Q, i = i0 + threadIdx.y;
    bool live = i < a.t, rb = a.p.round_bf16;
    T q[ATTN_COLS] = {0}, acc[ATTN_COLS] = {0};
    attn_load_lane(q, a.q + attn_offset(a.sq, b, h, live ? i : 0), lane, a.d, rb);
    T m = (T)-INFINITY, l = 0;
    int64_t i_last = (i0 + ATTN_TILE_Q < a.t ? i0 + ATTN_TILE_Q : a.t) - 1;
    int64_t end = attn_key_end(a.p.causal, i_last, a.t, a.s);
    for (int64_t j0 = 0; j0 < end; j0 += ATTN_TILE_K) {
        int n = (int)(end - j0 < ATTN_TILE_K ? end - j0 : ATTN_TILE_K);
        __syncthreads(); // the previous tile is read
        attn_load_tile(kt, a.k, a.sk, b, h, j0, n, a.d, rb);
        attn_load_tile(vt, a.v, a.sv, b, h, j0, n, a.dv, rb);
        __syncthreads();
        T s[ATTN_TILE_K];
        ATTN_FOR_TILE(j, n) {
            T dot =
                attn_lanes_sum(attn_partial_dot(q, kt + j * ATTN_HEAD_MAX, lane, ATTN_LANES, a.d));
            s[j] = attn_score_at(a, dot, b, h, i, j0 + j, live);
        }
        T alpha = attn_online_step(&m, &l, s, n);
        ATTN_FOR_TILE(j, n) {
            int64_t e = attn_drop_index(b, h, i, j0 + j, a.heads, a.t, a.s);
            s[j] = attn_round(attn_drop(s[j], &a.p, e), rb);
        }
        attn_accumulate(acc, alpha, s, n, vt, ATTN_HEAD_MAX, lane, ATTN_LANES, a.dv);
    }
    if (!live) return;
    T lse = attn_finish(a.o + attn_offset(a.so, b, h, i), acc, m, l, lane, ATTN_LANES, a.dv);
    if (lane == 0) a.lse[blockIdx.x * a.t + i] = lse;
}

// dq_i = scale sum_j dS_ij k_j over the key tiles, one query row per ATTN_LANES threads; writes D.
template <typename T> __global__ void attention_dq_kernel(attn_args<T> a) {
    __shared__ T kt[ATTN_TILE_K * ATTN_HEAD_MAX];
    __shared__ T vt[ATTN_TILE_K * ATTN_HEAD_MAX];
    ATTN_BLOCK_HEAD(a, b, h);
    int lane = threadIdx.x;
    int64_t i0 = blockIdx.y * (int64_t)ATTN_TILE_Q, i = i0 + threadIdx.y, row = live_row(i, a.t);
    bool live = i < a.t, rb = a.p.round_bf16;
    T q[ATTN_COLS] = {0}, g[ATTN_COLS] = {0}, dq[ATTN_COLS] = {0};
    attn_load_lane(q, a.q + attn_offset(a.sq, b, h, row), lane, a.d, rb);
    attn_load_lane(g, a.go + attn_offset(a.sgo, b, h, row), lane, a.dv, rb);
    const T *orow = a.o + attn_offset(a.so, b, h, row);
    T dsum = (T)attn_lanes_sum(attn_partial_dot_wide(g, orow, lane, ATTN_LANES, a.dv));
    T lse = a.lse[blockIdx.x * a.t + row];
    if (live && lane == 0) a.dsum[blockIdx.x * a.t + i] = dsum;
    int64_t i_last = (i0 + ATTN_TILE_Q < a.t ? i0 + ATTN_TILE_Q : a.t) - 1;
    int64_t end = attn_key_end(a.p.causal, i_last, a.t, a.s);
    for (int64_t j0 = 0; j0 < end; j0 += ATTN_TILE_K) {
        int n = (int)(end - j0 < ATTN_TILE_K ? end - j0 : ATTN_TILE_K);
        __syncthreads();
        attn_load_tile(kt, a.k, a.sk, b, h, j0, n, a.d, rb);
        attn_load_tile(vt, a.v, a.sv, b, h, j0, n, a.dv, rb);
        __syncthreads();
        ATTN_FOR_TILE(j, n) {
            const T *kj = kt + j * ATTN_HEAD_MAX, *vj = vt + j * ATTN_HEAD_MAX;
            T dot = attn_lanes_sum(attn_partial_dot(q, kj, lane, ATTN_LANES, a.d));
            T p = attn_prob(attn_score_at(a, dot, b, h, i, j0 + j, live), lse);
            T dp = attn_lanes_sum(attn_partial_dot(g, vj, lane, ATTN_LANES, a.dv));
            int64_t e = attn_drop_index(b, h, i, j0 + j, a.heads, a.t, a.s);
            T ds = attn_round(attn_dscore(p, attn_drop(dp, &a.p, e), dsum), rb);
            attn_axpy(dq, ds, kj, lane, ATTN_LANES, a.d);
        }
    }
    if (!live) return;
    T *out = a.gq + attn_offset(a.sgq, b, h, i), scale = (T)a.p.scale;
    ATTN_FOR_COLS(c, d, lane, ATTN_LANES, a.d) out[d] = dq[c] * scale;
}

// dk_j = scale sum_i dS_ij q_i and dv_j = sum_i drop(P_ij) dO_i over the query tiles, one key row
// per ATTN_LANES threads, in query order.
template <typename T> __global__ void attention_dkdv_kernel(attn_args<T> a) {
    __shared__ T qt[ATTN_TILE_K * ATTN_HEAD_MAX]; // (ATTN_TILE_K, D) queries of the tile
    __shared__ T gt[ATTN_TILE_K * ATTN_HEAD_MAX]; // (ATTN_TILE_K, Dv) their output gradients
    __shared__ T lse_t[ATTN_TILE_K], dsum_t[ATTN_TILE_K];
    ATTN_BLOCK_HEAD(a, b, h);
    int lane = threadIdx.x, tid = threadIdx.y * blockDim.x + threadIdx.x;
    int64_t j0 = blockIdx.y * (int64_t)ATTN_TILE_Q, j = j0 + threadIdx.y, row = live_row(j, a.s);
    bool live = j < a.s, rb = a.p.round_bf16;
    T k[ATTN_COLS] = {0}, v[ATTN_COLS] = {0}, dk[ATTN_COLS] = {0}, dv[ATTN_COLS] = {0};
    attn_load_lane(k, a.k + attn_offset(a.sk, b, h, row), lane, a.d, rb);
    attn_load_lane(v, a.v + attn_offset(a.sv, b, h, row), lane, a.dv, rb);
    for (int64_t i0 = attn_query_begin(a.p.causal, j0, a.t, a.s); i0 < a.t; i0 += ATTN_TILE_K) {
        int n = (int)(a.t - i0 < ATTN_TILE_K ? a.t - i0 : ATTN_TILE_K);
        __syncthreads();
        attn_load_tile(qt, a.q, a.sq, b, h, i0, n, a.d, rb);
        attn_load_tile(gt, a.go, a.sgo, b, h, i0, n, a.dv, rb);
        if (tid < n) {
            lse_t[tid] = a.lse[blockIdx.x * a.t + i0 + tid];
            dsum_t[tid] = a.dsum[blockIdx.x * a.t + i0 + tid];
        }
        __syncthreads();
        ATTN_FOR_TILE(r, n) {
            const T *qi = qt + r * ATTN_HEAD_MAX, *gi = gt + r * ATTN_HEAD_MAX;
            int64_t i = i0 + r, e = attn_drop_index(b, h, i, j, a.heads, a.t, a.s);
            T dot = attn_lanes_sum(attn_partial_dot(k, qi, lane, ATTN_LANES, a.d));
            T p = attn_prob(attn_score_at(a, dot, b, h, i, j, live), lse_t[r]);
            attn_axpy(dv, attn_round(attn_drop(p, &a.p, e), rb), gi, lane, ATTN_LANES, a.dv);
            T dp = attn_lanes_sum(attn_partial_dot(v, gi, lane, ATTN_LANES, a.dv));
            T ds = attn_round(attn_dscore(p, attn_drop(dp, &a.p, e), dsum_t[r]), rb);
            attn_axpy(dk, ds, qi, lane, ATTN_LANES, a.d);
        }
    }
    if (!live) return;
    T *gk = a.gk + attn_offset(a.sgk, b, h, j), *gv = a.gv + attn_offset(a.sgv, b, h, j);
    T scale = (T)a.p.scale;
    ATTN_FOR_COLS(c, d, lane, ATTN_LANES, a.d) gk[d] = dk[c] * scale;
    ATTN_FOR_COLS(c, d, lane, ATTN_LANES, a.dv) gv[d] = dv[c];
}

// ---- host side ----

static attn_strides strides_of(const char *op, const char *name, const tensor *t) {
    PETAL_CHECK(t->ndim == 4 && (t->strides[3] == 1 || t->shape[3] == 1),
                "%s: %s must be 4-d with its last dim contiguous", op, name);
    return attn_strides{t->strides[0], t->strides[1], t->strides[2]};
}

template <typename T>
static attn_args<T> args_of(const char *op, const tensor *q, const tensor *k, const tensor *v,
                            const tensor *o, const tensor *lse, const tensor *mask,
                            const attention_params *p) {
    attn_args<T> a = {};
    a.q = cuda_data<T>(q), a.k = cuda_data<T>(k), a.v = cuda_data<T>(v);
    a.o = cuda_data<T>(o), a.lse = cuda_data<T>(lse);
    a.sq = strides_of(op, "q", q), a.sk = strides_of(op, "k", k), a.sv = strides_of(op, "v", v);
    a.so = strides_of(op, "o", o);
    a.heads = q->shape[1], a.t = q->shape[2], a.s = k->shape[2];
    a.d = (int)q->shape[3], a.dv = (int)v->shape[3];
    PETAL_CHECK(a.d <= ATTN_HEAD_MAX && a.dv <= ATTN_HEAD_MAX,
                "%s: head dims %d and %d, the fused kernels take at most %d", op, a.d, a.dv,
                ATTN_HEAD_MAX);
    PETAL_CHECK(tensor_is_contiguous(lse), "%s: lse must be contiguous", op);
    if (mask) {
        a.mask = cuda_data<T>(mask);
        attn_mask_strides(mask->ndim, mask->shape, mask->strides, a.mst);
    }
    a.p = *p;
    return a;
}

// Blocks: x over (batch, head), y over tiles of ATTN_TILE_Q rows.
static dim3 attn_grid(const char *op, const tensor *q, int64_t rows) {
    int64_t bh = q->shape[0] * q->shape[1], tiles = (rows + ATTN_TILE_Q - 1) / ATTN_TILE_Q;
    PETAL_CHECK(bh < ((int64_t)1 << 31) && tiles < 65536,
                "%s: %lld (batch, head) pairs or %lld row tiles are too many", op, (long long)bh,
                (long long)tiles);
    return dim3((unsigned int)bh, (unsigned int)tiles);
}

template <typename T>
static void forward_typed(cudaStream_t stream, tensor *o, tensor *lse, const tensor *q,
                          const tensor *k, const tensor *v, const tensor *mask,
                          const attention_params *p) {
    attn_args<T> a = args_of<T>("attention", q, k, v, o, lse, mask, p);
    cuda_launch(attention_forward_kernel<T>, attn_grid("attention", q, a.t),
                dim3(ATTN_LANES, ATTN_TILE_Q), 0, stream, a);
}

void cuda_attention(tensor *o, tensor *lse, const tensor *q, const tensor *k, const tensor *v,
                    const tensor *mask, const attention_params *p) {
    cudaStream_t stream = cuda_stream_for("attention", {o, lse, q, k, v, mask});
    if (tensor_numel(o) == 0) return;
    if (q->dtype == PETAL_F32)
        forward_typed<float>(stream, o, lse, q, k, v, mask, p);
    else
        forward_typed<double>(stream, o, lse, q, k, v, mask, p);
}

template <typename T>
static void backward_typed(cudaStream_t stream, tensor *gq, tensor *gk, tensor *gv,
                           const tensor *go, const tensor *q, const tensor *k, const tensor *v,
                           const tensor *o, const tensor *lse, const tensor *mask,
                           const attention_params *p) {
    const char *op = "attention backward";
    attn_args<T> a = args_of<T>(op, q, k, v, o, lse, mask, p);
    a.go = cuda_data<T>(go), a.gq = cuda_data<T>(gq), a.gk = cuda_data<T>(gk);
    a.gv = cuda_data<T>(gv);
    a.sgo = strides_of(op, "the output gradient", go), a.sgq = strides_of(op, "dq", gq);
    a.sgk = strides_of(op, "dk", gk), a.sgv = strides_of(op, "dv", gv);
    size_t capacity, nbytes = (size_t)tensor_numel(lse) * sizeof(T);
    a.dsum = (T *)cuda_scratch_alloc(q->device.index, nbytes, &capacity);
    dim3 block(ATTN_LANES, ATTN_TILE_Q);
    cuda_launch(attention_dq_kernel<T>, attn_grid(op, q, a.t), block, 0, stream, a);
    cuda_launch(attention_dkdv_kernel<T>, attn_grid(op, q, a.s), block, 0, stream, a);
    cuda_scratch_free(q->device.index, a.dsum, capacity); // stream-ordered: after the kernels
}

void cuda_attention_backward(tensor *gq, tensor *gk, tensor *gv, const tensor *go, const tensor *q,
                             const tensor *k, const tensor *v, const tensor *o, const tensor *lse,
                             const tensor *mask, const attention_params *p) {
    cudaStream_t stream =
        cuda_stream_for("attention backward", {gq, gk, gv, go, q, k, v, o, lse, mask});
    if (tensor_numel(q) == 0 || tensor_numel(k) == 0) return;
    if (q->dtype == PETAL_F32)
        backward_typed<float>(stream, gq, gk, gv, go, q, k, v, o, lse, mask, p);
    else
        backward_typed<double>(stream, gq, gk, gv, go, q, k, v, o, lse, mask, p);
}
