// Element types. f32 is the working type everywhere; f64 exists on the CPU for gradcheck and
// teaching; i32/i64 hold ids and indices; f16/bf16 are storage types (checkpoint conversion, CUDA
// later): CPU math ops reject them, copies convert them.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    PETAL_F32,
    PETAL_F64,
    PETAL_I32,
    PETAL_I64,
    PETAL_F16,
    PETAL_BF16,
    PETAL_DTYPE_COUNT
} petal_dtype;

size_t dtype_size(petal_dtype dtype);
const char *dtype_name(petal_dtype dtype);
bool dtype_is_float(petal_dtype dtype); // f32 or f64: the types CPU math ops accept
bool dtype_is_int(petal_dtype dtype);

// f16_to_f32, f32_to_f16, bf16_to_f32, f32_to_bf16, dtype_load_double, dtype_store_double:
// inline, for the host and the device.
#include "tensor/dtype_convert.h"
