#include "ops/op_table.h"

#include <math.h>

#include "ops/ops.h"
#include "tensor/error.h"
#include "tensor/rng.h"
#include "tensor/view.h"

// ---- argument shapes ----
#define NARGS(...)                       NARGS_(__VA_ARGS__, 6, 5, 4, 3, 2, 1, 0)
#define NARGS_(a, b, c, d, e, f, n, ...) n
#define SH(...)                          .ndim = NARGS(__VA_ARGS__), .shape = {__VA_ARGS__}
#define G(...)                                                                                     \
    { SH(__VA_ARGS__), .grad = true } // requires grad, N(0, 1)
#define GD(dom, ...)                                                                               \
    { SH(__VA_ARGS__), .domain = dom, .grad = true }
#define GL(lay, ...)                                                                               \
    { SH(__VA_ARGS__), .layout = lay, .grad = true }
#define C(dom, ...)                                                                                \
    { SH(__VA_ARGS__), .domain = dom } // constant (no grad)
#define IDX(hi, ...)                                                                               \
    { SH(__VA_ARGS__), .domain = DOMAIN_INDEX, .index_hi = hi }

// ---- case functions: a = arguments, c = the case (for its parameters) ----
#define FN(name, expr)                                                                             \
    static tensor *name(tensor **a, const op_case *c) {                                            \
        (void)a;                                                                                   \
        (void)c;                                                                                   \
        return expr;                                                                               \
    }
#define I0 ((int)c->iparam[0])
#define I1 ((int)c->iparam[1])
#define F0 (c->fparam[0])
#define F1 (c->fparam[1])

FN(f_add, tensor_add(a[0], a[1]))
FN(f_sub, tensor_sub(a[0], a[1]))
FN(f_mul, tensor_mul(a[0], a[1]))
FN(f_div, tensor_div(a[0], a[1]))
FN(f_eq, tensor_eq(a[0], a[1]))
FN(f_ne, tensor_ne(a[0], a[1]))
FN(f_lt, tensor_lt(a[0], a[1]))
FN(f_le, tensor_le(a[0], a[1]))
FN(f_gt, tensor_gt(a[0], a[1]))
FN(f_ge, tensor_ge(a[0], a[1]))
FN(f_where, tensor_where(a[0], a[1], a[2]))
FN(f_masked_fill, tensor_masked_fill(a[0], a[1], F0))
FN(f_add_scalar, tensor_add_scalar(a[0], F0))
FN(f_mul_scalar, tensor_mul_scalar(a[0], F0))
FN(f_div_scalar, tensor_div_scalar(a[0], F0))
FN(f_neg, tensor_neg(a[0]))
FN(f_exp, tensor_exp(a[0]))
FN(f_log, tensor_log(a[0]))
FN(f_sqrt, tensor_sqrt(a[0]))
FN(f_rsqrt, tensor_rsqrt(a[0]))
FN(f_abs, tensor_abs(a[0]))
FN(f_tanh, tensor_tanh(a[0]))
FN(f_sigmoid, tensor_sigmoid(a[0]))
FN(f_relu, tensor_relu(a[0]))
FN(f_gelu, tensor_gelu(a[0]))
FN(f_gelu_tanh, tensor_gelu_tanh(a[0]))
FN(f_add_gelu, tensor_add_gelu(a[0], a[1]))
FN(f_pow, tensor_pow_scalar(a[0], F0))
FN(f_clamp, tensor_clamp(a[0], F0, F1))
FN(f_sum, tensor_sum(a[0], I0, I1))
FN(f_mean, tensor_mean(a[0], I0, I1))
FN(f_max, tensor_max(a[0], I0, I1))
FN(f_min, tensor_min(a[0], I0, I1))
FN(f_logsumexp, tensor_logsumexp(a[0], I0, I1))
FN(f_argmax, tensor_argmax(a[0], I0, I1))
FN(f_argmin, tensor_argmin(a[0], I0, I1))
FN(f_sum_all, tensor_sum_all(a[0]))
FN(f_mean_all, tensor_mean_all(a[0]))
FN(f_topk, tensor_topk(a[0], c->iparam[0], c->iparam[1], NULL))
FN(f_matmul, tensor_matmul(a[0], a[1]))
FN(f_linear, tensor_linear(a[0], a[1], c->n_args > 2 ? a[2] : NULL))
FN(f_linear_lowrank, tensor_linear_lowrank(a[0], a[1], NULL, 1, &a[2], &a[3]))
FN(f_add_lowrank, tensor_add_lowrank(a[0], 1, &a[1], &a[2]))
FN(f_reshape, tensor_reshape(a[0], (int)c->iparam[0], &c->iparam[1]))
FN(f_flatten, tensor_flatten(a[0], I0, I1))
FN(f_permute, tensor_permute(a[0], (const int[]){I0, I1, (int)c->iparam[2]}))
FN(f_transpose, tensor_transpose(a[0], I0, I1))
FN(f_slice, tensor_slice(a[0], I0, c->iparam[1], c->iparam[2], c->iparam[3]))
FN(f_select, tensor_select(a[0], I0, c->iparam[1]))
FN(f_expand, tensor_expand(a[0], SHAPE(2, 3, 4)))
FN(f_squeeze, tensor_squeeze(a[0], I0))
FN(f_unsqueeze, tensor_unsqueeze(a[0], I0))
FN(f_contiguous, tensor_contiguous(a[0]))
FN(f_concat, tensor_concat(a, c->n_args, I0))
FN(f_stack, tensor_stack(a, c->n_args, I0))
FN(f_index_select, tensor_index_select(a[0], I0, a[1]))
FN(f_gather, tensor_gather(a[0], I0, a[1]))
FN(f_embedding, tensor_embedding(a[0], a[1]))
FN(f_softmax, tensor_softmax(a[0], I0))
FN(f_log_softmax, tensor_log_softmax(a[0], I0))
FN(f_layer_norm,
   tensor_layer_norm(a[0], c->n_args > 1 ? a[1] : NULL, c->n_args > 2 ? a[2] : NULL, F0))
