// ops/: every op forward against a naive f64 reference (f64 and f32, broadcast and non-contiguous
// inputs), every differentiable op through gradcheck, and the errors that name op and shapes.
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "petal.h"
#include "ops/op_table.h"
#include "tensor/random_formula.h"
#include "tests/ops/reference.h"
#include "tests/test_util.h"

static ref_t to_ref(const tensor *t) {
    ref_t r = {.ndim = t->ndim};
    memcpy(r.shape, t->shape, sizeof r.shape);
    r.v = malloc((size_t)(tensor_numel(t) + 1) * sizeof *r.v);
    tensor_to_doubles(t, r.v);
    return r;
}

// Runs case c in `dtype` and compares with the reference on the same (converted) inputs.
static bool check_forward(const op_case *c, petal_dtype dtype, double atol, double rtol) {
    int mark = scope_begin();
    tensor *args[4];
    ref_t refs[4];
    for (int i = 0; i < c->n_args; i++) {
        args[i] = op_case_arg(c, i, dtype, 77 + 13 * i);
        refs[i] = to_ref(args[i]);
    }
    tensor *out = c->fn(args, c);
    ref_t want;
    bool ok = reference_run(c, refs, &want);
    if (!ok) fprintf(stderr, "%s: no reference implementation for op '%s'\n", c->name, c->op);
    char a[SHAPE_STR_MAX], b[SHAPE_STR_MAX], what[128];
    if (ok && (out->ndim != want.ndim ||
               memcmp(out->shape, want.shape, (size_t)want.ndim * sizeof(int64_t)) != 0)) {
        fprintf(stderr, "%s: output shape %s, reference %s\n", c->name,
                shape_str(out->ndim, out->shape, a, sizeof a),
                shape_str(want.ndim, want.shape, b, sizeof b));
        ok = false;
    }
    if (ok) {
        double scale = 1;
        for (int64_t i = 0; i < tensor_numel(out); i++)
            if (isfinite(want.v[i])) scale = fmax(scale, fabs(want.v[i]));
        snprintf(what, sizeof what, "%s (%s)", c->name, dtype_name(dtype));
        ok = tensor_close(what, out, want.v, atol * scale, rtol);
    }
    for (int i = 0; i < c->n_args; i++) free(refs[i].v);
    if (want.v && ok) free(want.v);
    scope_end(mark);
    return ok;
}

START_TEST(test_forward_f64) {
    const op_case *c = &op_cases[_i];
    ck_assert_msg(check_forward(c, PETAL_F64, 1e-12, 1e-10), "%s (f64) differs from the reference",
                  c->name);
}
END_TEST

START_TEST(test_forward_f32) {
    const op_case *c = &op_cases[_i];
    ck_assert_msg(check_forward(c, PETAL_F32, 2e-6, 1e-5), "%s (f32) differs from the reference",
                  c->name);
}
END_TEST

static tensor *run_case(tensor **inputs, const void *ctx) {
    const op_case *c = ctx;
    return c->fn(inputs, c);
}

START_TEST(test_gradcheck) {
    const op_case *c = &op_cases[_i];
    if (!op_case_differentiable(c)) return;
    int mark = scope_begin();
    tensor *args[4];
    for (int i = 0; i < c->n_args; i++) args[i] = op_case_arg(c, i, PETAL_F64, 1000 + 17 * i);
    gradcheck_result r = gradcheck(run_case, c, c->n_args, args, NULL);
    char line[256];
    gradcheck_describe(&r, line, sizeof line);
    ck_assert_msg(r.passed && r.n_checked > 0, "%s: %s", c->name, line);
    scope_end(mark);
}
END_TEST

// Every case's gradient pass runs in f32 too and agrees with f64 (the fast exp/erf included).
START_TEST(test_backward_f32_matches_f64) {
    const op_case *c = &op_cases[_i];
    if (!op_case_differentiable(c)) return;
    int mark = scope_begin();
    tensor *a64[4], *a32[4];
    for (int i = 0; i < c->n_args; i++) {
        a64[i] = op_case_arg(c, i, PETAL_F64, 5 + i);
        a32[i] = op_case_arg(c, i, PETAL_F32, 5 + i);
    }
    tensor *y64 = c->fn(a64, c), *y32 = c->fn(a32, c);
    tensor *s64 = tensor_empty_like(y64);
    tensor_normal_(s64, 0, 1, &(rng_generator){3, 0});
    tensor *s32 = tensor_cast(s64, PETAL_F32);
    autograd_backward(y64, s64, false);
    autograd_backward(y32, s32, false);
    for (int i = 0; i < c->n_args; i++) {
        if (!a64[i]->requires_grad) continue;
        char what[96];
        snprintf(what, sizeof what, "%s grad %d", c->name, i);
        ck_assert_msg(a32[i]->grad && a64[i]->grad, "%s: missing gradient", what);
        double scale = 1;
        for (int64_t k = 0; k < tensor_numel(a64[i]->grad); k++)
            scale = fmax(scale, fabs(tensor_get_flat(a64[i]->grad, k)));
        ck_assert(tensors_close(what, a32[i]->grad, a64[i]->grad, 1e-5 * scale, 1e-4));
    }
    scope_end(mark);
}
END_TEST

