// tensor/precision.h: the rounding of GEMM inputs to bf16 and TF32 (edge cases and a sweep against
// a reference that picks the nearest value in doubles), the CPU emulation of bf16 / TF32 GEMMs
// (equal bit for bit to an f32 GEMM of rounded operands; errors of the size rounding predicts),
// and the autocast rules: f64, softmax and LayerNorm unaffected, backward in the forward's
// precision wherever it is called (activation checkpointing's recompute included), the mode per
// thread.
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "petal.h"
#include "tests/test_util.h"

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float round_to(petal_precision p, float x) {
    return p == PETAL_PRECISION_BF16 ? f32_round_bf16(x) : f32_round_tf32(x);
}

// Mantissa bits each mode keeps (of f32's 23).
static int kept_bits(petal_precision p) {
    return p == PETAL_PRECISION_BF16 ? 7 : 10;
}

// ---- (a) the rounding functions ----

typedef struct {
    uint32_t in, bf16, tf32; // f32 bit patterns
} round_case;

static const round_case round_cases[] = {
    {0x3f800000, 0x3f800000, 0x3f800000}, // 1
    {0x3f808000, 0x3f800000, 0x3f808000}, // 1 + 2^-8: bf16 tie, to even (down)
    {0x3f818000, 0x3f820000, 0x3f818000}, // 1 + 2^-7 + 2^-8: bf16 tie, to even (up)
    {0x3f808001, 0x3f810000, 0x3f808000}, // just above the bf16 tie
    {0x3f801000, 0x3f800000, 0x3f800000}, // 1 + 2^-11: TF32 tie, to even (down)
    {0x3f803000, 0x3f800000, 0x3f804000}, // 1 + 2^-10 + 2^-11: TF32 tie, to even (up)
    {0x3f801001, 0x3f800000, 0x3f802000}, // just above the TF32 tie
    {0xbf808000, 0xbf800000, 0xbf808000}, // -(1 + 2^-8): ties are symmetric
    {0xbf818000, 0xbf820000, 0xbf818000}, {0x7f800000, 0x7f800000, 0x7f800000}, // inf
    {0xff800000, 0xff800000, 0xff800000},                                       // -inf
    {0x7f7fffff, 0x7f800000, 0x7f800000}, // FLT_MAX overflows both
    {0x7f7f0000, 0x7f7f0000, 0x7f7f0000}, // the largest bf16
    {0x7f7f8000, 0x7f800000, 0x7f7f8000}, // its tie with 2^128: to even, inf
    {0x7f7fe000, 0x7f800000, 0x7f7fe000}, // the largest TF32
    {0x7f7ff000, 0x7f800000, 0x7f800000}, // its tie with 2^128
    {0x00000001, 0x00000000, 0x00000000}, // the smallest subnormal
    {0x80000001, 0x80000000, 0x80000000}, // ... negative: -0
    {0x00008000, 0x00000000, 0x00008000}, // bf16 subnormal tie, to even (down)
    {0x00018000, 0x00020000, 0x00018000}, // bf16 subnormal tie, to even (up)
    {0x00010000, 0x00010000, 0x00010000}, // a bf16 subnormal
    {0x00001000, 0x00000000, 0x00000000}, // TF32 subnormal tie, to even (down)
    {0x00003000, 0x00000000, 0x00004000}, // TF32 subnormal tie, to even (up)
    {0x007fffff, 0x00800000, 0x00800000}, // the largest subnormal rounds to the smallest normal
    {0x80000000, 0x80000000, 0x80000000}, // -0
    {0x7fc00000, 0x7fc00000, 0x7fc00000}, // quiet NaN
    {0x7f800001, 0x7fc00000, 0x7fc00000}, // a NaN whose payload a plain rounding would drop: inf
    {0xff800001, 0xffc00000, 0xffc00000},
};

