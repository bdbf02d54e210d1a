// What the row kernels of one CPU path (softmax, LayerNorm: tensor/cpu/cpu_path_softmax.h,
// _layer_norm.h) share: the tail of a row, f64 sums and the reductions across lanes, in the
// path's own instructions (chosen by VEC, the path's width). Included (by
// tensor/cpu/cpu_path_table.h) once into each path's translation unit, after
// tensor/cpu/cpu_path_math.h (vec, ivec, vec_select).
//
// A row is read in vectors from its start; the last one holds the len % VEC tail, read and
// written with masks (AVX-512's masked moves, AVX2's vmaskmovps; lane by lane on the generic
// path). Rows of softmax are short (197 in a ViT): written lane by lane, the tail and the
// reductions across lanes took a fifth of softmax's forward (a serial chain of 16 vmaxss per row,
// and GCC copying a 5-float tail with rep movsq).
//
// Sums run in f64, as the f64 kernels' do: a sum of f32 partial sums would be off by up to (terms
// per lane) ulp, which softmax hands on to every output. A vec is widened into two dvecs (its
// low and high lanes), and lanes are folded in halves in a fixed order, so a result depends only
// on the path.
#include "tensor/cpu/cpu_path.h"

typedef double dvec __attribute__((vector_size(VEC / 2 * sizeof(double)), aligned(8)));

// The lanes of the vector at element i of a row of len: VEC, or fewer in the tail.
static inline int64_t row_lanes(int64_t len, int64_t i) {
    return len - i < VEC ? len - i : VEC;
}

#if VEC == 8
static inline __m256i row_tail_mask(int64_t m) {
    return (__m256i)((ivec){0, 1, 2, 3, 4, 5, 6, 7} < (int32_t)m);
}
#endif

// m <= VEC contiguous floats -> a vector, lanes m.. set to pad.
__attribute__((always_inline)) static inline vec row_load(const float *p, int64_t m, float pad) {
    if (m == VEC) return *(const vec *)p;
#if VEC == 16
    return (vec)_mm512_mask_loadu_ps(_mm512_set1_ps(pad), (__mmask16)((1u << m) - 1), p);
#elif VEC == 8
    __m256i mask = row_tail_mask(m);
    return vec_select((ivec)mask, (vec)_mm256_maskload_ps(p, mask), (vec){0} + pad);
#else
    vec v = (vec){0} + pad;
    for (int64_t i = 0; i < m; i++) v[i] = p[i];
    return v;
#endif
}

// The first m <= VEC lanes of v -> p.
__attribute__((always_inline)) static inline void row_store(float *p, int64_t m, vec v) {
    if (m == VEC) {
        *(vec *)p = v;
        return;
    }
#if VEC == 16
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << m) - 1), (__m512)v);
#elif VEC == 8
    _mm256_maskstore_ps(p, row_tail_mask(m), (__m256)v);
#else
    for (int64_t i = 0; i < m; i++) p[i] = v[i];
#endif
}

// The low and high VEC / 2 lanes of v in f64.
__attribute__((always_inline)) static inline dvec widen_lo(vec v) {
#if VEC == 16
    return (dvec)_mm512_cvtps_pd(_mm512_castps512_ps256((__m512)v));
#elif VEC == 8
    return (dvec)_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)v));
#else
    return (dvec)_mm_cvtps_pd((__m128)v);
#endif
}

__attribute__((always_inline)) static inline dvec widen_hi(vec v) {
#if VEC == 16
    return (dvec)_mm512_cvtps_pd(_mm512_extractf32x8_ps((__m512)v, 1));
#elif VEC == 8
    return (dvec)_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)v, 1));
#else
    return (dvec)_mm_cvtps_pd(_mm_movehl_ps((__m128)v, (__m128)v));
#endif
}

// acc[0], acc[1] (the low and high lanes) += v in f64.
__attribute__((always_inline)) static inline void row_accumulate(dvec acc[2], vec v) {
    acc[0] += widen_lo(v);
    acc[1] += widen_hi(v);
}

// p[0 .. m) += the first m <= VEC lanes of v in f64 (p need not be aligned).
__attribute__((always_inline)) static inline void row_add_f64(double *p, int64_t m, vec v) {
    if (m == VEC) {
        *(dvec *)p += widen_lo(v);
        *(dvec *)(p + VEC / 2) += widen_hi(v);
    } else {
        for (int64_t i = 0; i < m; i++) p[i] += (double)v[i];
    }
}

// The sum of the lanes of acc[0] + acc[1], halves folded onto each other.
static inline double row_total(const dvec acc[2]) {
    dvec s = acc[0] + acc[1];
#if VEC == 16
    __m256d y =
        _mm256_add_pd(_mm512_castpd512_pd256((__m512d)s), _mm512_extractf64x4_pd((__m512d)s, 1));
#elif VEC == 8
    __m256d y = (__m256d)s;
#endif
#if VEC >= 8
    __m128d x = _mm_add_pd(_mm256_castpd256_pd128(y), _mm256_extractf128_pd(y, 1));
#else
    __m128d x = (__m128d)s;
#endif
    return _mm_cvtsd_f64(_mm_add_sd(x, _mm_unpackhi_pd(x, x)));
}

// The largest lane of v (whose lanes are not NaN), halves folded onto each other.
static inline float row_max_lane(vec v) {
#if VEC == 16
    __m256 y =
        _mm256_max_ps(_mm512_castps512_ps256((__m512)v), _mm512_extractf32x8_ps((__m512)v, 1));
#elif VEC == 8
    __m256 y = (__m256)v;
#endif
#if VEC >= 8
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
#else
    __m128 x = (__m128)v;
#endif
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_max_ss(x, _mm_movehdup_ps(x)));
}