// ---- errors: programming mistakes abort with the op's name and the shapes involved ----

static void add_mismatch(void) {
    tensor_add(tensor_zeros(PETAL_F32, SHAPE(2, 3)), tensor_zeros(PETAL_F32, SHAPE(4, 3)));
}
static void mul_dtype_mismatch(void) {
    tensor_mul(tensor_zeros(PETAL_F32, SHAPE(2)), tensor_zeros(PETAL_F64, SHAPE(2)));
}
static void matmul_inner(void) {
    tensor_matmul(tensor_zeros(PETAL_F32, SHAPE(2, 3)), tensor_zeros(PETAL_F32, SHAPE(4, 5)));
}
static void linear_shape(void) {
    tensor_linear(tensor_zeros(PETAL_F32, SHAPE(8, 3)), tensor_zeros(PETAL_F32, SHAPE(5, 4)), NULL);
}
static void exp_of_ints(void) {
    tensor_exp(tensor_zeros(PETAL_I64, SHAPE(3)));
}
static void index_out_of_range(void) {
    tensor *idx = tensor_from_data(PETAL_I64, SHAPE(3), (int64_t[]){0, 5, 1});
    tensor_index_select(tensor_zeros(PETAL_F32, SHAPE(4, 2)), 0, idx);
}
static void bad_target(void) {
    tensor *t = tensor_from_data(PETAL_I64, SHAPE(2), (int64_t[]){1, 7});
    tensor_cross_entropy(tensor_zeros(PETAL_F32, SHAPE(2, 3)), t, NULL);
}
static void layer_norm_weight(void) {
    tensor_layer_norm(tensor_zeros(PETAL_F32, SHAPE(2, 6)), tensor_ones(PETAL_F32, SHAPE(5)), NULL,
                      1e-5);
}
static void attention_shapes(void) {
    tensor *q = tensor_zeros(PETAL_F32, SHAPE(1, 2, 3, 4)),
           *k = tensor_zeros(PETAL_F32, SHAPE(1, 2, 5, 8));
    tensor_attention(q, k, k, NULL);
}
static void cuda_missing(void) {
    tensor_zeros_on(DEVICE_CUDA(16), PETAL_F32, SHAPE(2));
}
static void sum_bad_dim(void) {
    tensor_sum(tensor_zeros(PETAL_F32, SHAPE(2, 3)), 2, false);
}
static void concat_mismatch(void) {
    tensor *a = tensor_zeros(PETAL_F32, SHAPE(2, 3)), *b = tensor_zeros(PETAL_F32, SHAPE(3, 3));
    tensor_concat((tensor *[]){a, b}, 2, 1);
}

START_TEST(test_errors_name_op_and_shapes) {
    ck_assert(aborts_with(add_mismatch, "tensor_add: cannot broadcast shapes [2, 3] and [4, 3]"));
    ck_assert(aborts_with(mul_dtype_mismatch, "tensor_mul: operands have dtypes f32 and f64"));
    ck_assert(aborts_with(matmul_inner, "tensor_matmul: inner dimensions differ: [2, 3] @ [4, 5]"));
    ck_assert(
        aborts_with(linear_shape, "tensor_linear: input [8, 3] does not match weight [5, 4]"));
    ck_assert(aborts_with(exp_of_ints, "tensor_exp: dtype i64 is not supported"));
    ck_assert(aborts_with(index_out_of_range,
                          "index_select: index 5 at position 1 is out of range [0, 4)"));
    ck_assert(aborts_with(bad_target, "cross_entropy: target[1] = 7 is outside [0, 3)"));
    ck_assert(
        aborts_with(layer_norm_weight, "tensor_layer_norm: weight has shape [5], expected [6]"));
    ck_assert(aborts_with(attention_shapes, "got [1, 2, 3, 4], [1, 2, 5, 8], [1, 2, 5, 8]"));
#ifdef PETAL_HAVE_CUDA
    ck_assert(aborts_with(cuda_missing, "cuda:16 was requested but"));
#else
    ck_assert(aborts_with(cuda_missing, "built without CUDA"));
#endif
    ck_assert(aborts_with(sum_bad_dim, "tensor_sum: dim 2 out of range for a 2-d tensor"));
    ck_assert(aborts_with(
        concat_mismatch,
        "tensor_concat: tensor 1 has shape [3, 3], incompatible with [2, 3] outside dim 1"));
}
END_TEST