START_TEST(test_rounding_edge_cases) {
    for (size_t i = 0; i < sizeof round_cases / sizeof round_cases[0]; i++) {
        const round_case *c = &round_cases[i];
        uint32_t b = f32_bits(f32_round_bf16(bits_f32(c->in)));
        uint32_t t = f32_bits(f32_round_tf32(bits_f32(c->in)));
        ck_assert_msg(b == c->bf16, "bf16(0x%08x) = 0x%08x, want 0x%08x", c->in, b, c->bf16);
        ck_assert_msg(t == c->tf32, "tf32(0x%08x) = 0x%08x, want 0x%08x", c->in, t, c->tf32);
        ck_assert_uint_eq(b, f32_bits(bf16_to_f32(f32_to_bf16(bits_f32(c->in)))));
    }
}
END_TEST

// The nearest value with `kept` mantissa bits, ties to even, found in doubles: the two candidates
// around x (truncated, and one unit of the kept bits further from zero, which may be 2^128) and
// their distances, exact in double.
static float nearest_reference(float x, int kept) {
    uint32_t u = f32_bits(x), drop = 23 - (uint32_t)kept, unit = 1u << drop;
    uint32_t lo = u & ~(unit - 1u);
    int exp = (int)((u >> 23) & 0xffu);
    double ulp = ldexp(1.0, (exp ? exp - 127 : -126) - kept);
    double vlo = bits_f32(lo), vhi = fabs(vlo) + ulp, ax = fabs((double)x);
    double dlo = ax - fabs(vlo), dhi = vhi - ax;
    bool up = dhi < dlo || (dhi == dlo && ((lo >> drop) & 1u));
    if (!up) return bits_f32(lo);
    if (vhi >= 0x1p128) return x < 0 ? -INFINITY : INFINITY;
    return bits_f32(lo + unit);
}

// Every finite f32 of a pseudo-random sweep over all exponents rounds as the reference does; the
// worst error, in units of the kept precision, is at most half a unit.
START_TEST(test_rounding_sweep) {
    for (petal_precision p = PETAL_PRECISION_TF32; p <= PETAL_PRECISION_BF16; p++) {
        uint64_t state = 0x9e3779b97f4a7c15ull;
        double worst = 0;
        int64_t checked = 0;
        for (int i = 0; i < 2000000; i++) {
            state ^= state << 13, state ^= state >> 7, state ^= state << 17;
            float x = bits_f32((uint32_t)(state >> 17));
            if (!isfinite(x)) continue;
            float got = round_to(p, x), want = nearest_reference(x, kept_bits(p));
            if (p == PETAL_PRECISION_BF16) // the GPU's rounding (bf16 copies of the operands)
                ck_assert_uint_eq(f32_bits(got), f32_bits(bf16_to_f32(f32_to_bf16(x))));
            ck_assert_msg(f32_bits(got) == f32_bits(want), "%s(%a) = %a, want %a",
                          precision_name(p), (double)x, (double)got, (double)want);
            checked++;
            if (!isfinite(got)) continue;
            int exp = (int)((f32_bits(x) >> 23) & 0xffu);
            double unit = ldexp(1.0, (exp ? exp - 127 : -126) - kept_bits(p));
            double err = fabs((double)got - (double)x) / unit;
            if (err > worst) worst = err;
        }
        printf("%s rounding: %lld values, worst error %.4f units of the last kept bit\n",
               precision_name(p), (long long)checked, worst);
        ck_assert_msg(worst <= 0.5, "%s: worst error %g units", precision_name(p), worst);
        ck_assert(worst > 0.49); // the sweep reached values near ties
    }
}
END_TEST

START_TEST(test_names_and_parse) {
    petal_precision p;
    for (int i = 0; i < PETAL_PRECISION_COUNT; i++) {
        ck_assert(precision_parse(precision_name((petal_precision)i), &p));
        ck_assert_int_eq(p, i);
    }
    ck_assert_str_eq(precision_name(PETAL_PRECISION_BF16), "bf16");
    ck_assert(!precision_parse("fp16", &p));
    ck_assert(!precision_parse("BF16", &p));
    ck_assert_int_eq(precision_get(), PETAL_PRECISION_F32);
    ck_assert_int_eq(precision_set(PETAL_PRECISION_TF32), PETAL_PRECISION_F32);
    ck_assert_int_eq(precision_set(PETAL_PRECISION_F32), PETAL_PRECISION_TF32);
}
END_TEST

