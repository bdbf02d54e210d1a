// Element-wise ops and their backward rules.
#include <math.h>

#include "ops/internal.h"
#include "ops/ops.h"

// ---- binary, broadcasting ----

static tensor *binary_forward(const char *op, binary_op kind, tensor *a, tensor *b) {
    ops_check_pair(op, a, b);
    int64_t shape[PETAL_MAX_DIMS];
    int nd = shape_broadcast(op, a->ndim, a->shape, b->ndim, b->shape, shape);
    tensor *out = tensor_empty_on(a->device, a->dtype, nd, shape);
    backend_of(out)->binary(kind, out, a, b, 0, 0);
    return out;
}

static void add_backward(ag_node *n, tensor *g, tensor **gin) {
    if (ag_needs(n, 0)) gin[0] = ops_sum_to(g, n, 0);
    if (ag_needs(n, 1)) gin[1] = ops_sum_to(g, n, 1);
}

tensor *tensor_add(tensor *a, tensor *b) {
    tensor *out = binary_forward("tensor_add", BINARY_ADD, a, b);
    ag_record("add", add_backward, out, 2, (tensor *[]){a, b});
    return out;
}

static void sub_backward(ag_node *n, tensor *g, tensor **gin) {
    if (ag_needs(n, 0)) gin[0] = ops_sum_to(g, n, 0);
    if (ag_needs(n, 1)) {
        tensor *neg = tensor_neg(g);
        gin[1] = ops_sum_to(neg, n, 1);
    }
}

tensor *tensor_sub(tensor *a, tensor *b) {
    tensor *out = binary_forward("tensor_sub", BINARY_SUB, a, b);
    ag_record("sub", sub_backward, out, 2, (tensor *[]){a, b});
    return out;
}

// d(a b) = b da + a db: each side saves the other operand only if that side needs a gradient.
static void mul_backward(ag_node *n, tensor *g, tensor **gin) {
    if (ag_needs(n, 0)) gin[0] = ops_sum_to(tensor_mul(g, ag_saved(n, 1)), n, 0);
    if (ag_needs(n, 1)) gin[1] = ops_sum_to(tensor_mul(g, ag_saved(n, 0)), n, 1);
}

tensor *tensor_mul(tensor *a, tensor *b) {
    tensor *out = binary_forward("tensor_mul", BINARY_MUL, a, b);
    ag_node *n = ag_record("mul", mul_backward, out, 2, (tensor *[]){a, b});
    if (n && ag_needs(n, 0)) ag_save(n, 1, b);
    if (n && ag_needs(n, 1)) ag_save(n, 0, a);
    return out;
}

// d(a / b) = da / b - (a / b) db / b
static void div_backward(ag_node *n, tensor *g, tensor **gin) {
    tensor *g_over_b = tensor_div(g, ag_saved(n, 1));
    if (ag_needs(n, 0)) gin[0] = ops_sum_to(g_over_b, n, 0);
    if (ag_needs(n, 1)) {
        tensor *t = tensor_mul(g_over_b, ag_saved(n, 2));
        gin[1] = ops_sum_to(tensor_neg(t), n, 1);
    }
}

tensor *tensor_div(tensor *a, tensor *b) {
    tensor *out = binary_forward("tensor_div", BINARY_DIV, a, b);
    ag_node *n = ag_record("div", div_backward, out, 2, (tensor *[]){a, b});
    if (n) ag_save(n, 1, b);
    if (n && ag_needs(n, 1)) ag_save(n, 2, out);
    return out;
}

#define COMPARISON(NAME, KIND)                                                                     \
    tensor *tensor_##NAME(tensor *a, tensor *b) {                                                  \
        return binary_forward("tensor_" #NAME, KIND, a, b);                                        \
    }
COMPARISON(eq, BINARY_EQ)
COMPARISON(ne, BINARY_NE)
COMPARISON(lt, BINARY_LT)
COMPARISON(le, BINARY_LE)
COMPARISON(gt, BINARY_GT)
COMPARISON(ge, BINARY_GE)

// ---- where / masked_fill ----

static void where_backward(ag_node *n, tensor *g, tensor **gin) {
    tensor *cond = ag_saved(n, 0);
    tensor *zero = tensor_zeros_on(g->device, g->dtype, 0, NULL);
    if (ag_needs(n, 1)) gin[1] = ops_sum_to(tensor_where(cond, g, zero), n, 1);
    if (ag_needs(n, 2)) gin[2] = ops_sum_to(tensor_where(cond, zero, g), n, 2);
}

