// Element conversions, written once for the host and the device (like tensor/elementwise.h): f16
// and bf16 to and from f32, f32 rounded to bf16 or TF32 (the GEMM inputs of tensor/precision.h),
// and one element of any dtype as a double and back, which copies and fills convert through. The
// CPU's copy (tensor/cpu/cpu_elementwise.c), tensor_get and the CUDA copy kernel
// (tensor/cuda/cuda_elementwise.cu) all call these.
#pragma once

#include <stdint.h>
#include <string.h>

#include "tensor/dtype.h"
#include "tensor/elementwise.h" // PETAL_HD

PETAL_HD static inline uint32_t dtype_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

PETAL_HD static inline float dtype_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

PETAL_HD static inline float bf16_to_f32(uint16_t h) {
    return dtype_bits_f32((uint32_t)h << 16);
}

// Round to nearest even.
PETAL_HD static inline uint16_t f32_to_bf16(float f) {
    uint32_t u = dtype_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // keep NaN a NaN
    u += 0x7fffu + ((u >> 16) & 1u);                                          // nearest even
    return (uint16_t)(u >> 16);
}

// f32 rounded to the nearest bf16 value (ties to even), as an f32: what a bf16 GEMM input is. The
// bits of bf16_to_f32(f32_to_bf16(f)), NaN included, written without branches so that the CPU's
// rounding loops vectorise (tests/tensor/test_precision.c checks the two agree).
PETAL_HD static inline float f32_round_bf16(float f) {
    uint32_t u = dtype_f32_bits(f);
    uint32_t nearest = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    uint32_t nan = (u & 0xffff0000u) | 0x00400000u;
    return dtype_bits_f32((u & 0x7fffffffu) > 0x7f800000u ? nan : nearest);
}

// f32 rounded to the nearest TF32 value (8 exponent bits, 10 mantissa bits; ties to even), as an
// f32. Overflow goes to inf as in bf16; a NaN stays a (quiet) NaN.
PETAL_HD static inline float f32_round_tf32(float f) {
    uint32_t u = dtype_f32_bits(f);
    uint32_t nearest = (u + 0xfffu + ((u >> 13) & 1u)) & 0xffffe000u;
    uint32_t nan = (u & 0xffffe000u) | 0x00400000u;
    return dtype_bits_f32((u & 0x7fffffffu) > 0x7f800000u ? nan : nearest);
}

PETAL_HD static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0x1f) return dtype_bits_f32(sign | 0x7f800000u | (mant << 13)); // inf / NaN
    if (exp == 0) {
        // Subnormal (or zero): value = mant * 2^-24, exact in f32.
        float v = (float)mant * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return dtype_bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Round to nearest even, overflow to inf.
PETAL_HD static inline uint16_t f32_to_f16(float f) {
    uint32_t u = dtype_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;  // NaN
    if (a >= 0x477ff000u) return sign | 0x7c00u; // rounds to >= 65520: inf
    if (a < 0x38800000u) {
        // Below the smallest normal half (2^-14): a subnormal half, rounded to nearest even.
        // Adding 0.5 makes the FPU do the rounding at the half-subnormal quantum (2^-24).
        float v = dtype_bits_f32(a) + 0.5f;
        return sign | (uint16_t)(dtype_f32_bits(v) - dtype_f32_bits(0.5f));
    }
    uint32_t mant_odd = (a >> 13) & 1u;
    a += 0xc8000fffu + mant_odd; // rebias exponent (-112 << 23) and round to nearest even
    return sign | (uint16_t)(a >> 13);
}

// Float to integer, one rule for both devices. C leaves the conversion of NaN and of values outside
// the integer's range undefined (x86 gives INT_MIN, CUDA saturates), so a copy would give
// different integers on the CPU and the GPU: NaN becomes 0, values beyond the range clamp to its
// limits, everything else truncates toward zero as C does.
PETAL_HD static inline int32_t dtype_double_to_i32(double v) {
    if (v != v) return 0;
    if (v <= -2147483648.0) return INT32_MIN;
    if (v >= 2147483647.0) return INT32_MAX;
    return (int32_t)v;
}

PETAL_HD static inline int64_t dtype_double_to_i64(double v) {
    if (v != v) return 0;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    if (v >= 9223372036854775808.0) return INT64_MAX; // 2^63: the largest double below fits
    return (int64_t)v;
}

// The element at p, of type dtype, as a double (integers convert exactly up to 2^53).
PETAL_HD static inline double dtype_load_double(petal_dtype dtype, const char *p) {
    switch (dtype) {
    case PETAL_F32:
        return *(const float *)p;
    case PETAL_F64:
        return *(const double *)p;
    case PETAL_I32:
        return *(const int32_t *)p;
    case PETAL_I64:
        return (double)*(const int64_t *)p;
    case PETAL_F16:
        return f16_to_f32(*(const uint16_t *)p);
    case PETAL_BF16:
        return bf16_to_f32(*(const uint16_t *)p);
    default:
        return 0;
    }
}

// Stores v at p as type dtype (integers by the saturating rule above; f16 and bf16 round from f32).
PETAL_HD static inline void dtype_store_double(petal_dtype dtype, char *p, double v) {
    switch (dtype) {
    case PETAL_F32:
        *(float *)p = (float)v;
        break;
    case PETAL_F64:
        *(double *)p = v;
        break;
    case PETAL_I32:
        *(int32_t *)p = dtype_double_to_i32(v);
        break;
    case PETAL_I64:
        *(int64_t *)p = dtype_double_to_i64(v);
        break;
    case PETAL_F16:
        *(uint16_t *)p = f32_to_f16((float)v);
        break;
    case PETAL_BF16:
        *(uint16_t *)p = f32_to_bf16((float)v);
        break;
    default:
        break;
    }
}