static void set_bad_precision(void) {
    precision_set((petal_precision)7);
}

START_TEST(test_bad_precision_refused) {
    ck_assert(aborts_with(set_bad_precision, "precision_set: 7 is not a precision"));
}
END_TEST

// ---- (b) the CPU emulation: bit for bit an f32 GEMM of rounded operands ----

static tensor *uniform(int ndim, const int64_t *shape) {
    tensor *t = tensor_empty(PETAL_F32, ndim, shape);
    tensor_uniform_(t, -1.0, 1.0, NULL);
    return t;
}

// A contiguous copy of t with every element rounded as mode p rounds GEMM inputs.
static tensor *rounded(const tensor *t, petal_precision p) {
    tensor *r = tensor_clone_data(t);
    float *d = tensor_data_f32(r);
    for (int64_t i = 0; i < tensor_numel(r); i++) d[i] = round_to(p, d[i]);
    return r;
}

static tensor *matmul_in(petal_precision p, tensor *a, tensor *b) {
    petal_precision prev = precision_set(p);
    tensor *c = tensor_matmul(a, b);
    precision_set(prev);
    return c;
}

static bool bitwise_equal(const char *what, const tensor *got, const tensor *want) {
    return tensors_close(what, got, want, 0.0, 0.0);
}

// Whether two tensors of one shape differ somewhere (quietly: a difference is what is expected).
static bool differ(const tensor *a, const tensor *b) {
    for (int64_t i = 0; i < tensor_numel(a); i++)
        if (tensor_get_flat(a, i) != tensor_get_flat(b, i)) return true;
    return false;
}

// Each case of a in mode p against the f32 product of its rounded operands: plain, both operands
// transposed views in a batch, broadcast batch dims, and an inner dimension of 16 (the narrow
// kernels of cpu_gemm_narrow.h).
START_TEST(test_emulation_is_rounded_sgemm) {
    rng_manual_seed(11);
    int mark = scope_begin();
    for (petal_precision p = PETAL_PRECISION_TF32; p <= PETAL_PRECISION_BF16; p++) {
        tensor *a = uniform(SHAPE(37, 53)), *b = uniform(SHAPE(53, 29));
        ck_assert(bitwise_equal("plain", matmul_in(p, a, b),
                                matmul_in(PETAL_PRECISION_F32, rounded(a, p), rounded(b, p))));
        ck_assert(differ(matmul_in(p, a, b), matmul_in(PETAL_PRECISION_F32, a, b)));

        tensor *at = uniform(SHAPE(3, 53, 37)), *bt = uniform(SHAPE(3, 29, 53));
        tensor *rat = rounded(at, p), *rbt = rounded(bt, p);
        ck_assert(
            bitwise_equal("batched, transposed",
                          matmul_in(p, tensor_transpose(at, 1, 2), tensor_transpose(bt, 1, 2)),
                          matmul_in(PETAL_PRECISION_F32, tensor_transpose(rat, 1, 2),
                                    tensor_transpose(rbt, 1, 2))));

        tensor *ab = uniform(SHAPE(2, 1, 20, 30)), *bb = uniform(SHAPE(3, 30, 10));
        ck_assert(bitwise_equal("broadcast", matmul_in(p, ab, bb),
                                matmul_in(PETAL_PRECISION_F32, rounded(ab, p), rounded(bb, p))));

        tensor *an = uniform(SHAPE(300, 16)), *bn = uniform(SHAPE(16, 200));
        ck_assert(bitwise_equal("rank 16", matmul_in(p, an, bn),
                                matmul_in(PETAL_PRECISION_F32, rounded(an, p), rounded(bn, p))));
    }
    scope_end(mark);
}
END_TEST

