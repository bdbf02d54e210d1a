// Element-wise CPU kernels: copy (with dtype conversion), fill, unary, binary and where. The
// formulas come from tensor/elementwise.h; this file only supplies the loops, except for the f32
// transcendental ops that the active CPU path computes with its vector math (cpu_path.h).
#include <string.h>

#include "tensor/backend.h"
#include "tensor/cpu/cpu_kernels.h"
#include "tensor/cpu/cpu_iter.h"
#include "tensor/cpu/cpu_path.h"
#include "tensor/error.h"

// ---- unary: out = f(x, p0, p1) ----

#define UNARY_SPAN(NAME, T, S)                                                                     \
    static void unary_##NAME##_##S(int64_t n, char *const *p, const int64_t *st,                   \
                                   const void *ctx) {                                              \
        const double *prm = ctx;                                                                   \
        T p0 = (T)prm[0], p1 = (T)prm[1];                                                          \
        if (st[0] == sizeof(T) && st[1] == sizeof(T)) {                                            \
            T *o = (T *)p[0];                                                                      \
            const T *x = (const T *)p[1];                                                          \
            for (int64_t i = 0; i < n; i++) o[i] = ew_##NAME##_##S(x[i], p0, p1);                  \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++)                                                        \
                *(T *)(p[0] + i * st[0]) =                                                         \
                    ew_##NAME##_##S(*(const T *)(p[1] + i * st[1]), p0, p1);                       \
        }                                                                                          \
    }

// ---- binary: out = f(a, b, p0, p1) ----

#define BINARY_SPAN(NAME, T, S)                                                                    \
    static void binary_##NAME##_##S(int64_t n, char *const *p, const int64_t *st,                  \
                                    const void *ctx) {                                             \
        const double *prm = ctx;                                                                   \
        T p0 = (T)prm[0], p1 = (T)prm[1];                                                          \
        T *o = (T *)p[0];                                                                          \
        const T *a = (const T *)p[1], *b = (const T *)p[2];                                        \
        if (st[0] == sizeof(T) && st[1] == sizeof(T) && st[2] == sizeof(T)) {                      \
            for (int64_t i = 0; i < n; i++) o[i] = ew_##NAME##_##S(a[i], b[i], p0, p1);            \
        } else if (st[0] == sizeof(T) && st[1] == sizeof(T) && st[2] == 0) {                       \
            T bv = b[0];                                                                           \
            for (int64_t i = 0; i < n; i++) o[i] = ew_##NAME##_##S(a[i], bv, p0, p1);              \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++)                                                        \
                *(T *)(p[0] + i * st[0]) = ew_##NAME##_##S(                                        \
                    *(const T *)(p[1] + i * st[1]), *(const T *)(p[2] + i * st[2]), p0, p1);       \
        }                                                                                          \
    }

#define DEFINE_UNARY_F(E, NAME)  UNARY_SPAN(NAME, float, f32) UNARY_SPAN(NAME, double, f64)
#define DEFINE_BINARY_F(E, NAME) BINARY_SPAN(NAME, float, f32) BINARY_SPAN(NAME, double, f64)
#define DEFINE_UNARY_I(E, NAME)  UNARY_SPAN(NAME, int32_t, i32) UNARY_SPAN(NAME, int64_t, i64)
#define DEFINE_BINARY_I(E, NAME) BINARY_SPAN(NAME, int32_t, i32) BINARY_SPAN(NAME, int64_t, i64)
PETAL_UNARY_OPS(DEFINE_UNARY_F)
PETAL_BINARY_OPS(DEFINE_BINARY_F)
PETAL_INT_UNARY_OPS(DEFINE_UNARY_I)
PETAL_INT_BINARY_OPS(DEFINE_BINARY_I)

// Span tables indexed by [dtype][op]; NULL where the dtype does not support the op.
#define UNARY_ENTRY(S)           [PETAL_##S] = {PETAL_UNARY_OPS(UNARY_ENTRY_##S)}
#define UNARY_ENTRY_F32(E, NAME) [E] = unary_##NAME##_f32,
#define UNARY_ENTRY_F64(E, NAME) [E] = unary_##NAME##_f64,
#define UNARY_ENTRY_I32(E, NAME) [E] = unary_##NAME##_i32,
#define UNARY_ENTRY_I64(E, NAME) [E] = unary_##NAME##_i64,
static const cpu_span_fn unary_spans[PETAL_DTYPE_COUNT][UNARY_OP_COUNT] = {
    [PETAL_F32] = {PETAL_UNARY_OPS(UNARY_ENTRY_F32)},
    [PETAL_F64] = {PETAL_UNARY_OPS(UNARY_ENTRY_F64)},
    [PETAL_I32] = {PETAL_INT_UNARY_OPS(UNARY_ENTRY_I32)},
    [PETAL_I64] = {PETAL_INT_UNARY_OPS(UNARY_ENTRY_I64)},
};
#define BINARY_ENTRY_F32(E, NAME) [E] = binary_##NAME##_f32,
#define BINARY_ENTRY_F64(E, NAME) [E] = binary_##NAME##_f64,
#define BINARY_ENTRY_I32(E, NAME) [E] = binary_##NAME##_i32,
#define BINARY_ENTRY_I64(E, NAME) [E] = binary_##NAME##_i64,
static const cpu_span_fn binary_spans[PETAL_DTYPE_COUNT][BINARY_OP_COUNT] = {
    [PETAL_F32] = {PETAL_BINARY_OPS(BINARY_ENTRY_F32)},
    [PETAL_F64] = {PETAL_BINARY_OPS(BINARY_ENTRY_F64)},
    [PETAL_I32] = {PETAL_INT_BINARY_OPS(BINARY_ENTRY_I32)},
    [PETAL_I64] = {PETAL_INT_BINARY_OPS(BINARY_ENTRY_I64)},
};