FN(f_normalize, tensor_normalize(a[0], I0, F0))
// Attention: iparam = {causal, dropout seed (0: no dropout)}, fparam = {scale, dropout p}.
static tensor *f_attention(tensor **a, const op_case *c) {
    rng_generator g = {(uint64_t)c->iparam[1], 0};
    attention_options o = {c->n_args > 3 ? a[3] : NULL, c->iparam[0], F0, F1, F1 > 0, &g};
    return tensor_attention(a[0], a[1], a[2], &o);
}

// Over a packed qkv (B, T, 3 H D): iparam = {causal, dropout seed, heads}, fparam as attention's.
static tensor *f_attention_packed(tensor **a, const op_case *c) {
    rng_generator g = {(uint64_t)c->iparam[1], 0};
    attention_options o = {c->n_args > 1 ? a[1] : NULL, c->iparam[0], F0, F1, F1 > 0, &g};
    return tensor_attention_packed(a[0], c->iparam[2], &o);
}

// Dropout with its own generator, so every evaluation draws the same mask.
static tensor *f_dropout(tensor **a, const op_case *c) {
    rng_generator g = {(uint64_t)c->iparam[0], 0};
    return tensor_dropout(a[0], F0, c->iparam[1], &g);
}

// Cross-entropy: iparam = {reduction, ignore_index}, fparam = {label_smoothing}. With the default
// ignore_index (-100), targets equal to 0 are rewritten to -100, so every case ignores some rows.
static tensor *f_cross_entropy(tensor **a, const op_case *c) {
    cross_entropy_options o = {c->iparam[1], F0, (loss_reduction)c->iparam[0]};
    if (o.ignore_index != -100) return tensor_cross_entropy(a[0], a[1], &o);
    tensor *zero = tensor_zeros_on(a[1]->device, PETAL_I64, 0, NULL); // on the targets' device
    tensor *ignored = tensor_eq(a[1], zero);
    tensor *target = tensor_masked_fill(a[1], ignored, -100);
    tensor *loss = tensor_cross_entropy(a[0], target, &o);
    tensor_free(zero);
    tensor_free(ignored);
    tensor_free(target);
    return loss;
}

#define P(...)  .iparam = {__VA_ARGS__}
#define PF(...) .fparam = {__VA_ARGS__}