// The same mistakes as Check signal tests: the process dies with SIGABRT.
START_TEST(test_signal_broadcast) {
    add_mismatch();
}
END_TEST
START_TEST(test_signal_matmul) {
    matmul_inner();
}
END_TEST
START_TEST(test_signal_dtype) {
    mul_dtype_mismatch();
}
END_TEST

// ---- semantics beyond the table ----

START_TEST(test_dropout_statistics_and_determinism) {
    int mark = scope_begin();
    tensor *x = tensor_ones(PETAL_F32, SHAPE(200, 500));
    rng_generator g1 = {42, 0}, g2 = {42, 0};
    tensor *a = tensor_dropout(x, 0.25, true, &g1), *b = tensor_dropout(x, 0.25, true, &g2);
    ck_assert_mem_eq(tensor_data(a), tensor_data(b), tensor_nbytes(a));
    tensor *c = tensor_dropout(x, 0.25, true, &g1); // the generator moved on: a new mask
    ck_assert(memcmp(tensor_data(a), tensor_data(c), tensor_nbytes(a)) != 0);
    int64_t zeros = 0;
    for (int64_t i = 0; i < tensor_numel(a); i++) {
        float v = tensor_data_f32(a)[i];
        ck_assert(v == 0.0f || fabsf(v - 1.0f / 0.75f) < 1e-6f);
        zeros += v == 0.0f;
    }
    double frac = (double)zeros / (double)tensor_numel(a);
    ck_assert_msg(fabs(frac - 0.25) < 0.01, "dropped fraction %g", frac);
    // Every element keeps or drops as the per-element formula says (the kernel draws Philox in
    // groups of blocks and threads: this is what ties the groups to their counters).
    for (int64_t i = 0; i < tensor_numel(a); i++)
        ck_assert((tensor_data_f32(a)[i] != 0.0f) == random_keep((rng_state){42, 0}, i, 0.25));
    scope_end(mark);
}
END_TEST

START_TEST(test_attention_masks) {
    int mark = scope_begin();
    rng_generator g = {1, 0};
    tensor *q = tensor_empty(PETAL_F64, SHAPE(1, 1, 3, 4)),
           *k = tensor_empty(PETAL_F64, SHAPE(1, 1, 5, 4));
    tensor *v = tensor_empty(PETAL_F64, SHAPE(1, 1, 5, 2));
    tensor_normal_(q, 0, 1, &g);
    tensor_normal_(k, 0, 1, &g);
    tensor_normal_(v, 0, 1, &g);
    // BERT's additive -10000 on padded keys is, to f64 precision, attention over the rest.
    tensor *mask =
        tensor_from_data(PETAL_F64, SHAPE(1, 1, 1, 5), (double[]){0, 0, 0, -10000, -10000});
    tensor *masked = tensor_attention(q, k, v, &(attention_options){.mask = mask});
    tensor *short_k = tensor_slice(k, 2, 0, 3, 1), *short_v = tensor_slice(v, 2, 0, 3, 1);
    tensor *direct = tensor_attention(q, short_k, short_v, NULL);
    ck_assert(tensors_close("masked keys", masked, direct, 1e-12, 0));
    // With as many queries as keys, the first query of a causal layer sees only the first key:
    // its output is v[0]. (With more keys, a KV cache, it sees S - T more.)
    tensor *causal = tensor_attention(q, short_k, short_v, &(attention_options){.causal = true});
    ck_assert(tensors_close(
        "causal row 0", tensor_select(tensor_select(tensor_select(causal, 0, 0), 0, 0), 0, 0),
        tensor_select(tensor_select(tensor_select(v, 0, 0), 0, 0), 0, 0), 1e-15, 0));
    // The merged-heads layout: transpose(1, 2) + reshape is a view.
    ck_assert(tensor_is_contiguous(tensor_transpose(masked, 1, 2)));
    scope_end(mark);
}
END_TEST

