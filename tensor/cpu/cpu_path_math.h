// The f32 vector math of one CPU path: GELU (erf and tanh forms) forward and backward, exp, log
// and tanh. exp, log and tanh are SLEEF's vector functions (bounds 1.0, 1.0 and 1.0001 ulp); erf
// is ew_erff of tensor/elementwise.h, the formula of PyTorch's vectorised erf that the CUDA
// kernels run too (|error| < 2e-7), written on whole vectors (vec_erf below): SLEEF's 1-ulp erf
// made the GELU kernels a quarter slower. Included (by tensor/cpu/cpu_path_table.h) once into
// each path's translation unit (tensor/cpu/cpu_path_*.c), which defines first:
//   VEC                          floats per vector, and the vec type of VEC floats;
//   VEC_EXP, VEC_LOG, VEC_TANH   SLEEF's functions of that width, taking and giving vec.
// Every span works on VEC elements at a time, gathered from and scattered to strided operands
// (the tail padded with zeros), so an element's result does not depend on its neighbours, the
// layout or the thread split.
#include "tensor/cpu/cpu_path.h"
#include "tensor/elementwise.h"

// m <= VEC elements st bytes apart -> a vector, lanes m.. zero.
// Whole vectors are read and written through vec (aligned(4)), not memcpy, which GCC copies in
// 16-byte halves through the stack, stalling store forwarding at the vector load.
static inline vec vec_load(const char *p, int64_t st, int64_t m) {
    vec v = {0};
    if (m == VEC && st == sizeof(float))
        v = *(const vec *)p;
    else
        for (int64_t i = 0; i < m; i++) v[i] = *(const float *)(p + i * st);
    return v;
}

static inline void vec_store(char *p, int64_t st, int64_t m, vec v) {
    if (m == VEC && st == sizeof(float))
        *(vec *)p = v;
    else
        for (int64_t i = 0; i < m; i++) *(float *)(p + i * st) = v[i];
}

__attribute__((always_inline)) static inline vec vec_exp(vec x) {
    return VEC_EXP(x);
}

__attribute__((always_inline)) static inline vec vec_log(vec x) {
    return VEC_LOG(x);
}

__attribute__((always_inline)) static inline vec vec_tanh(vec x) {
    return VEC_TANH(x);
}

// ew_expf and ew_erff of tensor/elementwise.h written out on whole vectors, operation by
// operation (the same polynomials, clamps and selects; rintf as the 1.5 * 2^23 round-to-nearest
// trick, exact for the clamped range). A loop over the lanes calling ew_erff also vectorises, but
// only as a function of its own, one vector per call: on AVX2 its dependency chain left the
// FMA units idle (3.3x AVX-512's time per vector, where 2x is the width's share).
typedef int32_t ivec __attribute__((vector_size(VEC * sizeof(int32_t)), aligned(4)));

__attribute__((always_inline)) static inline vec vec_select(ivec mask, vec yes, vec no) {
    return (vec)(((ivec)yes & mask) | ((ivec)no & ~mask));
}

__attribute__((always_inline)) static inline vec vec_expf_formula(vec x) {
    const float lo = -87.33654f, hi = 88.72283f, round = 12582912.0f;             // 1.5 * 2^23
    vec xc = vec_select(x >= lo, vec_select(x <= hi, x, x * 0 + hi), x * 0 + lo); // NaN -> lo
    vec n = (xc * 1.44269504088896341f + round) - round;
    vec r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    vec y = PETAL_EXPF_POLY(r) * r * r + r + 1.0f;
    vec scale = (vec)((__builtin_convertvector(n, ivec) + 127) << 23);
    vec v = y * scale;
    v = vec_select(x < lo, x * 0, v);
    v = vec_select(x > hi, x * 0 + (float)INFINITY, v);
    return vec_select(x != x, x, v);
}

__attribute__((always_inline)) static inline vec vec_erf(vec x) {
    vec ax = vec_select(x < 0, -x, x), z = x * x;
    vec r = 1.0f - PETAL_ERF_TAIL(1.0f / (1.0f + 0.3275911f * ax)) * vec_expf_formula(-z);
    vec tail = vec_select(x < 0, -r, r);
    return vec_select(ax < 1.0f, x * PETAL_ERF_SMALL(z), tail);
}

__attribute__((always_inline)) static inline vec vec_gelu_erf(vec x) {
    return 0.5f * x * (1.0f + vec_erf(x * (float)PETAL_SQRT1_2));
}

__attribute__((always_inline)) static inline vec vec_gelu_tanh(vec x) {
    vec u = (float)PETAL_SQRT_2_OVER_PI * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + VEC_TANH(u));
}