tensor *tensor_where(tensor *cond, tensor *a, tensor *b) {
    ops_check_pair("tensor_where", a, b);
    char dc[16], da[16];
    PETAL_CHECK(device_equal(cond->device, a->device),
                "tensor_where: condition on %s, values on %s", device_name(cond->device, dc),
                device_name(a->device, da));
    int64_t ab[PETAL_MAX_DIMS], shape[PETAL_MAX_DIMS];
    int nab = shape_broadcast("tensor_where", a->ndim, a->shape, b->ndim, b->shape, ab);
    int nd = shape_broadcast("tensor_where", cond->ndim, cond->shape, nab, ab, shape);
    tensor *c = cond->dtype == a->dtype ? tensor_detach(cond) : tensor_cast(cond, a->dtype);
    tensor *out = tensor_empty_on(a->device, a->dtype, nd, shape);
    backend_of(out)->where(out, c, a, b);
    ag_node *n = ag_record("where", where_backward, out, 3, (tensor *[]){NULL, a, b});
    if (n) ag_save(n, 0, c);
    tensor_free(c);
    return out;
}

tensor *tensor_masked_fill(tensor *x, tensor *mask, double value) {
    tensor *v = tensor_full(x->dtype, 0, NULL, value);
    tensor *moved = v;
    if (x->device.type != PETAL_CPU) moved = tensor_to(v, x->device);
    tensor *out = tensor_where(mask, moved, x);
    if (moved != v) tensor_free(moved);
    tensor_free(v);
    return out;
}

// ---- unary ----

// Integer tensors support neg, add_scalar and mul_scalar; the kernel rejects the rest.
static tensor *unary_forward(unary_op kind, tensor *x, double p0, double p1) {
    tensor *out = tensor_empty_on(x->device, x->dtype, x->ndim, x->shape);
    backend_of(out)->unary(kind, out, x, p0, p1);
    return out;
}

static tensor *float_unary(const char *op, unary_op kind, tensor *x, double p0, double p1) {
    ops_check_float(op, x);
    return unary_forward(kind, x, p0, p1);
}

// g * f'(saved) through a fused *_GRAD kernel, with the node's scalar parameters.
static tensor *grad_through(binary_op kind, ag_node *n, tensor *g) {
    tensor *s = ag_saved(n, 0);
    tensor *out = tensor_empty_like(g);
    backend_of(out)->binary(kind, out, g, s, n->attr_f[0], n->attr_f[1]);
    return out;
}

// The output of a unary op that saved its input, by the forward's kernel (attr_i[0]).
static tensor *unary_recompute(ag_node *n) {
    return unary_forward((unary_op)n->attr_i[0], ag_saved(n, 0), n->attr_f[0], n->attr_f[1]);
}

// Records a unary op of kind `kind` whose rule reads one saved tensor (the input x or the output
// y). Saving x, it can rebuild its output for a consumer that saves that (autograd.h's recipes).
static tensor *unary_with_rule(tensor *out, tensor *x, const char *name, ag_backward_fn rule,
                               const tensor *save, unary_op kind, double p0, double p1) {
    ag_node *n = ag_record(name, rule, out, 1, &x);
    if (n) {
        if (save) ag_save(n, 0, save);
        if (save == x) n->recompute = unary_recompute;
        n->attr_i[0] = kind;
        n->attr_f[0] = p0;
        n->attr_f[1] = p1;
    }
    return out;
}

static void identity_backward(ag_node *n, tensor *g, tensor **gin) {
    (void)n;
    gin[0] = g;
}

tensor *tensor_add_scalar(tensor *x, double s) {
    tensor *out = unary_forward(UNARY_ADD_SCALAR, x, s, 0);
    return unary_with_rule(out, x, "add_scalar", identity_backward, NULL, UNARY_ADD_SCALAR, s, 0);
}

static void mul_scalar_backward(ag_node *n, tensor *g, tensor **gin) {
    gin[0] = tensor_mul_scalar(g, n->attr_f[0]);
}

tensor *tensor_mul_scalar(tensor *x, double s) {
    tensor *out = unary_forward(UNARY_MUL_SCALAR, x, s, 0);
    return unary_with_rule(out, x, "mul_scalar", mul_scalar_backward, NULL, UNARY_MUL_SCALAR, s, 0);
}

static void div_scalar_backward(ag_node *n, tensor *g, tensor **gin) {
    gin[0] = tensor_div_scalar(g, n->attr_f[0]);
}

tensor *tensor_div_scalar(tensor *x, double s) {
    tensor *out = float_unary("tensor_div_scalar", UNARY_DIV_SCALAR, x, s, 0);
    return unary_with_rule(out, x, "div_scalar", div_scalar_backward, NULL, UNARY_DIV_SCALAR, s, 0);
}

static void neg_backward(ag_node *n, tensor *g, tensor **gin) {
    (void)n;
    gin[0] = tensor_neg(g);
}

tensor *tensor_neg(tensor *x) {
    tensor *out = unary_forward(UNARY_NEG, x, 0, 0);
    return unary_with_rule(out, x, "neg", neg_backward, NULL, UNARY_NEG, 0, 0);
}

static void exp_backward(ag_node *n, tensor *g, tensor **gin) {
    gin[0] = tensor_mul(g, ag_saved(n, 0)); // d exp(x) = exp(x) dx: reuse the output
}

