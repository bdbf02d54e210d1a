// tensor/dtype_convert.h: float -> integer conversion of NaN, infinities, out-of-range values and
// fractions, by the one saturating rule both devices use (NaN -> 0, clamp to the type's range,
// truncate toward zero): the functions themselves, dtype_store_double, and the CPU's copy and fill.
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "petal.h"
#include "tensor/dtype_convert.h"
#include "tests/test_util.h"

typedef struct {
    double in;
    int32_t i32;
    int64_t i64;
} edge;

// 2^63 - 1024 is the largest double below 2^63; 2147483647.5 and -2147483648.5 truncate onto
// the i32 limits without clamping.
static const edge edges[] = {
    {NAN, 0, 0},
    {-NAN, 0, 0},
    {INFINITY, INT32_MAX, INT64_MAX},
    {-INFINITY, INT32_MIN, INT64_MIN},
    {2147483648.0, INT32_MAX, 2147483648LL},
    {-2147483648.0, INT32_MIN, -2147483648LL},
    {2147483647.0, INT32_MAX, 2147483647LL},
    {2147483647.5, INT32_MAX, 2147483647LL},
    {-2147483648.5, INT32_MIN, -2147483648LL},
    {-2147483649.0, INT32_MIN, -2147483649LL},
    {9223372036854775808.0, INT32_MAX, INT64_MAX},
    {-9223372036854775808.0, INT32_MIN, INT64_MIN},
    {-9223372036854777856.0, INT32_MIN, INT64_MIN},
    {9223372036854774784.0, INT32_MAX, 9223372036854774784LL},
    {1e300, INT32_MAX, INT64_MAX},
    {-1e300, INT32_MIN, INT64_MIN},
    {-0.0, 0, 0},
    {0.9999, 0, 0},
    {-0.9999, 0, 0},
    {2.5, 2, 2},
    {-2.5, -2, -2},
    {123456.75, 123456, 123456},
};
#define N_EDGES ((int)(sizeof edges / sizeof edges[0]))

START_TEST(test_rule_on_every_edge) {
    for (const edge *e = edges; e < edges + N_EDGES; e++) {
        ck_assert_msg(dtype_double_to_i32(e->in) == e->i32, "i32(%.17g) = %d, want %d", e->in,
                      dtype_double_to_i32(e->in), e->i32);
        ck_assert_msg(dtype_double_to_i64(e->in) == e->i64, "i64(%.17g) = %lld, want %lld", e->in,
                      (long long)dtype_double_to_i64(e->in), (long long)e->i64);
        int32_t s32 = -7;
        int64_t s64 = -7;
        dtype_store_double(PETAL_I32, (char *)&s32, e->in);
        dtype_store_double(PETAL_I64, (char *)&s64, e->in);
        ck_assert_msg(s32 == e->i32, "store i32(%.17g) = %d, want %d", e->in, s32, e->i32);
        ck_assert_msg(s64 == e->i64, "store i64(%.17g) = %lld, want %lld", e->in, (long long)s64,
                      (long long)e->i64);
    }
}
END_TEST

// A converted tensor (element i of the table at flat position i * step) against the table; prints
// the first element that differs.
static bool matches_edges(const char *what, const tensor *got, int64_t step) {
    for (int i = 0; i < N_EDGES; i++) {
        bool narrow = got->dtype == PETAL_I32;
        int64_t want = narrow ? edges[i].i32 : edges[i].i64;
        int64_t v = narrow ? tensor_data_i32(got)[i * step] : tensor_data_i64(got)[i * step];
        if (v != want) {
            fprintf(stderr, "%s: %.17g became %lld, want %lld\n", what, edges[i].in, (long long)v,
                    (long long)want);
            return false;
        }
    }
    return true;
}

// The CPU copy kernel (tensor_cast), from f64 and from f32, contiguous and strided. f32 cannot
// hold every edge exactly, so its table is the f64 table of the rounded values.
START_TEST(test_cpu_copy_uses_the_rule) {
    int mark = scope_begin();
    double in[N_EDGES];
    for (int i = 0; i < N_EDGES; i++) in[i] = edges[i].in;
    tensor *src = tensor_from_data(PETAL_F64, SHAPE(N_EDGES), in);
    ck_assert(matches_edges("f64 -> i32", tensor_cast(src, PETAL_I32), 1));
    ck_assert(matches_edges("f64 -> i64", tensor_cast(src, PETAL_I64), 1));
    tensor *wide = tensor_zeros(PETAL_I64, SHAPE(N_EDGES, 2));
    tensor_copy_(view_select(wide, 1, 0), src); // a strided destination
    ck_assert(matches_edges("f64 -> strided i64", wide, 2));
    tensor *f32 = tensor_cast(src, PETAL_F32);
    tensor *i32 = tensor_cast(f32, PETAL_I32), *i64 = tensor_cast(f32, PETAL_I64);
    for (int i = 0; i < N_EDGES; i++) {
        double rounded = tensor_get_flat(f32, i);
        ck_assert_msg(tensor_data_i32(i32)[i] == dtype_double_to_i32(rounded),
                      "f32 -> i32 of %.17g: %d", rounded, tensor_data_i32(i32)[i]);
        ck_assert_msg(tensor_data_i64(i64)[i] == dtype_double_to_i64(rounded),
                      "f32 -> i64 of %.17g: %lld", rounded, (long long)tensor_data_i64(i64)[i]);
    }
    scope_end(mark);
}
END_TEST

START_TEST(test_cpu_fill_uses_the_rule) {
    int mark = scope_begin();
    for (const edge *e = edges; e < edges + N_EDGES; e++) {
        tensor *a = tensor_full(PETAL_I32, SHAPE(3), e->in),
               *b = tensor_full(PETAL_I64, SHAPE(3), e->in);
        for (int i = 0; i < 3; i++) {
            ck_assert_msg(tensor_data_i32(a)[i] == e->i32, "fill i32 %.17g: %d", e->in,
                          tensor_data_i32(a)[i]);
            ck_assert_msg(tensor_data_i64(b)[i] == e->i64, "fill i64 %.17g: %lld", e->in,
                          (long long)tensor_data_i64(b)[i]);
        }
    }
    scope_end(mark);
}
END_TEST

int main(void) {
    Suite *s = suite_create("dtype_convert");
    TCase *tc = tcase_create("float to integer");
    tcase_add_test(tc, test_rule_on_every_edge);
    tcase_add_test(tc, test_cpu_copy_uses_the_rule);
    tcase_add_test(tc, test_cpu_fill_uses_the_rule);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