// The span of op for dtype: the CPU path's where it has one, else the portable one.
static cpu_span_fn unary_span(unary_op op, petal_dtype dtype) {
    cpu_span_fn fn = dtype == PETAL_F32 ? cpu_path_kernels_active()->unary_f32[op] : NULL;
    return fn ? fn : unary_spans[dtype][op];
}

static cpu_span_fn binary_span(binary_op op, petal_dtype dtype) {
    cpu_span_fn fn = dtype == PETAL_F32 ? cpu_path_kernels_active()->binary_f32[op] : NULL;
    return fn ? fn : binary_spans[dtype][op];
}

void cpu_unary(unary_op op, tensor *out, const tensor *x, double p0, double p1) {
    cpu_span_fn fn = unary_span(op, out->dtype);
    PETAL_CHECK(fn != NULL, "%s: dtype %s is not supported", unary_op_name(op),
                dtype_name(out->dtype));
    const double prm[2] = {p0, p1};
    cpu_iter it;
    cpu_iter_build(&it, 2, (const tensor *[]){out, x});
    cpu_iter_run(&it, fn, prm);
}

void cpu_binary(binary_op op, tensor *out, const tensor *a, const tensor *b, double p0, double p1) {
    cpu_span_fn fn = binary_span(op, out->dtype);
    PETAL_CHECK(fn != NULL, "%s: dtype %s is not supported", binary_op_name(op),
                dtype_name(out->dtype));
    const double prm[2] = {p0, p1};
    cpu_iter it;
    cpu_iter_build(&it, 3, (const tensor *[]){out, a, b});
    cpu_iter_run(&it, fn, prm);
}

// ---- where: out = cond != 0 ? a : b (cond has out's dtype) ----

#define WHERE_SPAN(T, S)                                                                           \
    static void where_##S(int64_t n, char *const *p, const int64_t *st, const void *ctx) {         \
        (void)ctx;                                                                                 \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T c = *(const T *)(p[1] + i * st[1]);                                                  \
            *(T *)(p[0] + i * st[0]) = *(const T *)(p[c != 0 ? 2 : 3] + i * st[c != 0 ? 2 : 3]);   \
        }                                                                                          \
    }
WHERE_SPAN(float, f32)
WHERE_SPAN(double, f64)
WHERE_SPAN(int32_t, i32)
WHERE_SPAN(int64_t, i64)
static const cpu_span_fn where_spans[PETAL_DTYPE_COUNT] = {[PETAL_F32] = where_f32,
                                                           [PETAL_F64] = where_f64,
                                                           [PETAL_I32] = where_i32,
                                                           [PETAL_I64] = where_i64};

void cpu_where(tensor *out, const tensor *cond, const tensor *a, const tensor *b) {
    cpu_span_fn fn = where_spans[out->dtype];
    PETAL_CHECK(fn != NULL && cond->dtype == out->dtype, "where: dtype %s is not supported",
                dtype_name(out->dtype));
    cpu_iter it;
    cpu_iter_build(&it, 4, (const tensor *[]){out, cond, a, b});
    cpu_iter_run(&it, fn, NULL);
}

// ---- copy with conversion ----

typedef struct {
    petal_dtype dst, src;
} copy_ctx;

static void copy_convert_span(int64_t n, char *const *p, const int64_t *st, const void *ctx) {
    const copy_ctx *c = ctx;
    for (int64_t i = 0; i < n; i++)
        dtype_store_double(c->dst, p[0] + i * st[0], dtype_load_double(c->src, p[1] + i * st[1]));
}

// Same dtype: a plain move of element-size chunks (exact for i64 beyond 2^53, NaN payloads, ...).
static void copy_same_span(int64_t n, char *const *p, const int64_t *st, const void *ctx) {
    size_t es = *(const size_t *)ctx;
    if (st[0] == (int64_t)es && st[1] == (int64_t)es) {
        memcpy(p[0], p[1], (size_t)n * es);
        return;
    }
    for (int64_t i = 0; i < n; i++) memcpy(p[0] + i * st[0], p[1] + i * st[1], es);
}

void cpu_copy(tensor *dst, const tensor *src) {
    cpu_iter it;
    cpu_iter_build(&it, 2, (const tensor *[]){dst, src});
    if (dst->dtype == src->dtype) {
        size_t es = dtype_size(dst->dtype);
        cpu_iter_run(&it, copy_same_span, &es);
    } else {
        copy_ctx c = {dst->dtype, src->dtype};
        cpu_iter_run(&it, copy_convert_span, &c);
    }
}

typedef struct {
    char value[8]; // one element of the destination dtype
    size_t size;
} fill_ctx;

static void fill_span(int64_t n, char *const *p, const int64_t *st, const void *ctx) {
    const fill_ctx *c = ctx;
    for (int64_t i = 0; i < n; i++) memcpy(p[0] + i * st[0], c->value, c->size);
}

void cpu_fill(tensor *dst, double value) {
    fill_ctx c = {.size = dtype_size(dst->dtype)};
    dtype_store_double(dst->dtype, c.value, value);
    cpu_iter it;
    cpu_iter_build(&it, 1, (const tensor *[]){dst});
    cpu_iter_run(&it, fill_span, &c);
}