tensor *tensor_exp(tensor *x) {
    tensor *out = float_unary("tensor_exp", UNARY_EXP, x, 0, 0);
    return unary_with_rule(out, x, "exp", exp_backward, out, UNARY_EXP, 0, 0);
}

static void log_backward(ag_node *n, tensor *g, tensor **gin) {
    gin[0] = tensor_div(g, ag_saved(n, 0));
}

tensor *tensor_log(tensor *x) {
    tensor *out = float_unary("tensor_log", UNARY_LOG, x, 0, 0);
    return unary_with_rule(out, x, "log", log_backward, x, UNARY_LOG, 0, 0);
}

#define FUSED_GRAD_RULE(NAME, KIND)                                                                \
    static void NAME##_backward(ag_node *n, tensor *g, tensor **gin) {                             \
        gin[0] = grad_through(KIND, n, g);                                                         \
    }
FUSED_GRAD_RULE(sqrt, BINARY_SQRT_GRAD)
FUSED_GRAD_RULE(rsqrt, BINARY_RSQRT_GRAD)
FUSED_GRAD_RULE(abs, BINARY_ABS_GRAD)
FUSED_GRAD_RULE(tanh, BINARY_TANH_GRAD)
FUSED_GRAD_RULE(sigmoid, BINARY_SIGMOID_GRAD)
FUSED_GRAD_RULE(relu, BINARY_RELU_GRAD)
FUSED_GRAD_RULE(gelu, BINARY_GELU_ERF_GRAD)
FUSED_GRAD_RULE(gelu_tanh, BINARY_GELU_TANH_GRAD)
FUSED_GRAD_RULE(pow, BINARY_POW_GRAD)
FUSED_GRAD_RULE(clamp, BINARY_CLAMP_GRAD)

// Unary ops whose rule reads the output y (SAVE_Y) or the input x.
#define SAVE_X 0
#define SAVE_Y 1
#define UNARY_OP(NAME, KIND, SAVES)                                                                \
    tensor *tensor_##NAME(tensor *x) {                                                             \
        tensor *out = float_unary("tensor_" #NAME, KIND, x, 0, 0);                                 \
        return unary_with_rule(out, x, #NAME, NAME##_backward, SAVES == SAVE_Y ? out : x, KIND, 0, \
                               0);                                                                 \
    }
UNARY_OP(sqrt, UNARY_SQRT, SAVE_Y)
UNARY_OP(rsqrt, UNARY_RSQRT, SAVE_Y)
UNARY_OP(abs, UNARY_ABS, SAVE_X)
UNARY_OP(tanh, UNARY_TANH, SAVE_Y)
UNARY_OP(sigmoid, UNARY_SIGMOID, SAVE_Y)
UNARY_OP(relu, UNARY_RELU, SAVE_X)
UNARY_OP(gelu, UNARY_GELU_ERF, SAVE_X)
UNARY_OP(gelu_tanh, UNARY_GELU_TANH, SAVE_X)

// d/dx gelu(x + b) = gelu'(x + b), the same for b; x + b is recomputed rather than saved.
static void add_gelu_backward(ag_node *n, tensor *g, tensor **gin) {
    tensor *u = tensor_empty_like(g);
    backend_of(u)->binary(BINARY_ADD, u, ag_saved(n, 0), ag_saved(n, 1), 0, 0);
    tensor *gu = tensor_empty_like(g);
    backend_of(gu)->binary(BINARY_GELU_ERF_GRAD, gu, g, u, 0, 0);
    tensor_free(u);
    if (ag_needs(n, 0)) gin[0] = ops_sum_to(gu, n, 0);
    if (ag_needs(n, 1)) gin[1] = ops_sum_to(gu, n, 1);
}

static tensor *add_gelu_recompute(ag_node *n) {
    return binary_forward("tensor_add_gelu", BINARY_ADD_GELU_ERF, ag_saved(n, 0), ag_saved(n, 1));
}

tensor *tensor_add_gelu(tensor *x, tensor *b) {
    ops_check_float("tensor_add_gelu", x);
    tensor *out = binary_forward("tensor_add_gelu", BINARY_ADD_GELU_ERF, x, b);
    ag_node *n = ag_record("add_gelu", add_gelu_backward, out, 2, (tensor *[]){x, b});
    if (n) {
        ag_save(n, 0, x);
        ag_save(n, 1, b);
        n->recompute = add_gelu_recompute;
    }
    return out;
}

tensor *tensor_pow_scalar(tensor *x, double exponent) {
    tensor *out = float_unary("tensor_pow_scalar", UNARY_POW, x, exponent, 0);
    return unary_with_rule(out, x, "pow_scalar", pow_backward, x, UNARY_POW, exponent, 0);
}

tensor *tensor_clamp(tensor *x, double lo, double hi) {
    PETAL_CHECK(!(lo > hi), "tensor_clamp: lo %g > hi %g", lo, hi);
    tensor *out = float_unary("tensor_clamp", UNARY_CLAMP, x, lo, hi);
    return unary_with_rule(out, x, "clamp", clamp_backward, x, UNARY_CLAMP, lo, hi);
}
