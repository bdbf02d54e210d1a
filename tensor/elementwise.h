// Element-wise math, written once for every backend: the CPU loops (tensor/cpu) and the CUDA
// kernels (tensor/cuda) both call these functions, so the CPU tests check the formulas the GPU
// runs.
//
// Each formula is instantiated for float (suffix f32) and double (f64) by PETAL_EW_DEFINE below.
// Unary ops take (x, p0, p1); binary ops take (a, b, p0, p1), where p0/p1 are scalar parameters
// (exponent, clamp bounds, ...). The *_GRAD ops are backward helpers: a is the incoming gradient g,
// b the saved input x (or output y, as named), and the result is g times the local derivative.
#pragma once

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define PETAL_HD __host__ __device__
#else
#define PETAL_HD
#endif

#define PETAL_SQRT1_2        0.70710678118654752440 // 1/sqrt(2)
#define PETAL_SQRT2PI_INV    0.39894228040143267794 // 1/sqrt(2 pi)
#define PETAL_SQRT_2_OVER_PI 0.79788456080286535588 // sqrt(2/pi)

// f32 exp and erf written so that a compiler can vectorise loops over them (no calls, no branches
// that survive if-conversion). exp: Cody-Waite reduction and the Cephes polynomial, within 2 ulp of
// libm's expf; results below the smallest normal float flush to exactly 0 (x < -87.3, so masked
// -inf scores give 0), inf above 88.7, NaN kept.
// erf: a polynomial for |x| < 1, Abramowitz & Stegun 7.1.26 beyond (the formula of PyTorch's
// vectorised CPU erf, and so of its GELU); |error| < 2e-7. f64 keeps libm's exp and erf.
// The polynomials of ew_expf and ew_erff, in Horner form, for scalars and for the CPU paths'
// vector versions (tensor/cpu/cpu_path_math.h) alike: exp's on the reduced argument r; erf's
// x P(x^2) on z = x^2 for |x| < 1 (a degree-6 least-squares fit on Chebyshev nodes, error 1e-9;
// it avoids the cancellation in 1 - (...) below, which alone loses ~3e-7 near 0.5 in f32); and
// Abramowitz & Stegun 7.1.26's polynomial in t = 1 / (1 + 0.3275911 |x|) beyond.
// clang-format off
#define PETAL_EXPF_POLY(r)                  \
    ((((( 1.9875691500e-4f  * (r)           \
        + 1.3981999507e-3f) * (r)           \
        + 8.3334519073e-3f) * (r)           \
        + 4.1665795894e-2f) * (r)           \
        + 1.6666665459e-1f) * (r)           \
        + 5.0000001201e-1f)
#define PETAL_ERF_SMALL(z)                  \
    (((((( 7.8824971127e-05f  * (z)         \
         - 8.0188549936e-04f) * (z)         \
         + 5.1893119428e-03f) * (z)         \
         - 2.6854328796e-02f) * (z)         \
         + 1.1283597463e-01f) * (z)         \
         - 3.7612626904e-01f) * (z)         \
         + 1.1283791659e+00f)
#define PETAL_ERF_TAIL(t)                   \
    ((((( 1.061405429f  * (t)               \
        - 1.453152027f) * (t)               \
        + 1.421413741f) * (t)               \
        - 0.284496736f) * (t)               \
        + 0.254829592f) * (t))
// clang-format on

PETAL_HD static inline float ew_expf(float x) {
    const float lo = -87.33654f, hi = 88.72283f;
    float xc = x >= lo ? (x <= hi ? x : hi) : lo; // NaN -> lo, fixed up below
    float n = rintf(xc * 1.44269504088896341f);
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float y = PETAL_EXPF_POLY(r) * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } scale;
    scale.i = ((int32_t)n + 127) << 23;
    float v = y * scale.f;
    v = x < lo ? 0.0f : v;
    v = x > hi ? (float)INFINITY : v;
    return x != x ? x : v;
}

PETAL_HD static inline float ew_erff(float x) {
    float ax = x < 0 ? -x : x, z = x * x;
    float r = 1.0f - PETAL_ERF_TAIL(1.0f / (1.0f + 0.3275911f * ax)) * ew_expf(-z);
    float tail = x < 0 ? -r : r;
    return ax < 1.0f ? x * PETAL_ERF_SMALL(z) : tail;
}

