#include "tensor/dtype.h"

#include <string.h>

#include "tensor/error.h"

static const struct {
    const char *name;
    size_t size;
} dtype_info[PETAL_DTYPE_COUNT] = {
    [PETAL_F32] = {"f32", 4}, [PETAL_F64] = {"f64", 8}, [PETAL_I32] = {"i32", 4},
    [PETAL_I64] = {"i64", 8}, [PETAL_F16] = {"f16", 2}, [PETAL_BF16] = {"bf16", 2},
};

static void check_dtype(petal_dtype dtype) {
    PETAL_CHECK((unsigned)dtype < PETAL_DTYPE_COUNT, "invalid dtype value %d", (int)dtype);
}

size_t dtype_size(petal_dtype dtype) {
    check_dtype(dtype);
    return dtype_info[dtype].size;
}

const char *dtype_name(petal_dtype dtype) {
    check_dtype(dtype);
    return dtype_info[dtype].name;
}

bool dtype_is_float(petal_dtype dtype) {
    return dtype == PETAL_F32 || dtype == PETAL_F64;
}
bool dtype_is_int(petal_dtype dtype) {
    return dtype == PETAL_I32 || dtype == PETAL_I64;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float bf16_to_f32(uint16_t h) {
    return bits_f32((uint32_t)h << 16);
}

uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // keep NaN a NaN
    u += 0x7fffu + ((u >> 16) & 1u);                                          // nearest even
    return (uint16_t)(u >> 16);
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13)); // inf / NaN
    if (exp == 0) {
        // Subnormal (or zero): value = mant * 2^-24, exact in f32.
        float v = (float)mant * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;  // NaN
    if (a >= 0x477ff000u) return sign | 0x7c00u; // rounds to >= 65520: inf
    if (a < 0x38800000u) {
        // Below the smallest normal half (2^-14): a subnormal half, rounded to nearest even.
        // Adding 0.5 makes the FPU do the rounding at the half-subnormal quantum (2^-24).
        float v = bits_f32(a) + 0.5f;
        return sign | (uint16_t)(f32_bits(v) - f32_bits(0.5f));
    }
    uint32_t mant_odd = (a >> 13) & 1u;
    a += 0xc8000fffu + mant_odd; // rebias exponent (-112 << 23) and round to nearest even
    return sign | (uint16_t)(a >> 13);
}
