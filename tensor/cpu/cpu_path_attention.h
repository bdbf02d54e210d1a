// The fused attention's kernels for one CPU path (tensor/cpu/cpu_attention.c runs them): two GEMM
// micro-kernels, the scores' softmax row, a transpose and dropout's keep factors, included (by
// tensor/cpu/cpu_path_table.h) once into each path's translation unit (tensor/cpu/cpu_path_*.c),
// after tensor/cpu/cpu_path_softmax.h and cpu_path_dropout.h. Each path
// defines first ATTN_MR and ATTN_NV (at most 4): a tile of ATTN_MR rows by ATTN_NV vectors, its
// accumulators and one row of b fitting the path's vector registers.
//
// An attention head's products are small (197 x 197 x 64 in a ViT-B), and OpenBLAS ran them at
// 40% of the rate it reaches on the block's large products: it packs both operands on every call
// and its edge tiles are slow. The micro-kernels here read their operands where the driver left
// them, in L1 and L2: c (mr x nv vectors) = alpha * sum_kk a(r, kk) b[kk, :], with b's rows nv
// vectors long and a(r, kk) broadcast from
//   rows form   a[r * as + kk]: a's rows run along kk (P v, dS k: a is a row of P; q k^T and
//               dO v^T, with b = k or v transposed into a scratch panel);
//   panel form  a[kk * as + r]: a's columns run along kk (P'^T dO, dS^T q: a is a column of
//               P), one pointer for all the tile's rows.
// Rows mr.. of a tile are not stored: the rows form computes them from row mr - 1 again (a may be
// a head's q, the last rows of its tensor), the panel form from whatever a holds there (the
// driver's buffers, padded).
#include "tensor/cpu/cpu_path.h"

#ifndef KEEP_IN_REGISTER // cpu_gemm_narrow.h defines it on the paths that have narrow kernels
#define KEEP_IN_REGISTER(x) __asm__("" : "+x"(x))
#endif

__attribute__((always_inline)) static inline vec vec_splat(float x) {
#if VEC == 16
    return (vec)_mm512_set1_ps(x);
#elif VEC == 8
    return (vec)_mm256_set1_ps(x);
#else
    return (vec)_mm_set1_ps(x);
#endif
}

// The body of both forms for NV vectors of columns: ars and aks are constants in each caller, so
// the compiler keeps one pointer per row (rows form) or one for the tile (panel form).
#define ATTN_UNROLL _Pragma("GCC unroll 16")
#define ATTN_TILE_BODY(NV, ars, aks, clamp)                                                        \
    vec acc[ATTN_MR][NV];                                                                          \
    const float *ap[ATTN_MR];                                                                      \
    ATTN_UNROLL for (int r = 0; r < ATTN_MR; r++) {                                                \
        ap[r] = a + (int64_t)((clamp) && r >= mr ? mr - 1 : r) * (ars);                            \
        ATTN_UNROLL for (int v = 0; v < NV; v++) acc[r][v] = (vec){0};                             \
    }                                                                                              \
    for (int64_t kk = 0; kk < k; kk++) {                                                           \
        vec bv[NV];                                                                                \
        ATTN_UNROLL for (int v = 0; v < NV; v++) {                                                 \
            bv[v] = *(const vec *)(b + kk * ldb + v * VEC);                                        \
            KEEP_IN_REGISTER(bv[v]);                                                               \
        }                                                                                          \
        ATTN_UNROLL for (int r = 0; r < ATTN_MR; r++) {                                            \
            vec av = vec_splat(ap[r][kk * (aks)]);                                                 \
            ATTN_UNROLL for (int v = 0; v < NV; v++) acc[r][v] += av * bv[v];                      \
        }                                                                                          \
    }                                                                                              \
    ATTN_UNROLL for (int r = 0; r < ATTN_MR; r++) if (r < mr)                                      \
            ATTN_UNROLL for (int v = 0; v < NV; v++) *                                             \
        (vec *)(c + r * ldc + v * VEC) = acc[r][v] * alpha;

