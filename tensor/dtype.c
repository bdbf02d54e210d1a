#include "tensor/dtype.h"

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