// Linear: the bias is added in f32, unrounded (the GEMM accumulates onto it).
START_TEST(test_linear_rounds_inputs_not_bias) {
    rng_manual_seed(12);
    int mark = scope_begin();
    tensor *x = uniform(SHAPE(4, 9, 48)), *w = uniform(SHAPE(40, 48)), *b = uniform(SHAPE(40));
    tensor_data_f32(b)[0] = 1.0f + 0x1p-20f; // not a bf16 value: rounding it would show
    petal_precision prev = precision_set(PETAL_PRECISION_BF16);
    tensor *y = tensor_linear(x, w, b);
    precision_set(PETAL_PRECISION_F32);
    tensor *want =
        tensor_linear(rounded(x, PETAL_PRECISION_BF16), rounded(w, PETAL_PRECISION_BF16), b);
    precision_set(prev);
    ck_assert(bitwise_equal("linear", y, want));
    scope_end(mark);
}
END_TEST

// Attention: both products take rounded inputs (q, k; then the probabilities and v); the scores,
// the mask and the softmax stay f32. The reference makes the same backend calls in f32 on
// operands rounded by hand.
START_TEST(test_attention_rounds_both_products) {
    rng_manual_seed(13);
    int mark = scope_begin();
    petal_precision p = PETAL_PRECISION_BF16;
    int64_t B = 2, H = 3, T = 5, S = 7, D = 16;
    tensor *q = uniform(SHAPE(B, H, T, D)), *k = uniform(SHAPE(B, H, S, D)),
           *v = uniform(SHAPE(B, H, S, D)), *mask = uniform(SHAPE(B, 1, 1, S));
    attention_options o = ATTENTION_DEFAULTS;
    o.mask = mask;
    petal_precision prev = precision_set(p);
    tensor *out = tensor_attention(q, k, v, &o);
    precision_set(PETAL_PRECISION_F32);
    tensor *probs = tensor_empty(PETAL_F32, SHAPE(B, H, T, S));
    tensor_copy_(probs, tensor_expand(mask, SHAPE(B, H, T, S)));
    backend_matmul(probs, rounded(q, p), view_transpose(rounded(k, p), -1, -2),
                   1.0 / sqrt((double)D), 1.0);
    backend_of(probs)->softmax(probs, probs, 3, false);
    tensor *want = view_transpose(tensor_empty(PETAL_F32, SHAPE(B, T, H, D)), 1, 2);
    backend_matmul(want, rounded(probs, p), rounded(v, p), 1.0, 0.0);
    precision_set(prev);
    ck_assert(bitwise_equal("attention", out, want));
    scope_end(mark);
}
END_TEST

// ---- (c) the size of the error ----