// One instance per (form, nv): a tile narrower than ATTN_NV vectors (the last columns of a
// score row) takes the instance of its width instead of computing padding.
#define ATTN_TILE_DEFINE(name, NV, ars, aks, clamp)                                                \
    __attribute__((noinline)) static void name##_##NV(int64_t k, const float *a, int64_t as,       \
                                                      const float *b, int64_t ldb, float alpha,    \
                                                      float *c, int64_t ldc, int64_t mr) {         \
        ATTN_TILE_BODY(NV, ars, aks, clamp)                                                        \
    }
#define ATTN_TILE_WIDTHS(name, ars, aks, clamp)                                                    \
    ATTN_TILE_DEFINE(name, 1, ars, aks, clamp)                                                     \
    ATTN_TILE_DEFINE(name, 2, ars, aks, clamp)                                                     \
    ATTN_TILE_DEFINE(name, 3, ars, aks, clamp)                                                     \
    ATTN_TILE_DEFINE(name, 4, ars, aks, clamp)
ATTN_TILE_WIDTHS(attn_rows, as, 1, 1)
ATTN_TILE_WIDTHS(attn_panel, 1, as, 0)
#undef ATTN_TILE_WIDTHS
#undef ATTN_TILE_DEFINE
#undef ATTN_TILE_BODY
#undef ATTN_UNROLL

