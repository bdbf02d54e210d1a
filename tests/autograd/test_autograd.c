// autograd/: the tape, accumulation, grad mode, retain_graph, frozen-aware saving, gradient memory,
// deep graphs, and a gradcheck that must catch a wrong rule.
#include <math.h>
#include <string.h>

#include "petal.h"
#include "tests/test_util.h"

static tensor *leaf(int ndim, const int64_t *shape, uint64_t seed) {
    tensor *t = tensor_empty(PETAL_F64, ndim, shape);
    tensor_normal_(t, 0, 1, &(rng_generator){seed, 0});
    return tensor_set_requires_grad(t, true);
}

START_TEST(test_gradients_accumulate_until_reset) {
    int mark = scope_begin();
    tensor *x = leaf(SHAPE(3), 1);
    for (int round = 1; round <= 2; round++) {
        tensor *loss = tensor_sum_all(tensor_mul(x, x)); // d/dx = 2x
        autograd_backward(loss, NULL, false);
        for (int i = 0; i < 3; i++)
            ck_assert(fabs(tensor_get_flat(x->grad, i) - 2.0 * round * tensor_get_flat(x, i)) <
                      1e-12);
    }
    tensor *buffer = x->grad;
    tensor_zero_grad(x); // keeps the buffer
    ck_assert_ptr_eq(x->grad, buffer);
    ck_assert(tensor_get_flat(x->grad, 0) == 0);
    tensor_reset_grad(x); // frees it
    ck_assert_ptr_null(x->grad);
    scope_end(mark);
}
END_TEST

START_TEST(test_shared_inputs) {
    int mark = scope_begin();
    tensor *x = leaf(SHAPE(2, 2), 2);
    autograd_backward(tensor_sum_all(tensor_add(x, x)), NULL, false); // both edges reach x
    for (int i = 0; i < 4; i++) ck_assert(tensor_get_flat(x->grad, i) == 2.0);
    tensor_reset_grad(x);
    // y = x * x * x through two muls: dy/dx = 3 x^2
    tensor *y = tensor_mul(tensor_mul(x, x), x);
    autograd_backward(tensor_sum_all(y), NULL, false);
    for (int i = 0; i < 4; i++) {
        double v = tensor_get_flat(x, i);
        ck_assert(fabs(tensor_get_flat(x->grad, i) - 3 * v * v) < 1e-12);
    }
    scope_end(mark);
}
END_TEST

// A Linear adds its input gradient in place into what its input has accumulated, and through a
// reshape that has no gradient yet straight into the reshaped tensor's (the reshape still runs
// when another consumer gives it one); so does a product with one shared matrix (x V, as in a
// paper-variant CP projection). Tape order M, B, C, A runs backward as A, C, B, M.
START_TEST(test_linear_accumulates_in_place_through_reshapes) {
    int mark = scope_begin();
    tensor *x = leaf(SHAPE(4, 6), 3);
    tensor *w1 = tensor_empty(PETAL_F64, SHAPE(5, 6)), *w2 = tensor_empty(PETAL_F64, SHAPE(7, 3));
    tensor *w3 = tensor_empty(PETAL_F64, SHAPE(3, 2));
    tensor_normal_(w1, 0, 1, &(rng_generator){4, 0});
    tensor_normal_(w2, 0, 1, &(rng_generator){5, 0});
    tensor_normal_(w3, 0, 1, &(rng_generator){6, 0});
    tensor *x2 = tensor_reshape(x, SHAPE(8, 3));
    tensor *m = tensor_mul_scalar(x2, 0.5);   // M: gives the reshape a gradient last
    tensor *y2 = tensor_linear(x2, w2, NULL); // B: x has a gradient by then, the reshape not
    tensor *y3 = tensor_matmul(x2, w3);       // C: likewise
    tensor *y1 = tensor_linear(x, w1, NULL);  // A: runs first
    tensor *loss = tensor_add(tensor_add(tensor_sum_all(y1), tensor_sum_all(y2)),
                              tensor_add(tensor_sum_all(y3), tensor_sum_all(m)));
    autograd_backward(loss, NULL, false);
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 6; c++) { // sum_o w1[o, c] + sum_o w2[o, c % 3] + sum_j w3[c % 3, j]
            double want = 0.5 + tensor_get_flat(w3, c % 3 * 2) + tensor_get_flat(w3, c % 3 * 2 + 1);
            for (int o = 0; o < 5; o++) want += tensor_get_flat(w1, o * 6 + c);
            for (int o = 0; o < 7; o++) want += tensor_get_flat(w2, o * 3 + c % 3);
            ck_assert(fabs(tensor_get_flat(x->grad, r * 6 + c) - want) < 1e-12);
        }
    scope_end(mark);
}
END_TEST