// clang-format off: one row per case reads better than clang-format's one field per line.
const op_case op_cases[] = {
    // binary, broadcasting
    {"add/same", "add", 2, {G(3, 4), G(3, 4)}, .fn = f_add},
    {"add/broadcast", "add", 2, {G(2, 3, 4), G(3, 1)}, .fn = f_add},
    {"add/noncontiguous",
     "add",
     2,
     {GL(LAYOUT_TRANSPOSED, 3, 4), GL(LAYOUT_STRIDED, 3, 4)},
     .fn = f_add},
    {"sub/broadcast", "sub", 2, {G(3, 4), G(4)}, .fn = f_sub},
    {"mul/broadcast", "mul", 2, {G(2, 1, 4), G(3, 1)}, .fn = f_mul},
    {"mul/one-frozen", "mul", 2, {G(3, 4), C(DOMAIN_NORMAL, 3, 4)}, .fn = f_mul},
    {"mul/noncontiguous",
     "mul",
     2,
     {GL(LAYOUT_STRIDED, 2, 3), GL(LAYOUT_TRANSPOSED, 2, 3)},
     .fn = f_mul},
    {"div/broadcast", "div", 2, {G(3, 4), GD(DOMAIN_POSITIVE, 4)}, .fn = f_div},
    {"eq", "eq", 2, {C(DOMAIN_SMALL_INT, 3, 4), C(DOMAIN_SMALL_INT, 4)}, .fn = f_eq},
    {"ne", "ne", 2, {C(DOMAIN_SMALL_INT, 3, 4), C(DOMAIN_SMALL_INT, 3, 1)}, .fn = f_ne},
    {"lt", "lt", 2, {C(DOMAIN_SMALL_INT, 3, 4), C(DOMAIN_SMALL_INT, 4)}, .fn = f_lt},
    {"le", "le", 2, {C(DOMAIN_SMALL_INT, 3, 4), C(DOMAIN_SMALL_INT, 4)}, .fn = f_le},
    {"gt", "gt", 2, {C(DOMAIN_SMALL_INT, 3, 4), C(DOMAIN_SMALL_INT, 4)}, .fn = f_gt},
    {"ge", "ge", 2, {C(DOMAIN_SMALL_INT, 3, 4), C(DOMAIN_SMALL_INT, 4)}, .fn = f_ge},
    {"where/broadcast", "where", 3, {C(DOMAIN_SMALL_INT, 3, 1), G(3, 4), G(4)}, .fn = f_where},
    {"masked_fill",
     "masked_fill",
     2,
     {G(3, 4), C(DOMAIN_SMALL_INT, 4)},
     PF(-7.5),
     .fn = f_masked_fill},
    // unary
    {"add_scalar", "add_scalar", 1, {G(3, 4)}, PF(1.5), .fn = f_add_scalar},
    {"mul_scalar", "mul_scalar", 1, {GL(LAYOUT_TRANSPOSED, 3, 4)}, PF(-2.5), .fn = f_mul_scalar},
    {"div_scalar", "div_scalar", 1, {G(3, 4)}, PF(3.0), .fn = f_div_scalar},
    {"neg", "neg", 1, {G(3, 4)}, .fn = f_neg},
    {"exp", "exp", 1, {GL(LAYOUT_STRIDED, 3, 4)}, .fn = f_exp},
    {"log", "log", 1, {GD(DOMAIN_POSITIVE, 3, 4)}, .fn = f_log},
    {"sqrt", "sqrt", 1, {GD(DOMAIN_POSITIVE, 3, 4)}, .fn = f_sqrt},
    {"rsqrt", "rsqrt", 1, {GD(DOMAIN_POSITIVE, 3, 4)}, .fn = f_rsqrt},
    {"abs", "abs", 1, {GD(DOMAIN_NONZERO, 3, 4)}, .fn = f_abs},
    {"tanh", "tanh", 1, {G(3, 4)}, .fn = f_tanh},
    {"sigmoid", "sigmoid", 1, {G(3, 4)}, .fn = f_sigmoid},
    {"relu", "relu", 1, {GD(DOMAIN_NONZERO, 3, 4)}, .fn = f_relu},
    {"gelu", "gelu", 1, {G(3, 4)}, .fn = f_gelu},
    {"gelu/transposed", "gelu", 1, {GL(LAYOUT_TRANSPOSED, 4, 3)}, .fn = f_gelu},
    {"gelu_tanh", "gelu_tanh", 1, {G(3, 4)}, .fn = f_gelu_tanh},
    {"add_gelu/bias", "add_gelu", 2, {G(2, 3, 4), G(4)}, .fn = f_add_gelu},
    {"add_gelu/transposed",
     "add_gelu",
     2,
     {GL(LAYOUT_TRANSPOSED, 4, 3), G(4, 3)},
     .fn = f_add_gelu},
    {"pow/fractional", "pow", 1, {GD(DOMAIN_POSITIVE, 3, 4)}, PF(2.5), .fn = f_pow},
    {"pow/integer", "pow", 1, {G(3, 4)}, PF(3.0), .fn = f_pow},
    {"clamp", "clamp", 1, {G(3, 4)}, PF(-0.5, 0.5), .fn = f_clamp},
    {"clamp/one-sided", "clamp", 1, {G(3, 4)}, PF(-INFINITY, 0.25), .fn = f_clamp},
    // reductions
    {"sum/dim1", "sum", 1, {G(3, 4, 5)}, P(1, 0), .fn = f_sum},
    {"sum/last-keepdim", "sum", 1, {G(3, 4, 5)}, P(-1, 1), .fn = f_sum},
    {"sum/noncontiguous", "sum", 1, {GL(LAYOUT_TRANSPOSED, 3, 4)}, P(0, 0), .fn = f_sum},
    {"mean/dim0", "mean", 1, {G(3, 4, 5)}, P(0, 0), .fn = f_mean},
    {"max/dim1", "max", 1, {GD(DOMAIN_DISTINCT, 3, 4, 5)}, P(1, 0), .fn = f_max},
    {"min/dim2-keepdim", "min", 1, {GD(DOMAIN_DISTINCT, 3, 4, 5)}, P(2, 1), .fn = f_min},
    {"logsumexp/dim1", "logsumexp", 1, {G(3, 4, 5)}, P(1, 0), .fn = f_logsumexp},
    {"argmax/dim1", "argmax", 1, {C(DOMAIN_DISTINCT, 3, 4, 5)}, P(1, 0), .fn = f_argmax},
    {"argmin/dim0", "argmin", 1, {C(DOMAIN_DISTINCT, 3, 4)}, P(0, 1), .fn = f_argmin},
    {"sum_all", "sum_all", 1, {GL(LAYOUT_STRIDED, 3, 4)}, .fn = f_sum_all},
    {"mean_all", "mean_all", 1, {G(2, 3, 4)}, .fn = f_mean_all},
    {"topk/largest", "topk", 1, {GD(DOMAIN_DISTINCT, 3, 7)}, P(3, 1), .fn = f_topk},
    {"topk/smallest", "topk", 1, {GD(DOMAIN_DISTINCT, 2, 5)}, P(2, 0), .fn = f_topk},
    // linear algebra
    {"matmul/2d", "matmul", 2, {G(3, 4), G(4, 5)}, .fn = f_matmul},
    {"matmul/batched", "matmul", 2, {G(2, 3, 4), G(2, 4, 5)}, .fn = f_matmul},
    {"matmul/broadcast", "matmul", 2, {G(2, 1, 3, 4), G(3, 4, 2)}, .fn = f_matmul},
    {"matmul/shared-matrix", "matmul", 2, {G(2, 3, 4), G(4, 5)}, .fn = f_matmul},
    {"matmul/transposed",
     "matmul",
     2,
     {GL(LAYOUT_TRANSPOSED, 2, 3, 4), GL(LAYOUT_TRANSPOSED, 2, 4, 3)},
     .fn = f_matmul},
    {"matmul/strided",
     "matmul",
     2,
     {GL(LAYOUT_STRIDED, 3, 4), GL(LAYOUT_HEADS, 2, 4, 2)},
     .fn = f_matmul},
    {"linear/bias", "linear", 3, {G(2, 3, 4), G(5, 4), G(5)}, .fn = f_linear},
    {"linear/no-bias", "linear", 2, {G(3, 4), GL(LAYOUT_TRANSPOSED, 5, 4)}, .fn = f_linear},
    {"linear/frozen-weight",
     "linear",
     3,
     {G(2, 3, 4), C(DOMAIN_NORMAL, 5, 4), C(DOMAIN_NORMAL, 5)},
     .fn = f_linear},
    {"linear/frozen-input", "linear", 3, {C(DOMAIN_NORMAL, 3, 4), G(2, 4), G(2)}, .fn = f_linear},
    {"linear/vector", "linear", 3, {G(4), G(3, 4), G(3)}, .fn = f_linear},
    // a fused-qkv-like output: 6 = 2 parts x 3, each part reading its own row of z
    {"linear_lowrank/parts",
     "linear_lowrank",
     4,
     {G(2, 3, 4), C(DOMAIN_NORMAL, 6, 4), G(2, 3, 2, 2), G(3, 2)},
     .fn = f_linear_lowrank},
    {"linear_lowrank/one-part",
     "linear_lowrank",
     4,
     {G(3, 4), G(5, 4), G(3, 1, 2), GL(LAYOUT_TRANSPOSED, 5, 2)},
     .fn = f_linear_lowrank},
    {"add_lowrank/parts",
     "add_lowrank",
     3,
     {G(2, 3, 6), G(2, 3, 2, 2), G(3, 2)},
     .fn = f_add_lowrank},
    {"add_lowrank/transposed-base",
     "add_lowrank",
     3,
     {GL(LAYOUT_TRANSPOSED, 3, 5), G(3, 1, 2), GL(LAYOUT_TRANSPOSED, 5, 2)},
     .fn = f_add_lowrank},
    // views
    {"reshape", "reshape", 1, {G(3, 4)}, P(2, 2, -1), .fn = f_reshape},
    {"reshape/copy", "reshape", 1, {GL(LAYOUT_TRANSPOSED, 3, 4)}, P(1, 12), .fn = f_reshape},
    {"flatten", "flatten", 1, {G(2, 3, 4)}, P(1, 2), .fn = f_flatten},
    {"permute", "permute", 1, {G(2, 3, 4)}, P(2, 0, 1), .fn = f_permute},
    {"transpose", "transpose", 1, {G(2, 3, 4)}, P(0, 2), .fn = f_transpose},
    {"slice/step", "slice", 1, {G(3, 7)}, P(1, 1, 6, 2), .fn = f_slice},
    {"slice/negative", "slice", 1, {G(5, 2)}, P(0, -3, -1, 1), .fn = f_slice},
    {"select", "select", 1, {G(3, 4, 2)}, P(1, -2), .fn = f_select},
    {"expand", "expand", 1, {G(3, 1)}, .fn = f_expand},
    {"squeeze", "squeeze", 1, {G(3, 1, 4)}, P(1), .fn = f_squeeze},
    {"unsqueeze", "unsqueeze", 1, {G(3, 4)}, P(-1), .fn = f_unsqueeze},
    {"contiguous", "contiguous", 1, {GL(LAYOUT_TRANSPOSED, 3, 4)}, .fn = f_contiguous},
    // joining and indexing
    {"concat",
     "concat",
     3,
     {G(2, 1, 3), G(2, 2, 3), GL(LAYOUT_STRIDED, 2, 3, 3)},
     P(1),
     .fn = f_concat},
    {"stack", "stack", 2, {G(2, 3), G(2, 3)}, P(0), .fn = f_stack},
    {"index_select", "index_select", 2, {G(4, 3), IDX(4, 6)}, P(0), .fn = f_index_select},
    {"index_select/dim1", "index_select", 2, {G(2, 5, 3), IDX(5, 4)}, P(1), .fn = f_index_select},
    {"gather", "gather", 2, {G(3, 4), IDX(4, 3, 5)}, P(1), .fn = f_gather},
    {"embedding", "embedding", 2, {G(6, 3), IDX(6, 2, 4)}, .fn = f_embedding},
    // fused primitives
    {"softmax/last", "softmax", 1, {G(3, 5)}, P(-1), .fn = f_softmax},
    {"softmax/dim0", "softmax", 1, {GL(LAYOUT_TRANSPOSED, 4, 3)}, P(0), .fn = f_softmax},
    {"log_softmax", "log_softmax", 1, {G(2, 3, 4)}, P(1), .fn = f_log_softmax},
    {"layer_norm/affine", "layer_norm", 3, {G(2, 3, 6), G(6), G(6)}, PF(1e-5), .fn = f_layer_norm},
    {"layer_norm/plain", "layer_norm", 1, {GL(LAYOUT_STRIDED, 3, 5)}, PF(1e-6), .fn = f_layer_norm},
    {"layer_norm/frozen-affine",
     "layer_norm",
     3,
     {G(4, 5), C(DOMAIN_NORMAL, 5), C(DOMAIN_NORMAL, 5)},
     PF(1e-12),
     .fn = f_layer_norm},
    {"normalize", "normalize", 1, {G(3, 4)}, P(-1), PF(1e-12), .fn = f_normalize},
    {"normalize/dim0", "normalize", 1, {G(3, 4)}, P(0), PF(1e-12), .fn = f_normalize},
    {"dropout/train", "dropout", 1, {G(4, 5)}, P(7, 1), PF(0.3), .fn = f_dropout},
    {"dropout/eval", "dropout", 1, {G(4, 5)}, P(7, 0), PF(0.3), .fn = f_dropout},
    {"cross_entropy/mean",
     "cross_entropy",
     2,
     {G(4, 5), IDX(5, 4)},
     P(REDUCTION_MEAN, -100),
     .fn = f_cross_entropy},
    {"cross_entropy/sum-smoothing",
     "cross_entropy",
     2,
     {G(4, 5), IDX(5, 4)},
     P(REDUCTION_SUM, -100),
     PF(0.1),
     .fn = f_cross_entropy},
    {"cross_entropy/none",
     "cross_entropy",
     2,
     {G(3, 6), IDX(6, 3)},
     P(REDUCTION_NONE, -100),
     PF(0.2),
     .fn = f_cross_entropy},
    {"cross_entropy/ignore",
     "cross_entropy",
     2,
     {G(6, 3), IDX(3, 6)},
     P(REDUCTION_MEAN, 0),
     PF(0.1),
     .fn = f_cross_entropy},
    {"attention/plain",
     "attention",
     3,
     {G(1, 2, 3, 4), G(1, 2, 5, 4), G(1, 2, 5, 3)},
     P(0),
     .fn = f_attention},
    {"attention/mask",
     "attention",
     4,
     {G(2, 2, 3, 4), G(2, 2, 5, 4), G(2, 2, 5, 3), C(DOMAIN_SMALL_INT, 2, 1, 1, 5)},
     P(0),
     PF(0.3),
     .fn = f_attention},
    {"attention/mask-grad",
     "attention",
     4,
     {G(1, 2, 3, 4), G(1, 2, 3, 4), G(1, 2, 3, 2), G(3, 3)},
     P(0),
     .fn = f_attention},
    {"attention/causal",
     "attention",
     3,
     {GL(LAYOUT_HEADS, 2, 2, 4, 3), GL(LAYOUT_HEADS, 2, 2, 4, 3), G(2, 2, 4, 3)},
     P(1),
     .fn = f_attention},
    {"attention/causal-cached",
     "attention",
     3,
     {G(1, 2, 2, 3), G(1, 2, 5, 3), G(1, 2, 5, 3)},
     P(1),
     .fn = f_attention},
    {"attention/dropout",
     "attention",
     4,
     {G(1, 2, 3, 4), G(1, 2, 5, 4), G(1, 2, 5, 3), C(DOMAIN_SMALL_INT, 1, 1, 1, 5)},
     P(0, 11),
     PF(0, 0.25),
     .fn = f_attention},
    {"attention_packed/mask",
     "attention_packed",
     2,
     {G(2, 4, 12), C(DOMAIN_SMALL_INT, 2, 1, 1, 4)},
     P(0, 0, 2),
     .fn = f_attention_packed},
    {"attention_packed/causal-dropout",
     "attention_packed",
     1,
     {G(1, 5, 18)},
     P(1, 11, 3),
     PF(0, 0.25),
     .fn = f_attention_packed},
};
// clang-format on
const int n_op_cases = (int)(sizeof op_cases / sizeof op_cases[0]);