// The tile of nv <= ATTN_NV vectors of columns (cpu_attn_tile_fn).
#define ATTN_TILE_DISPATCH(name)                                                                   \
    static void name##_tile(int64_t k, const float *a, int64_t as, const float *b, int64_t ldb,    \
                            float alpha, float *c, int64_t ldc, int64_t mr, int nv) {              \
        void (*const fn[4])(int64_t, const float *, int64_t, const float *, int64_t, float,        \
                            float *, int64_t, int64_t) = {name##_1, name##_2, name##_3, name##_4}; \
        fn[nv - 1](k, a, as, b, ldb, alpha, c, ldc, mr);                                           \
    }
ATTN_TILE_DISPATCH(attn_rows)
ATTN_TILE_DISPATCH(attn_panel)
#undef ATTN_TILE_DISPATCH

// A TB x TB block of src (rows lds apart) transposed into dst (rows ldd apart), in vector
// shuffles: element by element, the transposes of k and v took a seventh of the attention's time.
#if VEC >= 8
#define TB 8
__attribute__((always_inline)) static inline void transpose_block(float *dst, int64_t ldd,
                                                                  const float *src, int64_t lds) {
    __m256 r[8], t[8], u[8];
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * lds);
    _Pragma("GCC unroll 4") for (int i = 0; i < 8;
                                 i +=
                                 2) { // (a0 b0 a1 b1 | a4 b4 a5 b5), (a2 b2 a3 b3 | a6 b6 a7 b7)
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    _Pragma("GCC unroll 2") for (int i = 0; i < 8;
                                 i +=
                                 4) { // (a0 b0 c0 d0 | a4 b4 c4 d4), ... (a3 b3 c3 d3 | a7 ...)
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    _Pragma("GCC unroll 4") for (int c = 0; c < 4;
                                 c++) { // columns c and c + 4: the halves of rows a-d and e-h
        _mm256_storeu_ps(dst + c * ldd, _mm256_permute2f128_ps(u[c], u[c + 4], 0x20));
        _mm256_storeu_ps(dst + (c + 4) * ldd, _mm256_permute2f128_ps(u[c], u[c + 4], 0x31));
    }
}
#else
#define TB 4
__attribute__((always_inline)) static inline void transpose_block(float *dst, int64_t ldd,
                                                                  const float *src, int64_t lds) {
    __m128 r0 = _mm_loadu_ps(src), r1 = _mm_loadu_ps(src + lds);
    __m128 r2 = _mm_loadu_ps(src + 2 * lds), r3 = _mm_loadu_ps(src + 3 * lds);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    _mm_storeu_ps(dst, r0);
    _mm_storeu_ps(dst + ldd, r1);
    _mm_storeu_ps(dst + 2 * ldd, r2);
    _mm_storeu_ps(dst + 3 * ldd, r3);
}
#endif

// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols; zero for rows <= r < ldd: a (rows,
// cols) block transposed into (cols, ldd), the padding zero.
static void attn_transpose(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows,
                           int64_t cols) {
    int64_t r = 0;
    for (; r + TB <= rows; r += TB) {
        int64_t c = 0;
        for (; c + TB <= cols; c += TB) {
            // k and v come from memory (a projection written long before); the next block's
            // rows are fetched while this one is shuffled
            for (int64_t i = 0; i < TB && r + TB + i < rows; i++)
                __builtin_prefetch(src + (r + TB + i) * lds + c);
            transpose_block(dst + c * ldd + r, ldd, src + r * lds + c, lds);
        }
        for (; c < cols; c++)
            for (int64_t i = 0; i < TB; i++) dst[c * ldd + r + i] = src[(r + i) * lds + c];
    }
    for (int64_t c = 0; c < cols; c++) {
        for (int64_t i = r; i < rows; i++) dst[c * ldd + i] = src[i * lds + c];
        for (int64_t i = rows; i < ldd; i++) dst[c * ldd + i] = 0;
    }
}
#undef TB

// s[j] = scale * s[j] + mask[j] (mask NULL: + 0) for j < visible, -inf for visible <= j < len:
// the unfused op's scores (ops/attention.c), one vector at a time.
__attribute__((always_inline)) static inline vec attn_score_vec(const float *s, const float *mask,
                                                                int64_t j, int64_t n,
                                                                int64_t visible, float scale) {
    vec x = row_load(s + j, n, 0) * scale + (mask ? row_load(mask + j, n, 0) : (vec){0});
    if (j + VEC <= visible) return x;
    ivec idx = {0};
    for (int l = 0; l < VEC; l++) idx[l] = (int32_t)(j + l);
    return vec_select(idx < (int32_t)visible, x, (vec){0} - INFINITY);
}

// The scores of a row (as attn_score_vec) turned into softmax probabilities in place by the
// unfused op's softmax row (cpu_path_softmax.h); returns the row's log-sum-exp (-inf for a row
// with no visible key, whose probabilities are NaN there too).
static float attn_softmax_row(float *s, int64_t len, int64_t visible, float scale,
                              const float *mask) {
    for (int64_t j = 0; j < len; j += VEC) {
        int64_t n = row_lanes(len, j);
        row_store(s + j, n, attn_score_vec(s, mask, j, n, visible, scale));
    }
    return softmax_row_lse(s, s, len);
}

// keep[c] = 1 / (1 - p) where dropout keeps element e0 + c of P, else 0, for c < n: the unfused
// op's decisions (element e reads word e % 4 of Philox block rng.offset + e / 4), their Philox
// rounds side by side in groups of DROPOUT_LANES blocks (philox_group, cpu_path_dropout.h). A
// head's T x S elements are one run of e, so one call covers a head.
DROPOUT_O3 static void attn_keep(float *keep, int64_t n, int64_t e0, double p, rng_state rng) {
    float scale = (float)(1.0 / (1.0 - p));
    for (int64_t b0 = e0 / 4; 4 * b0 < e0 + n; b0 += DROPOUT_LANES) {
        uint32_t w[4 * DROPOUT_LANES];
        philox_group(w, b0, rng);
        int64_t lo = 4 * b0 > e0 ? 4 * b0 : e0, end = 4 * (b0 + DROPOUT_LANES);
        int64_t hi = end < e0 + n ? end : e0 + n;
        for (int64_t e = lo; e < hi; e++)
            keep[e - e0] = random_keep_word(w[e - 4 * b0], p) ? scale : 0.0f;
    }
}