START_TEST(test_grad_mode_off_records_nothing) {
    int mark = scope_begin();
    tensor *x = leaf(SHAPE(4), 3);
    bool prev = grad_mode_set(false);
    tensor *y = tensor_exp(x);
    ck_assert_ptr_null(y->grad_fn);
    ck_assert(!y->requires_grad);
    grad_mode_set(prev);
    ck_assert(grad_mode_enabled());
    tensor *z = tensor_exp(x);
    ck_assert_ptr_nonnull(z->grad_fn);
    ck_assert_str_eq(z->grad_fn->op, "exp");
    scope_end(mark);
}
END_TEST

static void backward_twice(void) {
    tensor *x = leaf(SHAPE(2), 4);
    tensor *loss = tensor_sum_all(tensor_exp(x));
    autograd_backward(loss, NULL, false);
    autograd_backward(loss, NULL, false);
}

static void backward_without_grad(void) {
    tensor *x = tensor_ones(PETAL_F32, SHAPE(2));
    autograd_backward(tensor_sum_all(x), NULL, false);
}

static void set_requires_grad_on_result(void) {
    tensor *x = leaf(SHAPE(2), 5);
    tensor_set_requires_grad(tensor_exp(x), false);
}

static void backward_of_a_vector(void) {
    tensor *x = leaf(SHAPE(2), 6);
    autograd_backward(tensor_exp(x), NULL, false);
}

START_TEST(test_misuse_is_reported) {
    ck_assert(aborts_with(backward_twice,
                          "was already freed by an earlier backward; pass retain_graph=true"));
    ck_assert(aborts_with(backward_without_grad, "the tensor does not require grad"));
    ck_assert(aborts_with(set_requires_grad_on_result,
                          "only leaves can be set; this tensor was computed by 'exp'"));
    ck_assert(
        aborts_with(backward_of_a_vector, "the root has shape [2]; pass its gradient explicitly"));
}
END_TEST

START_TEST(test_retain_graph_allows_second_backward) {
    int mark = scope_begin();
    tensor *x = leaf(SHAPE(3), 7);
    tensor *loss = tensor_sum_all(tensor_tanh(x));
    autograd_backward(loss, NULL, true);
    autograd_backward(loss, NULL, false);
    for (int i = 0; i < 3; i++) {
        double t = tanh(tensor_get_flat(x, i));
        ck_assert(fabs(tensor_get_flat(x->grad, i) - 2 * (1 - t * t)) < 1e-12);
    }
    scope_end(mark);
}
END_TEST