START_TEST(test_reductions_edge_cases) {
    int mark = scope_begin();
    tensor *x =
        tensor_from_data(PETAL_F32, SHAPE(2, 3), (float[]){1, NAN, 3, -INFINITY, -INFINITY, 2});
    tensor *m = tensor_max(x, 1, false);
    ck_assert(isnan(tensor_get_flat(m, 0))); // NaN propagates, as in torch
    ck_assert(tensor_get_flat(m, 1) == 2);
    tensor *lse = tensor_logsumexp(tensor_full(PETAL_F32, SHAPE(1, 4), -INFINITY), 1, false);
    ck_assert(isinf(tensor_item(lse)) && tensor_item(lse) < 0);
    tensor *big = tensor_full(PETAL_F64, SHAPE(1, 1 << 20), 0.1); // the blocked parallel sum
    ck_assert(fabs(tensor_item(tensor_sum_all(big)) - 0.1 * (1 << 20)) < 1e-6);
    ck_assert(tensor_item(tensor_sum_all(tensor_zeros(PETAL_F32, SHAPE(0)))) == 0);
    tensor *ties = tensor_from_data(PETAL_F32, SHAPE(4), (float[]){2, 5, 5, 1});
    ck_assert(tensor_item(tensor_argmax(ties, 0, false)) == 1); // first occurrence
    scope_end(mark);
}
END_TEST

// add_gelu is gelu(add(x, b)) of the two ops bit for bit, forward and backward, on the CPU path's
// vector kernels (f32, rows longer than a vector, a tail) and the portable ones (f64).
START_TEST(test_add_gelu_equals_add_then_gelu) {
    int mark = scope_begin();
    petal_dtype types[] = {PETAL_F32, PETAL_F64};
    for (int t = 0; t < 2; t++) {
        tensor *x[2], *b[2], *y[2];
        for (int k = 0; k < 2; k++) {
            x[k] = tensor_empty(types[t], SHAPE(37, 301));
            b[k] = tensor_empty(types[t], SHAPE(301));
            tensor_normal_(x[k], 0, 2, &(rng_generator){1, 0});
            tensor_normal_(b[k], 0, 1, &(rng_generator){2, 0});
            tensor_set_requires_grad(x[k], true);
            tensor_set_requires_grad(b[k], true);
        }
        y[0] = tensor_add_gelu(x[0], b[0]);
        y[1] = tensor_gelu(tensor_add(x[1], b[1]));
        tensor *seed = tensor_empty_like(y[0]);
        tensor_normal_(seed, 0, 1, &(rng_generator){3, 0});
        for (int k = 0; k < 2; k++) autograd_backward(y[k], seed, false);
        const tensor *pairs[][2] = {
            {y[0], y[1]}, {x[0]->grad, x[1]->grad}, {b[0]->grad, b[1]->grad}};
        for (int p = 0; p < 3; p++)
            ck_assert_msg(memcmp(tensor_data(pairs[p][0]), tensor_data(pairs[p][1]),
                                 tensor_nbytes(pairs[p][0])) == 0,
                          "add_gelu (%s): %s differs from gelu(add)", dtype_name(types[t]),
                          p == 0 ? "output" : (p == 1 ? "grad x" : "grad b"));
    }
    scope_end(mark);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops");
    TCase *fwd = tcase_with_timeout("forward", 60);
    tcase_add_loop_test(fwd, test_forward_f64, 0, n_op_cases);
    tcase_add_loop_test(fwd, test_forward_f32, 0, n_op_cases);
    suite_add_tcase(s, fwd);
    TCase *grad = tcase_with_timeout("gradcheck", 60);
    tcase_add_loop_test(grad, test_gradcheck, 0, n_op_cases);
    tcase_add_loop_test(grad, test_backward_f32_matches_f64, 0, n_op_cases);
    suite_add_tcase(s, grad);
    TCase *err = tcase_with_timeout("errors", 30);
    tcase_add_test(err, test_errors_name_op_and_shapes);
    tcase_add_test_raise_signal(err, test_signal_broadcast, SIGABRT);
    tcase_add_test_raise_signal(err, test_signal_matmul, SIGABRT);
    tcase_add_test_raise_signal(err, test_signal_dtype, SIGABRT);
    suite_add_tcase(s, err);
    TCase *sem = tcase_with_timeout("semantics", 30);
    tcase_add_test(sem, test_dropout_statistics_and_determinism);
    tcase_add_test(sem, test_attention_masks);
    tcase_add_test(sem, test_reductions_edge_cases);
    tcase_add_test(sem, test_add_gelu_equals_add_then_gelu);
    suite_add_tcase(s, sem);
    return run_suite(s);
}
