// Recomputing instead of saving (autograd.h ag_recompute_set): a rule that saves the output of a
// cheap element-wise op keeps a recipe (each recomputable op under f64 gradcheck, through a
// reshape, as the ViT's fc2 delta reads its GELU), gradients bit for bit the same as with
// everything saved (f32), the output's memory freed after the forward; attention's GEMM path
// rebuilding its probabilities (with a mask, a mask that needs a gradient, dropout) the same bits;
// a recipe whose source an earlier backward freed, and a bad PETAL_RECOMPUTE, reported.
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "autograd/gradcheck.h"
#include "ops/ops.h"
#include "tensor/scope.h"
#include "tensor/storage.h"
#include "tests/test_util.h"

typedef enum { R_GELU, R_GELU_TANH, R_RELU, R_ABS, R_LOG, R_POW, R_CLAMP, R_ADD_GELU, N_R } rop;
static const char *const rop_names[N_R] = {"gelu", "gelu_tanh",  "relu",  "abs",
                                           "log",  "pow_scalar", "clamp", "add_gelu"};

static tensor *random_tensor(petal_dtype dtype, int ndim, const int64_t *shape, uint64_t seed) {
    tensor *t = tensor_empty(dtype, ndim, shape);
    tensor_normal_(t, 0, 1, &(rng_generator){seed, 0});
    return t;
}

static tensor *apply(rop op, tensor *x, tensor *b) {
    switch (op) {
    case R_GELU:
        return tensor_gelu(x);
    case R_GELU_TANH:
        return tensor_gelu_tanh(x);
    case R_RELU:
        return tensor_relu(x);
    case R_ABS:
        return tensor_abs(x);
    case R_LOG:
        return tensor_log(x);
    case R_POW:
        return tensor_pow_scalar(x, 3.0);
    case R_CLAMP:
        return tensor_clamp(x, -0.5, 0.5);
    default:
        return tensor_add_gelu(x, b);
    }
}

// x (2, 3, 8) -> op -> (2, 3, 2, 4) -> @ w (4, 5): the product saves the op's output (a reshape
// of it), as the ViT's fc2 delta saves its GELU's output split into (..., m, 768).
static tensor *composite(tensor **in, const void *ctx) {
    rop op = *(const rop *)ctx;
    tensor *h = apply(op, in[0], in[2]);
    tensor *split = tensor_reshape(h, SHAPE(2, 3, 2, 4));
    return tensor_matmul(split, in[1]);
}

// n values in [0.1, 1.9] on a grid that misses 0.5, every third one negated (positive for log):
// away from the kinks of relu, abs and clamp(-0.5, 0.5) by more than gradcheck's step.
static tensor *op_input(rop op, petal_dtype dtype, int ndim, const int64_t *shape) {
    tensor *x = tensor_empty(dtype, ndim, shape);
    for (int64_t i = 0; i < tensor_numel(x); i++) {
        double v = 0.1 + 1.8 * (double)((i * 7919) % 97) / 97.0;
        if (op != R_LOG && i % 3 == 0) v = -v;
        if (dtype == PETAL_F64)
            tensor_data_f64(x)[i] = v;
        else
            tensor_data_f32(x)[i] = (float)v;
    }
    return x;
}

START_TEST(test_recipe_gradcheck) {
    rop op = (rop)_i;
    int mark = scope_begin();
    tensor *in[3] = {op_input(op, PETAL_F64, SHAPE(2, 3, 8)),
                     random_tensor(PETAL_F64, SHAPE(4, 5), 2),
                     random_tensor(PETAL_F64, SHAPE(8), 3)};
    for (int i = 0; i < 3; i++) tensor_set_requires_grad(in[i], true);
    tensor *y = composite(in, &op);
    ag_node *product = y->grad_fn;
    ck_assert_str_eq(product->op, "matmul");
    ck_assert_msg(product->recipes && product->recipes->source[0] && !product->saved[0],
                  "%s: the product saved the output instead of its recipe", rop_names[op]);
    ck_assert_str_eq(product->recipes->source[0]->op, op == R_POW ? "pow_scalar" : rop_names[op]);
    gradcheck_result r = gradcheck(composite, &op, 3, in, NULL);
    char msg[256];
    gradcheck_describe(&r, msg, sizeof msg);
    ck_assert_msg(r.passed, "%s: %s", rop_names[op], msg);
    scope_end(mark);
}
END_TEST

// The gradients of x, w and b, in f32, with recomputing on or off while the graph is recorded.
static void composite_grads(rop op, bool recompute, tensor **grads) {
    tensor *in[3] = {op_input(op, PETAL_F32, SHAPE(2, 3, 8)),
                     random_tensor(PETAL_F32, SHAPE(4, 5), 2),
                     random_tensor(PETAL_F32, SHAPE(8), 3)};
    for (int i = 0; i < 3; i++) tensor_set_requires_grad(in[i], true);
    bool prev = ag_recompute_set(recompute);
    tensor *y = composite(in, &op);
    ag_recompute_set(prev);
    tensor *seed = random_tensor(PETAL_F32, y->ndim, y->shape, 4);
    autograd_backward(y, seed, false);
    for (int i = 0; i < 3; i++) grads[i] = in[i]->grad;
}

static bool same_bits(const tensor *a, const tensor *b) {
    return a && b && tensor_same_shape(a, b) &&
           memcmp(tensor_data(a), tensor_data(b), tensor_nbytes(a)) == 0;
}

START_TEST(test_recipe_bit_identical) {
    rop op = (rop)_i;
    int mark = scope_begin();
    tensor *on[3], *off[3];
    composite_grads(op, true, on);
    composite_grads(op, false, off);
    for (int i = 0; i < (op == R_ADD_GELU ? 3 : 2); i++)
        ck_assert_msg(same_bits(on[i], off[i]), "%s: gradient %d differs with the recipe",
                      rop_names[op], i);
    scope_end(mark);
}
END_TEST