// A frozen weight: linear saves no activation for dW, so freeing x frees its memory at once.
START_TEST(test_frozen_weight_saves_no_activation) {
    int mark = scope_begin();
    tensor *w_frozen = tensor_ones(PETAL_F32, SHAPE(8, 256));
    tensor *w_train = tensor_set_requires_grad(tensor_ones(PETAL_F32, SHAPE(8, 256)), true);
    tensor *x0 = tensor_set_requires_grad(tensor_ones(PETAL_F32, SHAPE(64, 256)), true);
    size_t act = 512 * 256 * 4;
    for (int trainable = 0; trainable < 2; trainable++) {
        tensor *x = tensor_expand(tensor_unsqueeze(x0, 0), SHAPE(8, 64, 256));
        tensor *xc = tensor_contiguous(x); // a fresh activation of `act` bytes
        tensor_free(x);
        size_t before = memory_get_stats(DEVICE_CPU).current;
        tensor *y = tensor_linear(xc, trainable ? w_train : w_frozen, NULL);
        ag_node *n = y->grad_fn;
        ck_assert_ptr_nonnull(n);
        ck_assert(trainable ? n->saved[0] != NULL : n->saved[0] == NULL);
        tensor_free(xc);
        size_t after = memory_get_stats(DEVICE_CPU).current;
        size_t y_bytes = tensor_nbytes(y);
        ck_assert_uint_eq(after, before + y_bytes - (trainable ? 0 : act));
        autograd_backward(tensor_sum_all(y), NULL, false);
        ck_assert(trainable ? w_train->grad != NULL : w_frozen->grad == NULL);
    }
    scope_end(mark);
}
END_TEST

// After backward only leaves hold gradients: every intermediate gradient has been freed.
START_TEST(test_only_leaves_keep_gradient_memory) {
    int mark = scope_begin();
    tensor *x = tensor_set_requires_grad(tensor_ones(PETAL_F32, SHAPE(128, 128)), true);
    tensor *frozen = tensor_ones(PETAL_F32, SHAPE(128, 128));
    tensor *h = x;
    for (int i = 0; i < 10; i++) h = tensor_tanh(tensor_matmul(h, frozen));
    tensor *loss = tensor_mean_all(h);
    size_t before = memory_get_stats(DEVICE_CPU).current;
    autograd_backward(loss, NULL, false);
    size_t after = memory_get_stats(DEVICE_CPU).current;
    ck_assert_ptr_null(frozen->grad);
    // +x->grad; the tanh outputs the rules saved are released (the scope still holds the
    // forward results, which are the same storages, so nothing else changes).
    ck_assert_uint_eq(after, before + tensor_nbytes(x));
    scope_end(mark);
}
END_TEST

START_TEST(test_deep_graph) {
    int mark = scope_begin();
    tensor *x = leaf(SHAPE(1), 8);
    tensor *h = x;
    for (int i = 0; i < 100000; i++) {
        tensor *next = tensor_mul_scalar(h, 1.0);
        if (h != x) tensor_free(h); // only the graph keeps the chain alive
        h = next;
    }
    autograd_backward(tensor_sum_all(h), NULL, false);
    ck_assert(tensor_get_flat(x->grad, 0) == 1.0);
    tensor_free(h); // releases 100000 nodes without recursion
    scope_end(mark);
}
END_TEST

// d/dx x^2 "= x": a wrong rule gradcheck must reject, naming the worst entry.
static void wrong_square_backward(ag_node *n, tensor *g, tensor **gin) {
    gin[0] = tensor_mul(g, ag_saved(n, 0));
}

static tensor *wrong_square(tensor **in, const void *ctx) {
    (void)ctx;
    bool prev = grad_mode_set(false);
    tensor *y = tensor_mul(in[0], in[0]);
    grad_mode_set(prev);
    ag_node *n = ag_record("wrong_square", wrong_square_backward, y, 1, in);
    if (n) ag_save(n, 0, in[0]);
    return y;
}

static tensor *right_square(tensor **in, const void *ctx) {
    (void)ctx;
    return tensor_mul(in[0], in[0]);
}

START_TEST(test_gradcheck_catches_a_wrong_rule) {
    int mark = scope_begin();
    tensor *x = leaf(SHAPE(2, 3), 9);
    gradcheck_result bad = gradcheck(wrong_square, NULL, 1, &x, NULL);
    ck_assert(!bad.passed);
    ck_assert_int_eq(bad.worst_input, 0);
    ck_assert_int_eq((int)bad.worst_element, (int)bad.worst_output); // the diagonal is wrong
    ck_assert(fabs(bad.worst_numeric - 2 * bad.worst_analytic) < 1e-6);
    gradcheck_result good = gradcheck(right_square, NULL, 1, &x, NULL);
    ck_assert(good.passed);
    ck_assert_int_eq((int)good.n_checked, 36);
    scope_end(mark);
}
END_TEST