// c (f32, mode p) against the exact product of the unrounded a (m, k) and b (k, n), in f64. Each
// term a b becomes a b (1 + ra + rb) with |ra|, |rb| <= 2^-(kept + 1), so
//   |c - exact| <= (2^-kept + 2^-2(kept + 1) + k 2^-24) sum |a b|   (the last term: f32 sums);
// and for operands uniform in (-1, 1), whose mantissas are uniform in [1, 2), the error over
// sqrt(sum (a b)^2) has the rms 2^-kept / sqrt(14) (each r: 2^-kept / sqrt(12) / m, averaged with
// the term's weight m^2: E[1] / E[m^2] = 3 / 7; two operands). Rounding skipped gives ~2^-23, one
// operand rounded 0.71 of it, truncation instead of nearest or rounding to fewer bits twice it.
static void check_error_size(petal_precision p, int64_t m, int64_t k, int64_t n) {
    tensor *a = uniform(SHAPE(m, k)), *b = uniform(SHAPE(k, n));
    tensor *c = matmul_in(p, a, b);
    tensor *a64 = tensor_cast(a, PETAL_F64), *b64 = tensor_cast(b, PETAL_F64);
    tensor *exact = tensor_matmul(a64, b64);
    tensor *abs_sum = tensor_matmul(tensor_abs(a64), tensor_abs(b64));
    tensor *sq_sum = tensor_matmul(tensor_mul(a64, a64), tensor_mul(b64, b64));
    int kept = kept_bits(p);
    double bound = ldexp(1.0, -kept) + ldexp(1.0, -2 * (kept + 1)) + (double)k * 0x1p-24;
    double worst = 0, sum_sq = 0;
    for (int64_t i = 0; i < m * n; i++) {
        double err = tensor_get_flat(c, i) - tensor_get_flat(exact, i);
        double ratio = fabs(err) / (bound * tensor_get_flat(abs_sum, i));
        if (ratio > worst) worst = ratio;
        sum_sq += err * err / tensor_get_flat(sq_sum, i);
    }
    double rms = sqrt(sum_sq / (double)(m * n)), predicted = ldexp(1.0, -kept) / sqrt(14.0);
    printf("%s (%lld x %lld x %lld): worst |err| %.3f of the bound, rms %.4g = %.3f x predicted\n",
           precision_name(p), (long long)m, (long long)k, (long long)n, worst, rms,
           rms / predicted);
    ck_assert_msg(worst <= 1.0, "%s: error %g times the bound", precision_name(p), worst);
    ck_assert_msg(rms > 0.85 * predicted && rms < 1.15 * predicted,
                  "%s: rms error %g, predicted %g", precision_name(p), rms, predicted);
}

START_TEST(test_error_size) {
    rng_manual_seed(14);
    int mark = scope_begin();
    check_error_size(PETAL_PRECISION_BF16, 64, 256, 64);
    check_error_size(PETAL_PRECISION_TF32, 64, 256, 64);
    check_error_size(PETAL_PRECISION_BF16, 16, 2048, 16);
    scope_end(mark);
}
END_TEST

// ---- (d) autocast rules ----

START_TEST(test_f64_unaffected) {
    rng_manual_seed(15);
    int mark = scope_begin();
    tensor *a = tensor_cast(uniform(SHAPE(3, 17, 23)), PETAL_F64);
    tensor *b = tensor_cast(uniform(SHAPE(23, 19)), PETAL_F64);
    ck_assert(bitwise_equal("f64", matmul_in(PETAL_PRECISION_BF16, a, b),
                            matmul_in(PETAL_PRECISION_F32, a, b)));
    scope_end(mark);
}
END_TEST

// f64 gradients through a matmul, checked by finite differences inside a BF16 region.
static tensor *matmul_sum(tensor **in, const void *ctx) {
    (void)ctx;
    return tensor_sum_all(tensor_mul(tensor_matmul(in[0], in[1]), in[2]));
}

START_TEST(test_gradcheck_in_bf16_region) {
    rng_manual_seed(16);
    int mark = scope_begin();
    tensor *in[3] = {tensor_set_requires_grad(tensor_cast(uniform(SHAPE(4, 6)), PETAL_F64), true),
                     tensor_set_requires_grad(tensor_cast(uniform(SHAPE(6, 5)), PETAL_F64), true),
                     tensor_cast(uniform(SHAPE(4, 5)), PETAL_F64)};
    precision_set(PETAL_PRECISION_BF16);
    gradcheck_result r = gradcheck(matmul_sum, NULL, 3, in, NULL);
    precision_set(PETAL_PRECISION_F32);
    char line[256];
    gradcheck_describe(&r, line, sizeof line);
    ck_assert_msg(r.passed, "%s", line);
    scope_end(mark);
}
END_TEST

// Softmax and LayerNorm, forward and backward, are the same in every mode.
static void norm_and_softmax(petal_precision p, tensor *x, tensor *w, tensor *b, tensor *g0,
                             tensor **out) {
    petal_precision prev = precision_set(p);
    tensor *xr = tensor_set_requires_grad(tensor_clone_data(x), true);
    tensor *wr = tensor_set_requires_grad(tensor_clone_data(w), true);
    tensor *y = tensor_softmax(tensor_layer_norm(xr, wr, b, 1e-5), -1);
    autograd_backward(tensor_sum_all(tensor_mul(y, g0)), NULL, false);
    precision_set(prev);
    out[0] = y;
    out[1] = xr->grad;
    out[2] = wr->grad;
}

