// The f32 vector math of one CPU path: GELU (erf and tanh forms) forward and backward, exp, log
// and tanh. exp, log and tanh are SLEEF's vector functions (bounds 1.0, 1.0 and 1.0001 ulp); erf
// is ew_erff of tensor/elementwise.h, the formula of PyTorch's vectorised erf that the CUDA
// kernels run too (|error| < 2e-7), vectorised lane by lane: SLEEF's 1-ulp erf made the GELU
// kernels a quarter slower. Included (by tensor/cpu/cpu_path_table.h) once into each path's
// translation unit (tensor/cpu/cpu_path_*.c), which defines first:
//   VEC                          floats per vector, and the vec type of VEC floats;
//   VEC_EXP, VEC_LOG, VEC_TANH   SLEEF's functions of that width, taking and giving vec.
// Every span works on VEC elements at a time, gathered from and scattered to strided operands
// (the tail padded with zeros), so an element's result does not depend on its neighbours, the
// layout or the thread split.
#include <string.h>

#include "tensor/cpu/cpu_path.h"
#include "tensor/elementwise.h"

// m <= VEC elements st bytes apart -> a vector, lanes m.. zero.
static inline vec vec_load(const char *p, int64_t st, int64_t m) {
    vec v = {0};
    if (m == VEC && st == sizeof(float))
        memcpy(&v, p, sizeof v);
    else
        for (int64_t i = 0; i < m; i++) v[i] = *(const float *)(p + i * st);
    return v;
}

static inline void vec_store(char *p, int64_t st, int64_t m, vec v) {
    if (m == VEC && st == sizeof(float))
        memcpy(p, &v, sizeof v);
    else
        for (int64_t i = 0; i < m; i++) *(float *)(p + i * st) = v[i];
}

static inline vec vec_exp(vec x) {
    return VEC_EXP(x);
}

static inline vec vec_log(vec x) {
    return VEC_LOG(x);
}

static inline vec vec_tanh(vec x) {
    return VEC_TANH(x);
}

// A loop of constant length over the lanes, which the compiler turns into vector code.
static inline vec vec_erf(vec x) {
    float in[VEC], out[VEC];
    memcpy(in, &x, sizeof in);
    for (int i = 0; i < VEC; i++) out[i] = ew_erff(in[i]);
    memcpy(&x, out, sizeof out);
    return x;
}

static inline vec vec_gelu_erf(vec x) {
    return 0.5f * x * (1.0f + vec_erf(x * (float)PETAL_SQRT1_2));
}

static inline vec vec_gelu_tanh(vec x) {
    vec u = (float)PETAL_SQRT_2_OVER_PI * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + VEC_TANH(u));
}

// g (Phi(x) + x phi(x)), the formula of ew_gelu_erf_grad
static inline vec vec_gelu_erf_grad(vec g, vec x) {
    vec cdf = 0.5f * (1.0f + vec_erf(x * (float)PETAL_SQRT1_2));
    vec pdf = (float)PETAL_SQRT2PI_INV * VEC_EXP(-0.5f * x * x);
    return g * (cdf + x * pdf);
}

// the formula of ew_gelu_tanh_grad
static inline vec vec_gelu_tanh_grad(vec g, vec x) {
    vec u = (float)PETAL_SQRT_2_OVER_PI * (x + 0.044715f * x * x * x);
    vec th = VEC_TANH(u);
    vec du = (float)PETAL_SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x * x);
    return g * (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du);
}

#define PATH_UNARY_SPAN(NAME)                                                                      \
    static void span_##NAME(int64_t n, char *const *p, const int64_t *st, const void *ctx) {       \
        (void)ctx;                                                                                 \
        for (int64_t i = 0; i < n; i += VEC) {                                                     \
            int64_t m = n - i < VEC ? n - i : VEC;                                                 \
            vec_store(p[0] + i * st[0], st[0], m,                                                  \
                      vec_##NAME(vec_load(p[1] + i * st[1], st[1], m)));                           \
        }                                                                                          \
    }

#define PATH_BINARY_SPAN(NAME)                                                                     \
    static void span_##NAME(int64_t n, char *const *p, const int64_t *st, const void *ctx) {       \
        (void)ctx;                                                                                 \
        for (int64_t i = 0; i < n; i += VEC) {                                                     \
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
PATH_BINARY_SPAN(gelu_erf_grad)
PATH_BINARY_SPAN(gelu_tanh_grad)