// the formula of ew_add_gelu_erf: gelu(a + b)
__attribute__((always_inline)) static inline vec vec_add_gelu_erf(vec a, vec b) {
    return vec_gelu_erf(a + b);
}

// g (Phi(x) + x phi(x)), the formula of ew_gelu_erf_grad
__attribute__((always_inline)) static inline vec vec_gelu_erf_grad(vec g, vec x) {
    vec cdf = 0.5f * (1.0f + vec_erf(x * (float)PETAL_SQRT1_2));
    vec pdf = (float)PETAL_SQRT2PI_INV * VEC_EXP(-0.5f * x * x);
    return g * (cdf + x * pdf);
}

// the formula of ew_gelu_tanh_grad
__attribute__((always_inline)) static inline vec vec_gelu_tanh_grad(vec g, vec x) {
    vec u = (float)PETAL_SQRT_2_OVER_PI * (x + 0.044715f * x * x * x);
    vec th = VEC_TANH(u);
    vec du = (float)PETAL_SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x * x);
    return g * (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du);
}

// Two vectors per iteration where the operands are contiguous: erf, exp and tanh are chains of
// dependent multiply-adds, and one vector at a time leaves the FMA units waiting on latency
// (the AVX2 path's GELU ran 3.3x slower per vector than AVX-512's, not 2x).
#define PATH_UNARY_SPAN(NAME)                                                                      \
    static void span_##NAME(int64_t n, char *const *p, const int64_t *st, const void *ctx) {       \
        (void)ctx;                                                                                 \
        int64_t i = 0;                                                                             \
        if (st[0] == sizeof(float) && st[1] == sizeof(float))                                      \
            for (; i + 2 * VEC <= n; i += 2 * VEC) {                                               \
                vec a = vec_load(p[1] + i * st[1], st[1], VEC),                                    \
                    b = vec_load(p[1] + (i + VEC) * st[1], st[1], VEC);                            \
                a = vec_##NAME(a), b = vec_##NAME(b);                                              \
                vec_store(p[0] + i * st[0], st[0], VEC, a);                                        \
                vec_store(p[0] + (i + VEC) * st[0], st[0], VEC, b);                                \
            }                                                                                      \
        for (; i < n; i += VEC) {                                                                  \
            int64_t m = n - i < VEC ? n - i : VEC;                                                 \
            vec_store(p[0] + i * st[0], st[0], m,                                                  \
                      vec_##NAME(vec_load(p[1] + i * st[1], st[1], m)));                           \
        }                                                                                          \
    }

#define PATH_BINARY_SPAN(NAME)                                                                     \
    static void span_##NAME(int64_t n, char *const *p, const int64_t *st, const void *ctx) {       \
        (void)ctx;                                                                                 \
        int64_t i = 0;                                                                             \
        if (st[0] == sizeof(float) && st[1] == sizeof(float) && st[2] == sizeof(float))            \
            for (; i + 2 * VEC <= n; i += 2 * VEC) {                                               \
                vec a0 = vec_load(p[1] + i * st[1], st[1], VEC),                                   \
                    a1 = vec_load(p[1] + (i + VEC) * st[1], st[1], VEC),                           \
                    b0 = vec_load(p[2] + i * st[2], st[2], VEC),                                   \
                    b1 = vec_load(p[2] + (i + VEC) * st[2], st[2], VEC);                           \
                a0 = vec_##NAME(a0, b0), a1 = vec_##NAME(a1, b1);                                  \
                vec_store(p[0] + i * st[0], st[0], VEC, a0);                                       \
                vec_store(p[0] + (i + VEC) * st[0], st[0], VEC, a1);                               \
            }                                                                                      \
        for (; i < n; i += VEC) {                                                                  \
            int64_t m = n - i < VEC ? n - i : VEC;                                                 \
            vec a = vec_load(p[1] + i * st[1], st[1], m),                                          \
                b = vec_load(p[2] + i * st[2], st[2], m);                                          \
            vec_store(p[0] + i * st[0], st[0], m, vec_##NAME(a, b));                               \
        }                                                                                          \
    }

PATH_UNARY_SPAN(exp)
PATH_UNARY_SPAN(log)
PATH_UNARY_SPAN(tanh)
PATH_UNARY_SPAN(gelu_erf)
PATH_UNARY_SPAN(gelu_tanh)
PATH_BINARY_SPAN(add_gelu_erf)
PATH_BINARY_SPAN(gelu_erf_grad)
PATH_BINARY_SPAN(gelu_tanh_grad)
