// Element-wise math, written once for every backend: the CPU loops (tensor/cpu) and the CUDA
// kernels (tensor/cuda) both call these functions, so the CPU tests check the formulas the GPU runs.
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

#define PETAL_SQRT1_2 0.70710678118654752440 // 1/sqrt(2)
#define PETAL_SQRT2PI_INV 0.39894228040143267794 // 1/sqrt(2 pi)
#define PETAL_SQRT_2_OVER_PI 0.79788456080286535588 // sqrt(2/pi)

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
    X(BINARY_GELU_ERF_GRAD, gelu_erf_grad)                                                         \
    X(BINARY_GELU_TANH_GRAD, gelu_tanh_grad)                                                       \
    X(BINARY_TANH_GRAD, tanh_grad)                                                                 \
    X(BINARY_SIGMOID_GRAD, sigmoid_grad)                                                           \
    X(BINARY_RELU_GRAD, relu_grad)                                                                 \
    X(BINARY_ABS_GRAD, abs_grad)                                                                   \
    X(BINARY_POW_GRAD, pow_grad)                                                                   \
    X(BINARY_CLAMP_GRAD, clamp_grad)                                                               \
    X(BINARY_SQRT_GRAD, sqrt_grad)                                                                 \
    X(BINARY_RSQRT_GRAD, rsqrt_grad)

// The ops that integer tensors support too (ids, masks, index arithmetic).
#define PETAL_INT_UNARY_OPS(X) X(UNARY_NEG, neg) X(UNARY_ADD_SCALAR, add_scalar) X(UNARY_MUL_SCALAR, mul_scalar)
#define PETAL_INT_BINARY_OPS(X)                                                                    \
    X(BINARY_ADD, add) X(BINARY_SUB, sub) X(BINARY_MUL, mul) X(BINARY_EQ, eq) X(BINARY_NE, ne)    \
    X(BINARY_LT, lt) X(BINARY_LE, le) X(BINARY_GT, gt) X(BINARY_GE, ge)

// Formulas shared by every type (integers included): plain arithmetic and comparisons.
#define PETAL_EW_DEFINE_ARITH(T, S)                                                                \
    PETAL_HD static inline T ew_neg_##S(T x, T p0, T p1) { return (void)p0, (void)p1, -x; }       \
    PETAL_HD static inline T ew_add_scalar_##S(T x, T p0, T p1) { return (void)p1, x + p0; }      \
    PETAL_HD static inline T ew_mul_scalar_##S(T x, T p0, T p1) { return (void)p1, x * p0; }      \
    PETAL_HD static inline T ew_add_##S(T a, T b, T p0, T p1) { return (void)p0, (void)p1, a + b; } \
    PETAL_HD static inline T ew_sub_##S(T a, T b, T p0, T p1) { return (void)p0, (void)p1, a - b; } \
    PETAL_HD static inline T ew_mul_##S(T a, T b, T p0, T p1) { return (void)p0, (void)p1, a * b; } \
    PETAL_HD static inline T ew_eq_##S(T a, T b, T p0, T p1) { return (void)p0, (void)p1, (T)(a == b); } \
    PETAL_HD static inline T ew_ne_##S(T a, T b, T p0, T p1) { return (void)p0, (void)p1, (T)(a != b); } \
    PETAL_HD static inline T ew_lt_##S(T a, T b, T p0, T p1) { return (void)p0, (void)p1, (T)(a < b); } \
    PETAL_HD static inline T ew_le_##S(T a, T b, T p0, T p1) { return (void)p0, (void)p1, (T)(a <= b); } \
    PETAL_HD static inline T ew_gt_##S(T a, T b, T p0, T p1) { return (void)p0, (void)p1, (T)(a > b); } \
    PETAL_HD static inline T ew_ge_##S(T a, T b, T p0, T p1) { return (void)p0, (void)p1, (T)(a >= b); }

// Floating-point formulas. F(name) names the C math function of the type (expf or exp, ...).
#define PETAL_EW_DEFINE_FLOAT(T, S, F)                                                             \
    PETAL_EW_DEFINE_ARITH(T, S)                                                                    \
    PETAL_HD static inline T ew_exp_##S(T x, T p0, T p1) { return (void)p0, (void)p1, F(exp)(x); } \
    PETAL_HD static inline T ew_log_##S(T x, T p0, T p1) { return (void)p0, (void)p1, F(log)(x); } \
    PETAL_HD static inline T ew_sqrt_##S(T x, T p0, T p1) { return (void)p0, (void)p1, F(sqrt)(x); } \
    PETAL_HD static inline T ew_rsqrt_##S(T x, T p0, T p1) {                                       \
        return (void)p0, (void)p1, (T)1 / F(sqrt)(x);                                              \
    }                                                                                              \
    PETAL_HD static inline T ew_abs_##S(T x, T p0, T p1) { return (void)p0, (void)p1, F(fabs)(x); } \
    PETAL_HD static inline T ew_tanh_##S(T x, T p0, T p1) { return (void)p0, (void)p1, F(tanh)(x); } \
    /* exp of a non-positive number only, so neither branch overflows */                           \
    PETAL_HD static inline T ew_sigmoid_##S(T x, T p0, T p1) {                                     \
        (void)p0, (void)p1;                                                                        \
        T e = F(exp)(-F(fabs)(x));                                                                 \
        return x >= 0 ? (T)1 / ((T)1 + e) : e / ((T)1 + e);                                        \
    }                                                                                              \
    PETAL_HD static inline T ew_relu_##S(T x, T p0, T p1) { return (void)p0, (void)p1, x > 0 ? x : (T)0; } \
    PETAL_HD static inline T ew_gelu_erf_##S(T x, T p0, T p1) {                                    \
        return (void)p0, (void)p1, (T)0.5 * x * ((T)1 + F(erf)(x * (T)PETAL_SQRT1_2));             \
    }                                                                                              \
    PETAL_HD static inline T ew_gelu_tanh_##S(T x, T p0, T p1) {                                   \
        (void)p0, (void)p1;                                                                        \
        T u = (T)PETAL_SQRT_2_OVER_PI * (x + (T)0.044715 * x * x * x);                             \
        return (T)0.5 * x * ((T)1 + F(tanh)(u));                                                   \
    }                                                                                              \
    PETAL_HD static inline T ew_pow_##S(T x, T p0, T p1) { return (void)p1, F(pow)(x, p0); }       \
    PETAL_HD static inline T ew_clamp_##S(T x, T p0, T p1) { return x < p0 ? p0 : (x > p1 ? p1 : x); } \
    PETAL_HD static inline T ew_div_scalar_##S(T x, T p0, T p1) { return (void)p1, x / p0; }       \
    PETAL_HD static inline T ew_div_##S(T a, T b, T p0, T p1) { return (void)p0, (void)p1, a / b; } \
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
    /* the gradient passes where lo <= x <= hi, bounds included (as in PyTorch) */                \
    PETAL_HD static inline T ew_clamp_grad_##S(T g, T x, T p0, T p1) {                             \
        return (x >= p0 && x <= p1) ? g : (T)0;                                                    \
    }                                                                                              \
    PETAL_HD static inline T ew_sqrt_grad_##S(T g, T y, T p0, T p1) {                              \
        return (void)p0, (void)p1, g * (T)0.5 / y;                                                 \
    }                                                                                              \
    PETAL_HD static inline T ew_rsqrt_grad_##S(T g, T y, T p0, T p1) {                             \
        return (void)p0, (void)p1, g * (T)-0.5 * y * y * y;                                        \
    }

#define PETAL_F32_MATH(name) name##f
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
