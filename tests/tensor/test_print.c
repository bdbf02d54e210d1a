// tensor/print: NumPy's layout, exactly, for each dtype, views, higher dims and truncation.
#include <stdlib.h>
#include <string.h>

#include "petal.h"
#include "tests/test_util.h"

// What tensor_print writes (malloc'd).
static char *print_text(const tensor *t) {
    char *got = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&got, &size);
    tensor_print(t, f);
    fclose(f);
    return got;
}

// tensor_print's text compared with `want` (both printed in full on a mismatch).
static bool prints_as(const tensor *t, const char *want) {
    char *got = print_text(t);
    bool same = strcmp(got, want) == 0;
    if (!same) fprintf(stderr, "tensor_print wrote\n%s---\nexpected\n%s---\n", got, want);
    free(got);
    return same;
}

static tensor *arange(petal_dtype dtype, int64_t n) {
    return tensor_arange(dtype, 0, (double)n, 1);
}

START_TEST(test_matrix_rows_and_widths) {
    int mark = scope_begin();
    tensor *w =
        tensor_from_data(PETAL_F32, SHAPE(2, 3), (float[]){0.1f, -0.2f, 0.3f, 0.4f, 0.5f, -0.6f});
    ck_assert(prints_as(w, "f32 [2, 3]\n[[ 0.1 -0.2  0.3]\n [ 0.4  0.5 -0.6]]\n"));
    tensor *d = tensor_from_data(PETAL_F64, SHAPE(3), (double[]){1, 2.5, -1e-7});
    ck_assert(prints_as(d, "f64 [3]\n[    1.    2.5 -1e-07]\n"));
    ck_assert(prints_as(tensor_scalar(PETAL_F64, 2.5), "f64 []\n2.5\n"));
    scope_end(mark);
}
END_TEST

START_TEST(test_integers_and_views) {
    int mark = scope_begin();
    ck_assert(prints_as(arange(PETAL_I64, 5), "i64 [5]\n[0 1 2 3 4]\n"));
    tensor *m = view_reshape(arange(PETAL_I32, 6), SHAPE(2, 3));
    ck_assert(prints_as(view_transpose(m, 0, 1), "i32 [3, 2]\n[[0 3]\n [1 4]\n [2 5]]\n"));
    ck_assert(prints_as(view_slice(m, 1, 0, 3, 2), "i32 [2, 2]\n[[0 2]\n [3 5]]\n"));
    tensor *cube = view_reshape(arange(PETAL_I64, 8), SHAPE(2, 2, 2));
    ck_assert(prints_as(cube, "i64 [2, 2, 2]\n[[[0 1]\n  [2 3]]\n\n [[4 5]\n  [6 7]]]\n"));
    scope_end(mark);
}
END_TEST

START_TEST(test_truncation_follows_numpy) {
    int mark = scope_begin();
    char *full = print_text(arange(PETAL_I64, 1000)); // NumPy's threshold: printed in full
    ck_assert_ptr_null(strstr(full, "..."));
    ck_assert_ptr_nonnull(strstr(full, " 499 500 501 "));
    free(full);
    ck_assert(
        prints_as(arange(PETAL_I32, 1001), "i32 [1001]\n[   0    1    2 ...  998  999 1000]\n"));
    tensor *m = view_reshape(arange(PETAL_I32, 10000), SHAPE(100, 100));
    ck_assert(prints_as(m, "i32 [100, 100]\n"
                           "[[   0    1    2 ...   97   98   99]\n"
                           " [ 100  101  102 ...  197  198  199]\n"
                           " [ 200  201  202 ...  297  298  299]\n"
                           " ...\n"
                           " [9700 9701 9702 ... 9797 9798 9799]\n"
                           " [9800 9801 9802 ... 9897 9898 9899]\n"
                           " [9900 9901 9902 ... 9997 9998 9999]]\n"));
    scope_end(mark);
}
END_TEST

int main(void) {
    Suite *s = suite_create("print");
    TCase *tc = tcase_create("print");
    tcase_add_test(tc, test_matrix_rows_and_widths);
    tcase_add_test(tc, test_integers_and_views);
    tcase_add_test(tc, test_truncation_follows_numpy);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