// X(ENUM, name): the ops, in the order of the unary_op / binary_op enums of tensor/backend.h.
#define PETAL_UNARY_OPS(X)                                                                         \
    X(UNARY_NEG, neg)                                                                              \
    X(UNARY_EXP, exp)                                                                              \
    X(UNARY_LOG, log)                                                                              \
    X(UNARY_SQRT, sqrt)                                                                            \
    X(UNARY_RSQRT, rsqrt)                                                                          \
    X(UNARY_ABS, abs)                                                                              \
    X(UNARY_TANH, tanh)                                                                            \
    X(UNARY_SIGMOID, sigmoid)                                                                      \
    X(UNARY_RELU, relu)                                                                            \
    X(UNARY_GELU_ERF, gelu_erf)                                                                    \
    X(UNARY_GELU_TANH, gelu_tanh)                                                                  \
    X(UNARY_POW, pow)                                                                              \
    X(UNARY_CLAMP, clamp)                                                                          \
    X(UNARY_ADD_SCALAR, add_scalar)                                                                \
    X(UNARY_MUL_SCALAR, mul_scalar)                                                                \
    X(UNARY_DIV_SCALAR, div_scalar)

#define PETAL_BINARY_OPS(X)                                                                        \
    X(BINARY_ADD, add)                                                                             \
    X(BINARY_SUB, sub)                                                                             \
    X(BINARY_MUL, mul)                                                                             \
    X(BINARY_DIV, div)                                                                             \
    X(BINARY_EQ, eq)                                                                               \
    X(BINARY_NE, ne)                                                                               \
    X(BINARY_LT, lt)                                                                               \
    X(BINARY_LE, le)                                                                               \
    X(BINARY_GT, gt)                                                                               \
    X(BINARY_GE, ge)                                                                               \
    X(BINARY_ADD_GELU_ERF, add_gelu_erf)                                                           \
    X(BINARY_GELU_ERF_GRAD, gelu_erf_grad)                                                         \
    X(BINARY_GELU_TANH_GRAD, gelu_tanh_grad)                                                       \
    X(BINARY_TANH_GRAD, tanh_grad)                                                                 \
    X(BINARY_SIGMOID_GRAD, sigmoid_grad)                                                           \
    X(BINARY_RELU_GRAD, relu_grad)                                                                 \
    X(BINARY_ABS_GRAD, abs_grad)                                                                   \
    X(BINARY_POW_GRAD, pow_grad)                                                                   \
    X(BINARY_CLAMP_GRAD, clamp_grad)                                                               \
    X(BINARY_SQRT_GRAD, sqrt_grad)                                                                 \
    X(BINARY_RSQRT_GRAD, rsqrt_grad)                                                               \
    X(BINARY_MIX, mix)

// The ops that integer tensors support too (ids, masks, index arithmetic).
#define PETAL_INT_UNARY_OPS(X)                                                                     \
    X(UNARY_NEG, neg) X(UNARY_ADD_SCALAR, add_scalar) X(UNARY_MUL_SCALAR, mul_scalar)
#define PETAL_INT_BINARY_OPS(X)                                                                    \
    X(BINARY_ADD, add)                                                                             \
    X(BINARY_SUB, sub)                                                                             \
    X(BINARY_MUL, mul)                                                                             \
    X(BINARY_EQ, eq)                                                                               \
    X(BINARY_NE, ne) X(BINARY_LT, lt) X(BINARY_LE, le) X(BINARY_GT, gt) X(BINARY_GE, ge)