START_TEST(test_softmax_and_layer_norm_unaffected) {
    rng_manual_seed(17);
    int mark = scope_begin();
    tensor *x = uniform(SHAPE(6, 33)), *w = uniform(SHAPE(33)), *b = uniform(SHAPE(33)),
           *g0 = uniform(SHAPE(6, 33));
    tensor *f32[3], *bf16[3];
    norm_and_softmax(PETAL_PRECISION_F32, x, w, b, g0, f32);
    norm_and_softmax(PETAL_PRECISION_BF16, x, w, b, g0, bf16);
    ck_assert(bitwise_equal("y", bf16[0], f32[0]));
    ck_assert(bitwise_equal("dx", bf16[1], f32[1]));
    ck_assert(bitwise_equal("dw", bf16[2], f32[2]));
    scope_end(mark);
}
END_TEST

typedef struct {
    tensor *dx, *dw, *db;
} linear_grads;

// Gradients of sum(linear(x, w, b) * g0), the node made in mode `forward`, backward called in mode
// `backward`.
static linear_grads linear_backward_in(petal_precision forward, petal_precision backward, tensor *x,
                                       tensor *w, tensor *b, tensor *g0) {
    tensor *xr = tensor_set_requires_grad(tensor_clone_data(x), true);
    tensor *wr = tensor_set_requires_grad(tensor_clone_data(w), true);
    tensor *br = tensor_set_requires_grad(tensor_clone_data(b), true);
    petal_precision prev = precision_set(forward);
    tensor *loss = tensor_sum_all(tensor_mul(tensor_linear(xr, wr, br), g0));
    precision_set(backward);
    autograd_backward(loss, NULL, false);
    precision_set(prev);
    return (linear_grads){xr->grad, wr->grad, br->grad};
}

// The gradient of each GEMM follows the forward's precision: dx = g0 W, dW = g0^T x with g0 and
// the saved x, W rounded to bf16 when the node was made under BF16, even with backward called in
// F32; and in f32 when it was made under F32, even with backward called under BF16.
START_TEST(test_backward_follows_forward) {
    rng_manual_seed(18);
    int mark = scope_begin();
    petal_precision p = PETAL_PRECISION_BF16;
    tensor *x = uniform(SHAPE(5, 7, 24)), *w = uniform(SHAPE(16, 24)), *b = uniform(SHAPE(16)),
           *g0 = uniform(SHAPE(5, 7, 16));
    tensor *g_rows = tensor_reshape(g0, SHAPE(35, 16)), *x_rows = tensor_reshape(x, SHAPE(35, 24));
    tensor *want_dx = tensor_reshape(
        matmul_in(PETAL_PRECISION_F32, rounded(g_rows, p), rounded(w, p)), SHAPE(5, 7, 24));
    tensor *want_dw = matmul_in(PETAL_PRECISION_F32, tensor_transpose(rounded(g_rows, p), 0, 1),
                                rounded(x_rows, p));
    tensor *f32_dx = tensor_reshape(matmul_in(PETAL_PRECISION_F32, g_rows, w), SHAPE(5, 7, 24));
    tensor *f32_dw = matmul_in(PETAL_PRECISION_F32, tensor_transpose(g_rows, 0, 1), x_rows);
    tensor *db = tensor_sum(g_rows, 0, false);

    linear_grads in_bf16 = linear_backward_in(p, PETAL_PRECISION_F32, x, w, b, g0);
    ck_assert(bitwise_equal("dx of a bf16 node", in_bf16.dx, want_dx));
    ck_assert(bitwise_equal("dW of a bf16 node", in_bf16.dw, want_dw));
    ck_assert(bitwise_equal("db of a bf16 node", in_bf16.db, db));

    linear_grads in_f32 = linear_backward_in(PETAL_PRECISION_F32, p, x, w, b, g0);
    ck_assert(bitwise_equal("dx of an f32 node", in_f32.dx, f32_dx));
    ck_assert(bitwise_equal("dW of an f32 node", in_f32.dw, f32_dw));
    ck_assert(differ(in_bf16.dw, in_f32.dw));
    ck_assert_int_eq(precision_get(), PETAL_PRECISION_F32); // backward restored the caller's mode
    scope_end(mark);
}
END_TEST

