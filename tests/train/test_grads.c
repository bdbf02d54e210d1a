// train/grads: gradient regression files pass the same gradients, pass a one-ULP change, and fail
// a changed rule (emulated by scaling one gradient by 1.001), naming the tensor and its element.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "petal.h"
#include "tests/test_util.h"

#define RTOL 1e-5
#define ATOL 1e-7

// A two-parameter model (w [3, 4], b [3]) after backward of sum(tanh(W x + b)^2); returns the loss.
static param_registry *model(double *loss) {
    param_registry *r = registry_new();
    tensor *w = tensor_empty(PETAL_F32, SHAPE(3, 4)), *x = tensor_empty(PETAL_F32, SHAPE(2, 4));
    tensor_normal_(w, 0, 1, &(rng_generator){1, 0});
    tensor_normal_(x, 0, 1, &(rng_generator){2, 0});
    registry_add(r, "enc.w", w, MODALITY_NONE, true);
    registry_add(r, "enc.b", tensor_full(PETAL_F32, SHAPE(3), 0.1), MODALITY_NONE, false);
    registry_set_trainable(r, "enc.*", true);
    int mark = scope_begin();
    tensor *y = tensor_tanh(tensor_linear(x, w, registry_get(r, "enc.b")));
    tensor *l = tensor_sum_all(tensor_mul(y, y));
    autograd_backward(l, NULL, false);
    *loss = tensor_item(l);
    scope_end(mark);
    tensor_free(x);
    return r;
}

// model() with its gradients recorded into the test's grads.h5.
static param_registry *recorded_model(double *loss, const char *fingerprint) {
    param_registry *r = model(loss);
    ck_assert_int_eq(grad_record(r, *loss, fingerprint, test_dir_path("grads.h5")), PETAL_OK);
    return r;
}

static petal_status compare(const param_registry *r, double loss, grad_report *rep) {
    petal_status s = grad_compare(r, loss, test_dir_path("grads.h5"), RTOL, ATOL, rep);
    if (s != PETAL_OK) grad_report_print(rep, stderr);
    return s;
}

START_TEST(test_same_and_one_ulp_pass) {
    double loss;
    const char *fp = "{\"model\": \"toy\", \"batch_seed\": 1}";
    param_registry *r = recorded_model(&loss, fp);
    grad_report rep;
    ck_assert_int_eq(compare(r, loss, &rep), PETAL_OK);
    ck_assert_int_eq(rep.n_compared, 3); // the loss, enc.w, enc.b
    ck_assert_str_eq(rep.recorded_config, fp);
    grad_report_free(&rep);
    float *g = tensor_data_f32(registry_get(r, "enc.w")->grad);
    for (int i = 0; i < 12; i++) g[i] = nextafterf(g[i], INFINITY);
    ck_assert_int_eq(compare(r, nextafter(loss, 0), &rep), PETAL_OK);
    grad_report_free(&rep);
    registry_free(r);
}
END_TEST

START_TEST(test_a_changed_rule_fails_naming_the_element) {
    double loss;
    param_registry *r = recorded_model(&loss, NULL);
    tensor *g = registry_get(r, "enc.b")->grad;
    float before = tensor_data_f32(g)[2];
    tensor_data_f32(g)[2] *= 1.001f;
    grad_report rep;
    ck_assert_int_eq(grad_compare(r, loss, test_dir_path("grads.h5"), RTOL, ATOL, &rep),
                     PETAL_ERR_NUMERIC);
    ck_assert_int_eq(rep.n_failed, 1);
    ck_assert_str_eq(rep.failed[0].name, "enc.b");
    ck_assert_int_eq(rep.failed[0].ndim, 1);
    ck_assert_int_eq(rep.failed[0].index[0], 2);
    ck_assert_int_eq(rep.failed[0].n_bad, 1);
    ck_assert(rep.failed[0].expected == before);
    ck_assert(rep.failed[0].found == tensor_data_f32(g)[2]);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "'enc.b' at [2]"));
    grad_report_free(&rep);
    ck_assert_int_eq(grad_compare(r, loss * 1.001, test_dir_path("grads.h5"), RTOL, ATOL, &rep),
                     PETAL_ERR_NUMERIC);
    ck_assert_int_eq(rep.n_failed, 2);
    ck_assert_str_eq(rep.failed[0].name, "loss");
    grad_report_free(&rep);
    registry_free(r);
}
END_TEST

START_TEST(test_missing_extra_and_reshaped_tensors) {
    double loss;
    param_registry *r = recorded_model(&loss, NULL);
    registry_add(r, "head.w", tensor_zeros(PETAL_F32, SHAPE(2)), MODALITY_NONE, true);
    registry_set_trainable(r, "head.w", true); // no gradient reached it: compared as zeros
    registry_set_trainable(r, "enc.b", false);
    grad_report rep;
    ck_assert_int_eq(compare(r, loss, &rep), PETAL_ERR_KEY);
    ck_assert_int_eq(rep.n_missing, 1);
    ck_assert_str_eq(rep.missing[0], "head.w");
    ck_assert_int_eq(rep.n_extra, 1);
    ck_assert_str_eq(rep.extra[0], "enc.b");
    grad_report_free(&rep);
    // Recorded with head.w: its zeros match; a gradient of another shape fails with both shapes.
    ck_assert_int_eq(grad_record(r, loss, NULL, test_dir_path("grads.h5")), PETAL_OK);
    ck_assert_int_eq(compare(r, loss, &rep), PETAL_OK);
    grad_report_free(&rep);
    tensor *w = registry_get(r, "head.w");
    w->grad = tensor_keep(tensor_zeros(PETAL_F32, SHAPE(1, 2)));
    ck_assert_int_eq(grad_compare(r, loss, test_dir_path("grads.h5"), RTOL, ATOL, &rep),
                     PETAL_ERR_NUMERIC);
    ck_assert_str_eq(rep.failed[0].why, "expected f32 [2], found f32 [1, 2]");
    grad_report_free(&rep);
    ck_assert_int_eq(grad_compare(r, loss, test_dir_path("none.h5"), RTOL, ATOL, &rep),
                     PETAL_ERR_IO);
    grad_report_free(&rep);
    registry_free(r);
}
END_TEST

int main(void) {
    Suite *s = suite_create("grads");
    TCase *tc = tcase_create("grads");
    tcase_add_checked_fixture(tc, test_dir_make, test_dir_remove);
    tcase_add_test(tc, test_same_and_one_ulp_pass);
    tcase_add_test(tc, test_a_changed_rule_fails_naming_the_element);
    tcase_add_test(tc, test_missing_extra_and_reshaped_tensors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