// Formulas shared by every type (integers included): plain arithmetic and comparisons.
#define PETAL_EW_DEFINE_ARITH(T, S)                                                                \
    PETAL_HD static inline T ew_neg_##S(T x, T p0, T p1) {                                         \
        return (void)p0, (void)p1, -x;                                                             \
    }                                                                                              \
    PETAL_HD static inline T ew_add_scalar_##S(T x, T p0, T p1) {                                  \
        return (void)p1, x + p0;                                                                   \
    }                                                                                              \
    PETAL_HD static inline T ew_mul_scalar_##S(T x, T p0, T p1) {                                  \
        return (void)p1, x * p0;                                                                   \
    }                                                                                              \
    PETAL_HD static inline T ew_add_##S(T a, T b, T p0, T p1) {                                    \
        return (void)p0, (void)p1, a + b;                                                          \
    }                                                                                              \
    PETAL_HD static inline T ew_sub_##S(T a, T b, T p0, T p1) {                                    \
        return (void)p0, (void)p1, a - b;                                                          \
    }                                                                                              \
    PETAL_HD static inline T ew_mul_##S(T a, T b, T p0, T p1) {                                    \
        return (void)p0, (void)p1, a * b;                                                          \
    }                                                                                              \
    PETAL_HD static inline T ew_eq_##S(T a, T b, T p0, T p1) {                                     \
        return (void)p0, (void)p1, (T)(a == b);                                                    \
    }                                                                                              \
    PETAL_HD static inline T ew_ne_##S(T a, T b, T p0, T p1) {                                     \
        return (void)p0, (void)p1, (T)(a != b);                                                    \
    }                                                                                              \
    PETAL_HD static inline T ew_lt_##S(T a, T b, T p0, T p1) {                                     \
        return (void)p0, (void)p1, (T)(a < b);                                                     \
    }                                                                                              \
    PETAL_HD static inline T ew_le_##S(T a, T b, T p0, T p1) {                                     \
        return (void)p0, (void)p1, (T)(a <= b);                                                    \
    }                                                                                              \
    PETAL_HD static inline T ew_gt_##S(T a, T b, T p0, T p1) {                                     \
        return (void)p0, (void)p1, (T)(a > b);                                                     \
    }                                                                                              \
    PETAL_HD static inline T ew_ge_##S(T a, T b, T p0, T p1) {                                     \
        return (void)p0, (void)p1, (T)(a >= b);                                                    \
    }