// Gradients of a two-layer network (GEMMs forward and backward, GELU between) trained in bf16 are
// the f32 ones up to the size bf16 rounding gives (2^-8 relative per operand, partly averaging out
// over the sums): different (the rounding happened), but not by more than a few percent (no
// product went wrong). test_backward_follows_forward pins the rounding of each product exactly.
START_TEST(test_bf16_gradients_near_f32) {
    rng_manual_seed(19);
    int mark = scope_begin();
    tensor *x = uniform(SHAPE(32, 64)), *w1 = uniform(SHAPE(48, 64)), *w2 = uniform(SHAPE(8, 48));
    double rel[2];
    tensor *grads[2][2];
    for (int i = 0; i < 2; i++) {
        petal_precision prev = precision_set(i ? PETAL_PRECISION_BF16 : PETAL_PRECISION_F32);
        tensor *a = tensor_set_requires_grad(tensor_clone_data(w1), true);
        tensor *c = tensor_set_requires_grad(tensor_clone_data(w2), true);
        tensor *y = tensor_linear(tensor_gelu(tensor_linear(x, a, NULL)), c, NULL);
        autograd_backward(tensor_sum_all(tensor_mul(y, y)), NULL, false);
        precision_set(prev);
        grads[i][0] = a->grad;
        grads[i][1] = c->grad;
    }
    for (int j = 0; j < 2; j++) {
        tensor *d = tensor_sub(grads[1][j], grads[0][j]);
        rel[j] = sqrt(tensor_item(tensor_sum_all(tensor_mul(d, d))) /
                      tensor_item(tensor_sum_all(tensor_mul(grads[0][j], grads[0][j]))));
    }
    printf("bf16 vs f32 gradients: relative (Frobenius) difference dW1 %.3g, dW2 %.3g\n", rel[0],
           rel[1]);
    for (int j = 0; j < 2; j++) ck_assert(rel[j] > 1e-4 && rel[j] < 2e-2);
    scope_end(mark);
}
END_TEST

// A two-layer MLP for activation checkpointing (autograd/checkpoint.h).
typedef struct {
    tensor *w1, *w2;
} mlp_weights;

static tensor *mlp(const void *ctx, tensor *x, rng_generator *rng) {
    const mlp_weights *m = ctx;
    (void)rng;
    return tensor_linear(tensor_gelu(tensor_linear(x, m->w1, NULL)), m->w2, NULL);
}

// d(sum(mlp(x) * g0))/dx and /dW1 with the forward in `forward` (checkpointed or not) and backward
// called in f32.
static void mlp_grads(petal_precision forward, bool checkpointed, tensor *x, tensor *w1, tensor *w2,
                      tensor *g0, tensor **dx, tensor **dw1) {
    tensor *xr = tensor_set_requires_grad(tensor_clone_data(x), true);
    mlp_weights m = {tensor_set_requires_grad(tensor_clone_data(w1), true), w2};
    petal_precision prev = precision_set(forward);
    tensor *y = checkpointed ? ag_checkpoint(mlp, &m, sizeof m, xr, NULL) : mlp(&m, xr, NULL);
    tensor *loss = tensor_sum_all(tensor_mul(y, g0));
    precision_set(PETAL_PRECISION_F32);
    autograd_backward(loss, NULL, false);
    precision_set(prev);
    *dx = xr->grad;
    *dw1 = m.w1->grad;
}