START_TEST(test_backward_from_a_leaf_and_explicit_seed) {
    int mark = scope_begin();
    tensor *x = leaf(SHAPE(3), 10);
    tensor *seed = tensor_from_data(PETAL_F64, SHAPE(3), (double[]){1, 2, 3});
    autograd_backward(x, seed, false);
    ck_assert(tensor_get_flat(x->grad, 2) == 3);
    autograd_backward(x, seed, false);
    ck_assert(tensor_get_flat(x->grad, 2) == 6);
    tensor *y = tensor_mul_scalar(x, 2);
    tensor_reset_grad(x);
    autograd_backward(y, seed, false);
    ck_assert(tensor_get_flat(x->grad, 1) == 4);
    scope_end(mark);
}
END_TEST

// autograd_backward_notify: each leaf once, when its gradient is final. w is used early and late
// in the tape (its gradient gets two contributions), b only late, x (no gradient) never.
typedef struct {
    tensor *leaves[4];
    double grads[4]; // the gradient's first element when the leaf was announced
    int n;
} announced;

static void note_leaf(tensor *leaf, void *ctx) {
    announced *a = ctx;
    ck_assert_int_lt(a->n, 4);
    a->leaves[a->n] = leaf;
    a->grads[a->n++] = tensor_item(tensor_select(tensor_reshape(leaf->grad, SHAPE(-1)), 0, 0));
}

START_TEST(test_notify_announces_final_gradients) {
    int mark = scope_begin();
    tensor *w = tensor_set_requires_grad(tensor_keep(tensor_full(PETAL_F64, SHAPE(2), 1.5)), true);
    tensor *b = tensor_set_requires_grad(tensor_keep(tensor_full(PETAL_F64, SHAPE(2), -2)), true);
    tensor *x = tensor_full(PETAL_F64, SHAPE(2), 3);
    tensor *h = tensor_mul(w, x);                             // early use of w
    tensor *y = tensor_add(tensor_mul(tensor_tanh(h), w), b); // late uses of w and b
    announced a = {0};
    autograd_backward_notify(tensor_sum_all(y), NULL, false, note_leaf, &a);
    ck_assert_int_eq(a.n, 2);
    for (int i = 0; i < 2; i++) {
        tensor *leaf = a.leaves[i];
        ck_assert(leaf == w || leaf == b);
        ck_assert(leaf != a.leaves[1 - i]);
        ck_assert_double_eq(a.grads[i], tensor_data_f64(leaf->grad)[0]); // nothing added later
    }
    // d/dw [tanh(w x) w + b] = x (1 - tanh^2(w x)) w + tanh(w x)
    double t = tanh(4.5), want = 3 * (1 - t * t) * 1.5 + t;
    ck_assert_double_eq_tol(tensor_data_f64(w->grad)[0], want, 1e-12);
    scope_end(mark);
    tensor_free(w);
    tensor_free(b);
}
END_TEST

int main(void) {
    Suite *s = suite_create("autograd");
    TCase *tc = tcase_with_timeout("tape", 60);
    tcase_add_test(tc, test_gradients_accumulate_until_reset);
    tcase_add_test(tc, test_shared_inputs);
    tcase_add_test(tc, test_notify_announces_final_gradients);
    tcase_add_test(tc, test_linear_accumulates_in_place_through_reshapes);
    tcase_add_test(tc, test_grad_mode_off_records_nothing);
    tcase_add_test(tc, test_misuse_is_reported);
    tcase_add_test(tc, test_retain_graph_allows_second_backward);
    tcase_add_test(tc, test_frozen_weight_saves_no_activation);
    tcase_add_test(tc, test_only_leaves_keep_gradient_memory);
    tcase_add_test(tc, test_deep_graph);
    tcase_add_test(tc, test_gradcheck_catches_a_wrong_rule);
    tcase_add_test(tc, test_backward_from_a_leaf_and_explicit_seed);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