// Floating-point formulas. F(name) names the C math function of the type (expf or exp, ...).
#define PETAL_EW_DEFINE_FLOAT(T, S, F)                                                             \
    PETAL_EW_DEFINE_ARITH(T, S)                                                                    \
    PETAL_HD static inline T ew_exp_##S(T x, T p0, T p1) {                                         \
        return (void)p0, (void)p1, F(exp)(x);                                                      \
    }                                                                                              \
    PETAL_HD static inline T ew_log_##S(T x, T p0, T p1) {                                         \
        return (void)p0, (void)p1, F(log)(x);                                                      \
    }                                                                                              \
    PETAL_HD static inline T ew_sqrt_##S(T x, T p0, T p1) {                                        \
        return (void)p0, (void)p1, F(sqrt)(x);                                                     \
    }                                                                                              \
    PETAL_HD static inline T ew_rsqrt_##S(T x, T p0, T p1) {                                       \
        return (void)p0, (void)p1, (T)1 / F(sqrt)(x);                                              \
    }                                                                                              \
    PETAL_HD static inline T ew_abs_##S(T x, T p0, T p1) {                                         \
        return (void)p0, (void)p1, F(fabs)(x);                                                     \
    }                                                                                              \
    PETAL_HD static inline T ew_tanh_##S(T x, T p0, T p1) {                                        \
        return (void)p0, (void)p1, F(tanh)(x);                                                     \
    }                                                                                              \
    /* exp of a non-positive number only, so neither branch overflows */                           \
    PETAL_HD static inline T ew_sigmoid_##S(T x, T p0, T p1) {                                     \
        (void)p0, (void)p1;                                                                        \
        T e = F(exp)(-F(fabs)(x));                                                                 \
        return x >= 0 ? (T)1 / ((T)1 + e) : e / ((T)1 + e);                                        \
    }                                                                                              \
    PETAL_HD static inline T ew_relu_##S(T x, T p0, T p1) {                                        \
        return (void)p0, (void)p1, x > 0 ? x : (T)0;                                               \
    }                                                                                              \
    PETAL_HD static inline T ew_gelu_erf_##S(T x, T p0, T p1) {                                    \
        return (void)p0, (void)p1, (T)0.5 * x * ((T)1 + F(erf)(x * (T)PETAL_SQRT1_2));             \
    }                                                                                              \
    PETAL_HD static inline T ew_gelu_tanh_##S(T x, T p0, T p1) {                                   \
        (void)p0, (void)p1;                                                                        \
        T u = (T)PETAL_SQRT_2_OVER_PI * (x + (T)0.044715 * x * x * x);                             \
        return (T)0.5 * x * ((T)1 + F(tanh)(u));                                                   \
    }                                                                                              \
    PETAL_HD static inline T ew_pow_##S(T x, T p0, T p1) {                                         \
        return (void)p1, F(pow)(x, p0);                                                            \
    }                                                                                              \
    PETAL_HD static inline T ew_clamp_##S(T x, T p0, T p1) {                                       \
        return x < p0 ? p0 : (x > p1 ? p1 : x);                                                    \
    }                                                                                              \
    PETAL_HD static inline T ew_div_scalar_##S(T x, T p0, T p1) {                                  \
        return (void)p1, x / p0;                                                                   \
    }                                                                                              \
    PETAL_HD static inline T ew_div_##S(T a, T b, T p0, T p1) {                                    \
        return (void)p0, (void)p1, a / b;                                                          \
    }                                                                                              \
    /* a p0 + b p1, two products then a sum (no fused multiply-add: the library and the CUDA */    \
    /* kernels are built without contraction), as a * p0 + b * p1 of two scalar ops rounds */      \
    PETAL_HD static inline T ew_mix_##S(T a, T b, T p0, T p1) {                                    \
        return a * p0 + b * p1;                                                                    \
    }                                                                                              \
    /* gelu(a + b): a bias added and the exact GELU in one pass; a + b rounds to T first, so */    \
    /* the result is gelu(add(a, b)) of the two separate ops bit for bit */                        \
    PETAL_HD static inline T ew_add_gelu_erf_##S(T a, T b, T p0, T p1) {                           \
        return ew_gelu_erf_##S(a + b, p0, p1);                                                     \
    }                                                                                              \
    /* d/dx gelu(x) = Phi(x) + x phi(x) */                                                         \
    PETAL_HD static inline T ew_gelu_erf_grad_##S(T g, T x, T p0, T p1) {                          \
        (void)p0, (void)p1;                                                                        \
        T cdf = (T)0.5 * ((T)1 + F(erf)(x * (T)PETAL_SQRT1_2));                                    \
        T pdf = (T)PETAL_SQRT2PI_INV * F(exp)((T)-0.5 * x * x);                                    \
        return g * (cdf + x * pdf);                                                                \
    }                                                                                              \
    PETAL_HD static inline T ew_gelu_tanh_grad_##S(T g, T x, T p0, T p1) {                         \
        (void)p0, (void)p1;                                                                        \
        T u = (T)PETAL_SQRT_2_OVER_PI * (x + (T)0.044715 * x * x * x);                             \
        T th = F(tanh)(u);                                                                         \
        T du = (T)PETAL_SQRT_2_OVER_PI * ((T)1 + (T)3 * (T)0.044715 * x * x);                      \
        return g * ((T)0.5 * ((T)1 + th) + (T)0.5 * x * ((T)1 - th * th) * du);                    \
    }                                                                                              \
    PETAL_HD static inline T ew_tanh_grad_##S(T g, T y, T p0, T p1) {                              \
        return (void)p0, (void)p1, g * ((T)1 - y * y);                                             \
    }                                                                                              \
    PETAL_HD static inline T ew_sigmoid_grad_##S(T g, T y, T p0, T p1) {                           \
        return (void)p0, (void)p1, g * y * ((T)1 - y);                                             \
    }                                                                                              \
    PETAL_HD static inline T ew_relu_grad_##S(T g, T x, T p0, T p1) {                              \
        return (void)p0, (void)p1, x > 0 ? g : (T)0;                                               \
    }                                                                                              \
    PETAL_HD static inline T ew_abs_grad_##S(T g, T x, T p0, T p1) {                               \
        return (void)p0, (void)p1, x > 0 ? g : (x < 0 ? -g : (T)0);                                \
    }                                                                                              \
    PETAL_HD static inline T ew_pow_grad_##S(T g, T x, T p0, T p1) {                               \
        return (void)p1, p0 == 0 ? (T)0 : g * p0 * F(pow)(x, p0 - (T)1);                           \
    }                                                                                              \
    /* the gradient passes where lo <= x <= hi, bounds included (as in PyTorch) */                 \
    PETAL_HD static inline T ew_clamp_grad_##S(T g, T x, T p0, T p1) {                             \
        return (x >= p0 && x <= p1) ? g : (T)0;                                                    \
    }                                                                                              \
    PETAL_HD static inline T ew_sqrt_grad_##S(T g, T y, T p0, T p1) {                              \
        return (void)p0, (void)p1, g * (T)0.5 / y;                                                 \
    }                                                                                              \
    PETAL_HD static inline T ew_rsqrt_grad_##S(T g, T y, T p0, T p1) {                             \
        return (void)p0, (void)p1, g * (T)-0.5 * y * y * y;                                        \
    }