bool op_case_differentiable(const op_case *c) {
    for (int i = 0; i < c->n_args; i++)
        if (c->args[i].grad) return true;
    return false;
}

// Fills a contiguous f64 buffer with values of the domain; element i depends on (seed, i).
static void fill_domain(tensor *t, const op_arg *a, uint64_t seed) {
    rng_generator g = {seed, 0};
    int64_t n = tensor_numel(t);
    double *p = tensor_data_f64(t);
    tensor_uniform_(t, 0.0, 1.0, &g);
    for (int64_t i = 0; i < n; i++) {
        double u = p[i];
        switch (a->domain) {
        case DOMAIN_NORMAL:
            break;
        case DOMAIN_POSITIVE:
            p[i] = 0.5 + 1.5 * u;
            break;
        case DOMAIN_NONZERO:
            p[i] = (u < 0.5 ? -1 : 1) * (0.1 + 1.9 * fabs(2 * u - 1));
            break;
        case DOMAIN_DISTINCT:
            p[i] = (double)i * 0.37 - (double)n * 0.18;
            break;
        case DOMAIN_SMALL_INT:
            p[i] = floor(3 * u) - 1;
            break;
        case DOMAIN_INDEX:
            p[i] = floor(u * (double)a->index_hi);
            break;
        }
    }
    if (a->domain == DOMAIN_NORMAL) tensor_normal_(t, 0.0, 1.0, &g);
    if (a->domain == DOMAIN_DISTINCT) { // shuffle the grid (Fisher-Yates with the same stream)
        tensor *u = tensor_empty(PETAL_F64, SHAPE(n));
        tensor_uniform_(u, 0.0, 1.0, &g);
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)(tensor_data_f64(u)[i] * (double)(i + 1));
            double tmp = p[i];
            p[i] = p[j];
            p[j] = tmp;
        }
        tensor_free(u);
    }
}