// A checkpointed segment recomputes its forward inside its node's backward, so in the precision
// the forward had: its gradients are bit for bit the plain bf16 ones, with backward called in f32.
START_TEST(test_checkpoint_recomputes_in_forward_precision) {
    rng_manual_seed(21);
    int mark = scope_begin();
    tensor *x = uniform(SHAPE(12, 40)), *w1 = uniform(SHAPE(56, 40)), *w2 = uniform(SHAPE(24, 56)),
           *g0 = uniform(SHAPE(12, 24));
    tensor *plain_dx, *plain_dw1, *ckpt_dx, *ckpt_dw1, *f32_dx, *f32_dw1;
    mlp_grads(PETAL_PRECISION_BF16, false, x, w1, w2, g0, &plain_dx, &plain_dw1);
    mlp_grads(PETAL_PRECISION_BF16, true, x, w1, w2, g0, &ckpt_dx, &ckpt_dw1);
    mlp_grads(PETAL_PRECISION_F32, false, x, w1, w2, g0, &f32_dx, &f32_dw1);
    ck_assert(bitwise_equal("checkpointed dx", ckpt_dx, plain_dx));
    ck_assert(bitwise_equal("checkpointed dW1", ckpt_dw1, plain_dw1));
    ck_assert(differ(plain_dw1, f32_dw1));
    scope_end(mark);
}
END_TEST

// ---- (e) per thread ----

typedef struct {
    petal_precision seen, after;
    tensor *a, *b, *c;
} thread_probe;

static void *probe(void *arg) {
    thread_probe *t = arg;
    t->seen = precision_get();
    t->c = tensor_matmul(t->a, t->b); // in this thread's mode
    precision_set(PETAL_PRECISION_TF32);
    t->after = precision_get();
    return NULL;
}

START_TEST(test_mode_is_per_thread) {
    rng_manual_seed(20);
    int mark = scope_begin();
    thread_probe t = {.a = uniform(SHAPE(8, 12)), .b = uniform(SHAPE(12, 8))};
    precision_set(PETAL_PRECISION_BF16);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, probe, &t), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(t.seen, PETAL_PRECISION_F32);
    ck_assert_int_eq(t.after, PETAL_PRECISION_TF32);
    ck_assert_int_eq(precision_get(), PETAL_PRECISION_BF16);
    precision_set(PETAL_PRECISION_F32);
    ck_assert(bitwise_equal("the thread's product", t.c, tensor_matmul(t.a, t.b)));
    tensor_free(t.c);
    scope_end(mark);
}
END_TEST

int main(void) {
    Suite *s = suite_create("precision");
    TCase *round = tcase_with_timeout("rounding", 20);
    tcase_add_test(round, test_rounding_edge_cases);
    tcase_add_test(round, test_rounding_sweep);
    tcase_add_test(round, test_names_and_parse);
    tcase_add_test(round, test_bad_precision_refused);
    suite_add_tcase(s, round);
    TCase *gemm = tcase_with_timeout("emulated GEMMs", 20);
    tcase_add_test(gemm, test_emulation_is_rounded_sgemm);
    tcase_add_test(gemm, test_linear_rounds_inputs_not_bias);
    tcase_add_test(gemm, test_attention_rounds_both_products);
    tcase_add_test(gemm, test_error_size);
    suite_add_tcase(s, gemm);
    TCase *rules = tcase_with_timeout("autocast rules", 20);
    tcase_add_test(rules, test_f64_unaffected);
    tcase_add_test(rules, test_gradcheck_in_bf16_region);
    tcase_add_test(rules, test_softmax_and_layer_norm_unaffected);
    tcase_add_test(rules, test_backward_follows_forward);
    tcase_add_test(rules, test_bf16_gradients_near_f32);
    tcase_add_test(rules, test_checkpoint_recomputes_in_forward_precision);
    tcase_add_test(rules, test_mode_is_per_thread);
    suite_add_tcase(s, rules);
    return run_suite(s);
}