// The f32 math of the formulas: libm's float functions, but the vectorisable exp and erf above.
#define PETAL_F32_MATH(name) PETAL_F32_##name
#define PETAL_F32_exp        ew_expf
#define PETAL_F32_erf        ew_erff
#define PETAL_F32_log        logf
#define PETAL_F32_sqrt       sqrtf
#define PETAL_F32_fabs       fabsf
#define PETAL_F32_tanh       tanhf
#define PETAL_F32_pow        powf
#define PETAL_F64_MATH(name) name
PETAL_EW_DEFINE_FLOAT(float, f32, PETAL_F32_MATH)
PETAL_EW_DEFINE_FLOAT(double, f64, PETAL_F64_MATH)
PETAL_EW_DEFINE_ARITH(int32_t, i32)
PETAL_EW_DEFINE_ARITH(int64_t, i64)

// erfinv on (-1, 1) in double precision: Giles' single-precision approximation ("Approximating the
// erfinv function", GPU Computing Gems, 2011) refined by two Newton steps on erf.
PETAL_HD static inline double ew_erfinv(double y) {
    if (y <= -1.0) return -INFINITY;
    if (y >= 1.0) return INFINITY;
    double w = -log((1.0 - y) * (1.0 + y)), x;
    if (w < 5.0) {
        w -= 2.5;
        x = 2.81022636e-08;
        x = 3.43273939e-07 + x * w;
        x = -3.5233877e-06 + x * w;
        x = -4.39150654e-06 + x * w;
        x = 0.00021858087 + x * w;
        x = -0.00125372503 + x * w;
        x = -0.00417768164 + x * w;
        x = 0.246640727 + x * w;
        x = 1.50140941 + x * w;
    } else {
        w = sqrt(w) - 3.0;
        x = -0.000200214257;
        x = 0.000100950558 + x * w;
        x = 0.00134934322 + x * w;
        x = -0.00367342844 + x * w;
        x = 0.00573950773 + x * w;
        x = -0.0076224613 + x * w;
        x = 0.00943887047 + x * w;
        x = 1.00167406 + x * w;
        x = 2.83297682 + x * w;
    }
    x *= y;
    for (int i = 0; i < 2; i++) x -= (erf(x) - y) / (1.1283791670955126 * exp(-x * x));
    return x;
}

// One AdamW step for one element (PyTorch's torch.optim.AdamW, decoupled weight decay):
//   p -= lr wd p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps),  bc_i = 1 - b_i^step
typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
    double bias_correction1, bias_correction2; // 1 - beta^step
} adamw_hyper;

#define PETAL_ADAMW_DEFINE(T, S, F)                                                                \
    PETAL_HD static inline void ew_adamw_##S(T *p, T g, T *m, T *v, const adamw_hyper *h) {        \
        T param = *p * (T)(1.0 - h->lr * h->weight_decay);                                         \
        T mm = *m + (g - *m) * (T)(1.0 - h->beta1); /* torch's lerp */                             \
        T vv = *v * (T)h->beta2 + g * g * (T)(1.0 - h->beta2);                                     \
        T denom = F(sqrt)(vv) / (T)sqrt(h->bias_correction2) + (T)h->eps;                          \
        *p = param - (T)(h->lr / h->bias_correction1) * mm / denom;                                \
        *m = mm;                                                                                   \
        *v = vv;                                                                                   \
    }
PETAL_ADAMW_DEFINE(float, f32, PETAL_F32_MATH)
PETAL_ADAMW_DEFINE(double, f64, PETAL_F64_MATH)