// What a product of gelu(x) keeps once the forward's temporaries are gone: with recomputing on,
// the output alone; off, the GELU's output (4 MiB) too.
static size_t bytes_kept(bool recompute) {
    int mark = scope_begin();
    tensor *x = tensor_set_requires_grad(random_tensor(PETAL_F32, SHAPE(1024, 1024), 1), true);
    tensor *w = tensor_set_requires_grad(random_tensor(PETAL_F32, SHAPE(1024, 16), 2), true);
    size_t before = memory_get_stats(DEVICE_CPU).current;
    bool prev = ag_recompute_set(recompute);
    tensor *h = tensor_gelu(x);
    tensor *y = tensor_keep(tensor_matmul(h, w));
    ag_recompute_set(prev);
    tensor_free(h);
    size_t kept = memory_get_stats(DEVICE_CPU).current - before;
    tensor_free(y);
    scope_end(mark);
    return kept;
}

START_TEST(test_recipe_frees_the_output) {
    ck_assert_uint_eq(bytes_kept(true), 1024 * 16 * 4);
    ck_assert_uint_eq(bytes_kept(false), 1024 * 16 * 4 + 1024 * 1024 * 4);
}
END_TEST

// ---- attention on the GEMM path (the CPU's) ----

typedef struct {
    bool mask_grad;
    double dropout;
} attn_case;

// Gradients of q, k, v and the mask for one attention with recomputing on or off; *kept gets what
// the forward left allocated besides its output.
static void attention_grads(const attn_case *c, bool recompute, tensor **grads, size_t *kept) {
    tensor *q = random_tensor(PETAL_F32, SHAPE(2, 3, 5, 8), 1);
    tensor *k = random_tensor(PETAL_F32, SHAPE(2, 3, 7, 8), 2);
    tensor *v = random_tensor(PETAL_F32, SHAPE(2, 3, 7, 4), 3);
    tensor *mask = c->mask_grad ? random_tensor(PETAL_F32, SHAPE(5, 7), 4)
                                : random_tensor(PETAL_F32, SHAPE(2, 1, 1, 7), 4);
    tensor *in[4] = {q, k, v, mask};
    for (int i = 0; i < 4; i++) tensor_set_requires_grad(in[i], i < 3 || c->mask_grad);
    rng_generator g = {7, 0};
    attention_options o = {mask, false, 0.0, c->dropout, c->dropout > 0, &g};
    size_t before = memory_get_stats(DEVICE_CPU).current;
    bool prev = ag_recompute_set(recompute);
    tensor *out = tensor_attention(q, k, v, &o);
    ag_recompute_set(prev);
    *kept = memory_get_stats(DEVICE_CPU).current - before - tensor_nbytes(out);
    autograd_backward(out, random_tensor(PETAL_F32, out->ndim, out->shape, 5), false);
    for (int i = 0; i < 4; i++) grads[i] = in[i]->grad;
}

static const attn_case attn_cases[] = {{false, 0.0}, {true, 0.0}, {false, 0.25}};

START_TEST(test_attention_probs_rebuilt) {
    const attn_case *c = &attn_cases[_i];
    setenv("PETAL_ATTENTION", "unfused", 1); // the CPU's fused kernels never store P at all
    int mark = scope_begin();
    tensor *on[4], *off[4];
    size_t kept_on, kept_off;
    attention_grads(c, true, on, &kept_on);
    attention_grads(c, false, off, &kept_off);
    for (int i = 0; i < (c->mask_grad ? 4 : 3); i++)
        ck_assert_msg(same_bits(on[i], off[i]), "case %d: gradient %d differs", _i, i);
    ck_assert_uint_eq(kept_off - kept_on, 2 * 3 * 5 * 7 * 4); // P (B, H, T, S) not kept
    scope_end(mark);
}
END_TEST

// ---- errors ----

// The first backward runs (and frees) the GELU's node; the product recorded before it still holds
// a recipe of its output.
static void recipe_after_source_freed(void) {
    int mark = scope_begin();
    tensor *x = tensor_set_requires_grad(random_tensor(PETAL_F32, SHAPE(4, 4), 1), true);
    tensor *w = tensor_set_requires_grad(random_tensor(PETAL_F32, SHAPE(4, 4), 2), true);
    tensor *h = tensor_gelu(x);
    tensor *y = tensor_matmul(h, w);
    autograd_backward(tensor_sum_all(h), NULL, false);
    autograd_backward(tensor_sum_all(y), NULL, false);
    scope_end(mark);
}

START_TEST(test_freed_source_reported) {
    ck_assert(aborts_with(recipe_after_source_freed, "which an earlier backward freed"));
}
END_TEST

static void bad_environment(void) {
    setenv("PETAL_RECOMPUTE", "sometimes", 1);
    ag_recompute_enabled();
}

START_TEST(test_bad_environment_reported) {
    ck_assert(aborts_with(bad_environment, "PETAL_RECOMPUTE=sometimes: expected on"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("recompute");
    TCase *tc = tcase_with_timeout("recompute", 20);
    tcase_add_loop_test(tc, test_recipe_gradcheck, 0, N_R);
    tcase_add_loop_test(tc, test_recipe_bit_identical, 0, N_R);
    tcase_add_test(tc, test_recipe_frees_the_output);
    tcase_add_loop_test(tc, test_attention_probs_rebuilt, 0,
                        (int)(sizeof attn_cases / sizeof attn_cases[0]));
    tcase_add_test(tc, test_freed_source_reported);
    tcase_add_test(tc, test_bad_environment_reported);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