// The view of an allocated buffer (shape `mem`) that gives the argument its layout.
static tensor *layout_view(tensor *buf, op_layout layout) {
    switch (layout) {
    case LAYOUT_TRANSPOSED:
        return view_transpose(buf, -1, -2);
    case LAYOUT_HEADS:
        return view_transpose(buf, 1, 2);
    case LAYOUT_STRIDED:
        return view_slice(buf, -1, 0, buf->shape[buf->ndim - 1], 2);
    case LAYOUT_CONTIGUOUS:
        break;
    }
    return tensor_detach(buf);
}

tensor *op_case_arg(const op_case *c, int i, petal_dtype dtype, uint64_t seed) {
    const op_arg *a = &c->args[i];
    int64_t mem[PETAL_MAX_DIMS];
    int nd = a->ndim;
    for (int d = 0; d < nd; d++) mem[d] = a->shape[d];
    PETAL_CHECK(a->layout == LAYOUT_CONTIGUOUS || nd >= 2 || a->layout == LAYOUT_STRIDED,
                "op case %s: layout needs 2 dims", c->name);
    if (a->layout == LAYOUT_TRANSPOSED) {
        mem[nd - 1] = a->shape[nd - 2];
        mem[nd - 2] = a->shape[nd - 1];
    }
    if (a->layout == LAYOUT_HEADS) {
        mem[1] = a->shape[2];
        mem[2] = a->shape[1];
    }
    if (a->layout == LAYOUT_STRIDED) mem[nd - 1] = 2 * a->shape[nd - 1];
    tensor *buf = tensor_empty(PETAL_F64, nd, mem);
    fill_domain(buf, a, seed);
    petal_dtype want = a->domain == DOMAIN_INDEX ? PETAL_I64 : dtype;
    if (want != PETAL_F64) {
        tensor *converted = tensor_cast(buf, want);
        tensor_free(buf);
        buf = converted;
    }
    tensor *view = layout_view(buf, a->layout);
    tensor_free(buf);
    if (a->grad && a->domain != DOMAIN_INDEX) tensor_set_requires_grad(view, true);
    return view;
}
