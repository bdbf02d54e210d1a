// tensor/cpu/cpu_path.h: choosing the CPU path, each path's narrow GEMM kernels and vector math
// against f64 references, and each path against the generic one on the ops that use them.
// A path this CPU cannot run is skipped with a note (an AVX2-only machine skips avx512).
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "petal.h"
#include "tensor/cpu/cpu_kernels.h"
#include "tensor/cpu/cpu_path.h"
#include "tensor/random_formula.h"
#include "tests/test_util.h"

// Makes path the active one; false, with a note, when this CPU cannot run it.
static bool use_path(cpu_path path) {
    if (!cpu_path_supported(path)) {
        printf("%s path: this CPU cannot run it, skipped\n", cpu_path_name(path));
        return false;
    }
    ck_assert_int_eq(cpu_path_set(path), PETAL_OK);
    ck_assert_int_eq(cpu_path_active(), path);
    return true;
}

// The narrow GEMM kernels (tensor/cpu/cpu_gemm_narrow.h) of every path against a naive f64
// product, one case per form and layout with ragged sizes (tails of every tile, vector and k
// block), alpha and beta, unaligned operands, and a c with ldc > n whose padding must stay
// untouched.
typedef struct {
    bool ta, tb;
    int m, n, k;
    float alpha, beta;
    bool handled; // a path with kernels takes the case (else the caller falls back to OpenBLAS)
} narrow_case;

static const narrow_case narrow_cases[] = {
    {false, false, 100, 17, 300, 1, 0, true},   // dot form: row, column and k tails
    {false, true, 64, 64, 256, 1, 0, true},     // dot form, b transposed
    {false, false, 97, 32, 512, 0.5f, 1, true}, // dot form accumulating
    {true, false, 208, 23, 300, 1, 0, true},    // outer form: L tail vector, three k blocks
    {true, false, 40, 160, 130, 1, 0, true},    // outer form on c^T, summing into c directly
    {true, false, 40, 160, 130, 1, 1, true},    // ... adding to c
    {true, false, 40, 160, 130, 2, 0.5f, true}, // ... through the scratch sums
    {false, false, 70, 80, 5, 1, 0, true},      // short k: the rank-R update z V^T
    {false, true, 65, 128, 64, 1, 1, true},     // ... b transposed, adding to c
    {true, false, 100, 80, 33, 1, 0, true},     // ... a transposed
    {false, false, 10, 10, 100, 1, 0, false},   // nothing long
    {true, true, 100, 20, 300, 1, 0, false},    // a and b both read across k
};

static float narrow_rand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / (float)(1 << 24) - 0.5f;
}

#define N_NARROW_CASES ((int)(sizeof narrow_cases / sizeof narrow_cases[0]))

// Loop index i: case i / CPU_PATH_COUNT on path i % CPU_PATH_COUNT.
START_TEST(test_narrow_gemm_matches_reference) {
    const narrow_case *t = &narrow_cases[_i / CPU_PATH_COUNT];
    cpu_path path = (cpu_path)(_i % CPU_PATH_COUNT);
    if (!use_path(path)) return;
    int lda = t->ta ? t->m : t->k, ldb = t->tb ? t->k : t->n, ldc = t->n + 3;
    size_t na = (size_t)(t->ta ? t->k : t->m) * lda, nb = (size_t)(t->tb ? t->n : t->k) * ldb;
    size_t nc = (size_t)t->m * ldc;
    // One float past an aligned start: the kernels may not assume aligned operands.
    float *a = malloc((na + 1) * sizeof *a), *b = malloc((nb + 1) * sizeof *b);
    float *c = malloc(nc * sizeof *c), *c0 = malloc(nc * sizeof *c0);
    uint32_t seed = 12345u + (uint32_t)_i;
    for (size_t i = 0; i <= na; i++) a[i] = narrow_rand(&seed);
    for (size_t i = 0; i <= nb; i++) b[i] = narrow_rand(&seed);
    for (size_t i = 0; i < nc; i++) c0[i] = c[i] = narrow_rand(&seed);
    bool handled = cpu_sgemm_narrow(t->ta, t->tb, t->m, t->n, t->k, t->alpha, a + 1, lda, b + 1,
                                    ldb, t->beta, c, ldc);
    ck_assert_int_eq(handled, t->handled && cpu_path_kernels_active()->sgemm_narrow != NULL);
    double worst = 0;
    int wi = 0, wj = 0;
    for (int i = 0; i < t->m && handled; i++)
        for (int j = 0; j < ldc; j++) {
            double want = c0[(size_t)i * ldc + j];
            if (j < t->n) {
                double dot = 0;
                for (int q = 0; q < t->k; q++)
                    dot += (double)a[1 + (t->ta ? (size_t)q * lda + i : (size_t)i * lda + q)] *
                           b[1 + (t->tb ? (size_t)j * ldb + q : (size_t)q * ldb + j)];
                want = t->alpha * dot + t->beta * want;
            }
            double err = fabs(c[(size_t)i * ldc + j] - want);
            if (err > worst) worst = err, wi = i, wj = j;
        }
    double tol = 2e-6 * sqrt((double)t->k) + 1e-6;
    if (worst > tol)
        printf("narrow case %d, %s path: worst |diff| %.3g at (%d, %d), tolerance %.3g\n",
               _i / CPU_PATH_COUNT, cpu_path_name(path), worst, wi, wj, tol);
    fflush(stdout);
    ck_assert(worst <= tol);
    free(a), free(b), free(c), free(c0);
}
END_TEST

// ---- choosing the path ----

START_TEST(test_best_path_is_chosen) {
    unsetenv("PETAL_CPU");
    cpu_path best = CPU_PATH_AVX512;
    while (best > CPU_PATH_GENERIC && !cpu_path_supported(best)) best--;
    ck_assert_int_eq(cpu_path_init(), PETAL_OK);
    ck_assert_str_eq(cpu_path_name(cpu_path_active()), cpu_path_name(best));
    ck_assert(cpu_path_supported(CPU_PATH_GENERIC)); // every x86-64 machine of this century
}
END_TEST

START_TEST(test_petal_cpu_forces_a_path) {
    setenv("PETAL_CPU", "generic", 1);
    ck_assert_int_eq(cpu_path_init(), PETAL_OK);
    ck_assert_int_eq(cpu_path_active(), CPU_PATH_GENERIC);
    ck_assert(cpu_path_kernels_active()->sgemm_narrow == NULL);
    ck_assert(!cpu_sgemm_narrow(false, false, 100, 17, 300, 1, NULL, 300, NULL, 17, 0, NULL, 17));
}
END_TEST

START_TEST(test_bad_petal_cpu_is_refused) {
    cpu_path path;
    ck_assert_int_eq(cpu_path_parse("avx3", &path), PETAL_ERR_ARG);
    ck_assert_str_eq(petal_error_message(), "PETAL_CPU='avx3': expected generic, avx2 or avx512");
    setenv("PETAL_CPU", "avx3", 1);
    ck_assert_int_eq(cpu_path_init(), PETAL_ERR_ARG);
    ck_assert_int_eq(cpu_path_init(), PETAL_ERR_ARG); // no path was made active
    for (int p = 0; p < CPU_PATH_COUNT; p++) {
        if (cpu_path_supported((cpu_path)p)) continue;
        setenv("PETAL_CPU", cpu_path_name((cpu_path)p), 1);
        ck_assert_int_eq(cpu_path_init(), PETAL_ERR_DEVICE);
        printf("refused: %s\n", petal_error_message());
        ck_assert(strstr(petal_error_message(), "this CPU lacks the instructions") != NULL);
    }
}
END_TEST

static void first_kernel_with_bad_petal_cpu(void) {
    setenv("PETAL_CPU", "sse2", 1);
    tensor_exp(tensor_zeros(PETAL_F32, SHAPE(4)));
}

START_TEST(test_bad_petal_cpu_stops_the_first_kernel) {
    ck_assert(aborts_with(first_kernel_with_bad_petal_cpu,
                          "PETAL_CPU='sse2': expected generic, avx2 or avx512"));
}
END_TEST

// ---- the vector math against f64, over the whole float range ----

// The spacing of floats at |r| (the denormal spacing below FLT_MIN).
static double float_ulp(double r) {
    int e;
    frexp(fabs(r) < FLT_MIN ? FLT_MIN : fabs(r), &e);
    return fabs(r) < FLT_MIN ? ldexp(1.0, -149) : ldexp(1.0, e - 24);
}

// Every 4099th float bit pattern (about a million, both signs, zeros to infinities, NaNs
// dropped), into x; returns the count.
static int64_t whole_range(float *x) {
    int64_t n = 0;
    for (uint64_t bits = 0; bits < ((uint64_t)1 << 32); bits += 4099) {
        uint32_t b = (uint32_t)bits;
        float v;
        memcpy(&v, &b, sizeof v);
        if (!isnan(v)) x[n++] = v;
    }
    return n;
}

#define WHOLE_RANGE_MAX (((int64_t)1 << 32) / 4099 + 1)

// Runs the active path's f32 span of op over x (n), into y.
static void run_unary(unary_op op, float *y, const float *x, int64_t n) {
    char *p[2] = {(char *)y, (char *)x};
    const int64_t st[2] = {sizeof(float), sizeof(float)};
    const double prm[2] = {0, 0};
    cpu_path_kernels_active()->unary_f32[op](n, p, st, prm);
}

typedef struct {
    unary_op op;
    const char *name;
    double (*ref)(double);
    double max_ulp; // SLEEF's documented bound
} math_case;

static const math_case math_cases[] = {
    {UNARY_EXP, "exp", exp, 1.0}, {UNARY_LOG, "log", log, 1.0}, {UNARY_TANH, "tanh", tanh, 1.0001}};
#define N_MATH_CASES ((int)(sizeof math_cases / sizeof math_cases[0]))

// SLEEF's bounds for its u10 functions (1.0 ulp; tanh 1.0001), and exact infinities and NaNs.
START_TEST(test_math_within_sleef_bound) {
    const math_case *mc = &math_cases[_i / CPU_PATH_COUNT];
    cpu_path path = (cpu_path)(_i % CPU_PATH_COUNT);
    if (!use_path(path)) return;
    float *x = malloc(WHOLE_RANGE_MAX * sizeof *x), *y = malloc(WHOLE_RANGE_MAX * sizeof *y);
    int64_t n = whole_range(x);
    run_unary(mc->op, y, x, n);
    double worst = 0;
    int64_t wi = 0, special_bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = mc->ref((double)x[i]);
        if (isnan(r) || fabs(r) > FLT_MAX) { // NaN, or beyond float: exactly NaN or infinity
            special_bad += isnan(r) ? !isnan(y[i]) : y[i] != (float)r;
            continue;
        }
        double ulp = fabs((double)y[i] - r) / float_ulp(r);
        if (!(ulp <= worst)) worst = ulp, wi = i;
    }
    printf("%s path, %s: worst %.4f ulp at x = %.9g (got %.9g, f64 %.17g), %lld points\n",
           cpu_path_name(path), mc->name, worst, x[wi], y[wi], mc->ref(x[wi]), (long long)n);
    fflush(stdout);
    ck_assert_int_eq(special_bad, 0);
    ck_assert(worst <= mc->max_ulp);
    free(x), free(y);
}
END_TEST

// ---- GELU against f64 ----

static double gelu_erf_ref(double x) {
    return 0.5 * x * (1.0 + erf(x * PETAL_SQRT1_2));
}

static double gelu_tanh_ref(double x) {
    return 0.5 * x * (1.0 + tanh(PETAL_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
}

static double gelu_erf_grad_ref(double x) {
    return 0.5 * (1.0 + erf(x * PETAL_SQRT1_2)) + x * PETAL_SQRT2PI_INV * exp(-0.5 * x * x);
}

static double gelu_tanh_grad_ref(double x) {
    double u = PETAL_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x), th = tanh(u);
    double du = PETAL_SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du;
}

typedef struct {
    const char *name;
    int op; // unary_op, or binary_op for a gradient (then g = 1)
    bool gradient;
    double (*ref)(double);
} gelu_case;

static const gelu_case gelu_cases[] = {
    {"gelu (erf)", UNARY_GELU_ERF, false, gelu_erf_ref},
    {"gelu (tanh)", UNARY_GELU_TANH, false, gelu_tanh_ref},
    {"gelu (erf) backward", BINARY_GELU_ERF_GRAD, true, gelu_erf_grad_ref},
    {"gelu (tanh) backward", BINARY_GELU_TANH_GRAD, true, gelu_tanh_grad_ref},
};
#define N_GELU_CASES ((int)(sizeof gelu_cases / sizeof gelu_cases[0]))

// The error bound (docs/design.md, "CPU paths"): GELU multiplies x by 1 + erf (or 1 + tanh),
// whose rounding near -1 no f32 evaluation of the formula avoids (PyTorch's neither), so the
// bound is GELU_MAX_ERR times (one ulp of the result + that rounding carried through): |x| 2^-24
// for the value, (1 + |x|^3) 2^-24 for the derivative (the tanh form's x (1 - tanh^2) u' term
// grows as |x|^3 where tanh rounds to -1).
#define GELU_MAX_ERR 2.0

START_TEST(test_gelu_within_bound) {
    const gelu_case *gc = &gelu_cases[_i / CPU_PATH_COUNT];
    cpu_path path = (cpu_path)(_i % CPU_PATH_COUNT);
    if (!use_path(path)) return;
    int64_t dense = 2000001; // [-10, 10] in steps of 1e-5, where GELU bends
    float *x = malloc((WHOLE_RANGE_MAX + dense) * sizeof *x);
    float *y = malloc((WHOLE_RANGE_MAX + dense) * sizeof *y);
    int64_t n = whole_range(x);
    for (int64_t i = 0; i < dense; i++) x[n++] = (float)((double)(i - dense / 2) * 1e-5);
    if (gc->gradient) {
        float *g = malloc((size_t)n * sizeof *g);
        for (int64_t i = 0; i < n; i++) g[i] = 1.0f;
        char *p[3] = {(char *)y, (char *)g, (char *)x};
        const int64_t st[3] = {sizeof(float), sizeof(float), sizeof(float)};
        cpu_path_kernels_active()->binary_f32[gc->op](n, p, st, (const double[2]){0, 0});
        free(g);
    } else {
        run_unary((unary_op)gc->op, y, x, n);
    }
    double worst = 0;
    int64_t wi = 0, bad_special = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = gc->ref((double)x[i]);
        if (isnan(r) || isinf(x[i])) {
            bad_special += isnan(r) != isnan(y[i]);
            continue;
        }
        double ax = fabs((double)x[i]);
        double scale = float_ulp(r) + (gc->gradient ? 1.0 + ax * ax * ax : ax) * 0x1p-24;
        double err = fabs((double)y[i] - r) / scale;
        if (!(err <= worst)) worst = err, wi = i;
    }
    printf("%s path, %s: worst error %.3f (in units of ulp(y) + %s 2^-24) at x = %.9g (got "
           "%.9g, f64 %.17g), %lld points\n",
           cpu_path_name(path), gc->name, worst, gc->gradient ? "(1 + |x|^3)" : "|x|", x[wi], y[wi],
           gc->ref(x[wi]), (long long)n);
    fflush(stdout);
    ck_assert_int_eq(bad_special, 0);
    ck_assert(worst <= GELU_MAX_ERR);
    free(x), free(y);
}
END_TEST

// ---- softmax and LayerNorm rows against f64 ----

// Each row kernel's worst error, in units of a scale that each reference gives per element: one
// ulp of the result plus the rounding the f32 formula cannot avoid (2^-24 times the terms it
// adds up), as for GELU above. Rows of every tail length, unaligned, of several kinds.
#define ROW_MAX_ERR 2.0

static const int64_t row_lens[] = {1, 7, 197, 768, 1000};
#define N_ROW_LENS ((int)(sizeof row_lens / sizeof row_lens[0]))

typedef enum { ROW_UNIFORM, ROW_WIDE, ROW_OFFSET, ROW_MASKED, ROW_ALL_MASKED, ROW_KINDS } row_kind;
static const char *const row_kind_names[ROW_KINDS] = {"uniform", "wide", "offset", "masked",
                                                      "all -inf"};
#define ROW_FINITE_KINDS ROW_MASKED // LayerNorm's kinds: no -inf

// x (len) of one kind: uniform on [-4, 4), wide on [-2e4, 2e4) (softmax: a few exps left),
// offset 1e4 + [-4, 4) (large magnitudes, LayerNorm's cancellation), masked (every third -inf,
// attention's masked scores), all -inf.
static void row_fill(float *x, int64_t len, row_kind kind, uint32_t seed) {
    for (int64_t i = 0; i < len; i++) {
        float u = narrow_rand(&seed);
        x[i] = kind == ROW_WIDE                                               ? 4e4f * u
               : kind == ROW_OFFSET                                           ? 1e4f + 8 * u
               : kind == ROW_ALL_MASKED || (kind == ROW_MASKED && i % 3 == 1) ? -INFINITY
                                                                              : 8 * u;
    }
}

typedef struct {
    double worst, got, want;
    const char *quantity; // "y", "mean", "gx", ...
    int64_t at, len, bad_special;
    row_kind kind;
} row_worst;

// Non-finite wants must come out exactly (NaN as NaN); finite ones within scale units.
// Element `at` of quantity (at < 0: a scalar) of a row of len elements.
static void row_check(row_worst *w, const char *quantity, int64_t at, double got, double want,
                      double scale, int64_t len, row_kind kind) {
    if (!isfinite(want)) {
        w->bad_special += isnan(want) ? !isnan(got) : got != want;
        return;
    }
    double err = fabs(got - want) / scale;
    if (isnan(err)) {
        w->bad_special++;
    } else if (err > w->worst) {
        *w = (row_worst){err, got, want, quantity, at, len, w->bad_special, kind};
    }
}

static void row_report(const row_worst *w, const char *what) {
    char where[64] = "";
    if (w->at >= 0) snprintf(where, sizeof where, "[%lld]", (long long)w->at);
    printf("%s path, %s: worst error %.3f (units: ulp + the formula's rounding) at %s%s of a %s "
           "row of %lld (got %.9g, f64 %.17g); %lld non-finite mismatches\n",
           cpu_path_name(cpu_path_active()), what, w->worst, w->quantity ? w->quantity : "-", where,
           row_kind_names[w->kind], (long long)w->len, w->got, w->want, (long long)w->bad_special);
    fflush(stdout);
    ck_assert_int_eq(w->bad_special, 0);
    ck_assert(w->worst <= ROW_MAX_ERR);
}

// f64 softmax (or log-softmax) of x into y and each element's error scale: exp's argument x - max
// is rounded in f32, |x - max| 2^-24 (the sum carries the rows' weighted mean of it too).
static void softmax_ref(double *y, double *scale, const float *x, int64_t len, bool as_log) {
    double m = -INFINITY, sum = 0, spread = 0;
    for (int64_t i = 0; i < len; i++) m = x[i] > m ? x[i] : m;
    for (int64_t i = 0; i < len; i++) sum += exp(x[i] - m);
    for (int64_t i = 0; i < len; i++)
        if (x[i] > -INFINITY) spread += exp(x[i] - m) / sum * fabs(x[i] - m);
    for (int64_t i = 0; i < len; i++) {
        double p = exp(x[i] - m) / sum, lse = m + log(sum);
        y[i] = as_log ? x[i] - lse : p; // an all -inf row: NaN (-inf - -inf), as PyTorch
        double terms = as_log  ? 1 + fabs(x[i] - m) + fabs(log(sum)) + spread
                       : p > 0 ? p * (1 + fabs(x[i] - m) + spread)
                               : 0;
        scale[i] = float_ulp(y[i]) + terms * 0x1p-24;
    }
}

// Loop index i: log-softmax when i / CPU_PATH_COUNT, on path i % CPU_PATH_COUNT.
START_TEST(test_softmax_rows_within_bound) {
    bool as_log = _i / CPU_PATH_COUNT;
    if (!use_path((cpu_path)(_i % CPU_PATH_COUNT))) return;
    float *x = malloc(1001 * sizeof *x), *y = malloc(1001 * sizeof *y);
    double *want = malloc(1000 * sizeof *want), *scale = malloc(1000 * sizeof *scale);
    row_worst w = {0};
    for (int l = 0; l < N_ROW_LENS; l++)
        for (int kind = 0; kind < ROW_KINDS; kind++) {
            int64_t len = row_lens[l];
            row_fill(x + 1, len, (row_kind)kind, 100u * (uint32_t)l + (uint32_t)kind);
            softmax_ref(want, scale, x + 1, len, as_log);
            cpu_path_kernels_active()->softmax_row(y + 1, x + 1, len, as_log);
            for (int64_t i = 0; i < len; i++)
                row_check(&w, "y", i, y[1 + i], want[i], scale[i], len, (row_kind)kind);
            // in place (attention's softmax) gives the same floats
            cpu_path_kernels_active()->softmax_row(x + 1, x + 1, len, as_log);
            ck_assert_mem_eq(x + 1, y + 1, (size_t)len * sizeof *x);
        }
    row_report(&w, as_log ? "log_softmax row" : "softmax row");
    free(x), free(y), free(want), free(scale);
}
END_TEST

// The backward of softmax rows, y the f32 forward: softmax gx = y (gy - D), D = sum(gy y), whose
// f32 products round by 2^-24 |gy y|; log-softmax gx = gy - exp(y) D, D = sum(gy).
START_TEST(test_softmax_backward_rows_within_bound) {
    bool as_log = _i / CPU_PATH_COUNT;
    if (!use_path((cpu_path)(_i % CPU_PATH_COUNT))) return;
    float *x = malloc(1000 * sizeof *x), *y = malloc(1001 * sizeof *y);
    float *gy = malloc(1001 * sizeof *gy), *gx = malloc(1001 * sizeof *gx);
    double *p = malloc(1000 * sizeof *p), *unused = malloc(1000 * sizeof *unused);
    row_worst w = {0};
    for (int l = 0; l < N_ROW_LENS; l++)
        for (int kind = 0; kind < ROW_KINDS; kind++) {
            int64_t len = row_lens[l];
            uint32_t seed = 7u + 100u * (uint32_t)l + (uint32_t)kind;
            row_fill(x, len, (row_kind)kind, seed);
            softmax_ref(p, unused, x, len, as_log);
            for (int64_t i = 0; i < len; i++)
                y[1 + i] = (float)p[i], gy[1 + i] = narrow_rand(&seed);
            cpu_path_kernels_active()->softmax_backward_row(gx + 1, gy + 1, y + 1, len, as_log);
            double dot = 0, dot_abs = 0;
            for (int64_t i = 0; i < len; i++) {
                double t = as_log ? gy[1 + i] : (double)gy[1 + i] * y[1 + i];
                dot += t, dot_abs += fabs(t);
            }
            for (int64_t i = 0; i < len; i++) {
                double g = gy[1 + i], yi = y[1 + i];
                double want = as_log ? g - exp(yi) * dot : yi * (g - dot);
                double terms = as_log ? fabs(g) + exp(yi) * fabs(dot)
                                      : fabs(yi) * (fabs(g) + fabs(dot) + dot_abs);
                row_check(&w, "gx", i, gx[1 + i], want, float_ulp(want) + terms * 0x1p-24, len,
                          (row_kind)kind);
            }
        }
    row_report(&w, as_log ? "log_softmax backward row" : "softmax backward row");
    free(x), free(y), free(gy), free(gx), free(p), free(unused);
}
END_TEST

#define LN_EPS 1e-5

// f64 mean and rstd of x (d), as the kernels define them (biased variance).
static void layer_norm_ref_stats(const float *x, int64_t d, double *mean, double *rstd) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < d; i++) sum += x[i];
    *mean = sum / (double)d;
    for (int64_t i = 0; i < d; i++) sq += (x[i] - *mean) * (x[i] - *mean);
    *rstd = 1.0 / sqrt(sq / (double)d + LN_EPS);
}

// y = (x - mean) rstd w + b: mean is rounded to f32 before x - mean, off by up to |mean| 2^-25;
// mean and rstd come out within an ulp. Loop index i: affine (w and b) when i / CPU_PATH_COUNT.
START_TEST(test_layer_norm_rows_within_bound) {
    bool affine = _i / CPU_PATH_COUNT;
    if (!use_path((cpu_path)(_i % CPU_PATH_COUNT))) return;
    float *x = malloc(1001 * sizeof *x), *y = malloc(1001 * sizeof *y);
    float *wt = malloc(1001 * sizeof *wt), *b = malloc(1001 * sizeof *b);
    row_worst w = {0};
    for (int l = 0; l < N_ROW_LENS; l++)
        for (int kind = 0; kind < ROW_FINITE_KINDS; kind++) {
            int64_t d = row_lens[l];
            uint32_t seed = 11u + 100u * (uint32_t)l + (uint32_t)kind;
            row_fill(x + 1, d, (row_kind)kind, seed);
            for (int64_t i = 0; i < d; i++)
                wt[1 + i] = 1 + 2 * narrow_rand(&seed), b[1 + i] = narrow_rand(&seed);
            float mean, rstd;
            cpu_path_kernels_active()->layer_norm_row(y + 1, &mean, &rstd, x + 1,
                                                      affine ? wt + 1 : NULL, affine ? b + 1 : NULL,
                                                      d, LN_EPS);
            double m, r;
            layer_norm_ref_stats(x + 1, d, &m, &r);
            row_check(&w, "mean", -1, mean, m, float_ulp(m), d, (row_kind)kind);
            row_check(&w, "rstd", -1, rstd, r, float_ulp(r), d, (row_kind)kind);
            for (int64_t i = 0; i < d; i++) {
                double wi = affine ? wt[1 + i] : 1, bi = affine ? b[1 + i] : 0;
                double want = (x[1 + i] - m) * r * wi + bi;
                double terms = (fabs(x[1 + i] - m) + fabs(m)) * r * fabs(wi) + fabs(bi);
                row_check(&w, "y", i, y[1 + i], want, float_ulp(want) + terms * 0x1p-24, d,
                          (row_kind)kind);
            }
        }
    row_report(&w, affine ? "layer_norm row (affine)" : "layer_norm row");
    free(x), free(y), free(wt), free(b);
}
END_TEST

// Three rows of LayerNorm's backward with the f32 mean and rstd of the forward: gx = rstd (g -
// mean(g) - xh mean(g xh)), g = gy w, xh = (x - mean) rstd, each f32 product and difference
// rounding by 2^-24 of its terms; and the f64 accumulators gw += gy xh, gb += gy over the rows,
// the same whether gx is computed or skipped. Loop index i: with w when i / CPU_PATH_COUNT.
#define LN_ROWS 3

START_TEST(test_layer_norm_backward_rows_within_bound) {
    bool has_w = _i / CPU_PATH_COUNT;
    if (!use_path((cpu_path)(_i % CPU_PATH_COUNT))) return;
    const cpu_path_kernels *k = cpu_path_kernels_active();
    size_t n = LN_ROWS * 1000 + 1;
    float *x = malloc(n * sizeof *x), *gy = malloc(n * sizeof *gy), *gx = malloc(n * sizeof *gx);
    float *y = malloc(n * sizeof *y), *wt = malloc(1001 * sizeof *wt);
    double *acc = malloc(4 * 1001 * sizeof *acc), *want_gw = malloc(2 * 1000 * sizeof *want_gw);
    row_worst w = {0};
    for (int l = 0; l < N_ROW_LENS; l++)
        for (int kind = 0; kind < ROW_FINITE_KINDS; kind++) {
            int64_t d = row_lens[l];
            uint32_t seed = 13u + 100u * (uint32_t)l + (uint32_t)kind;
            for (int64_t i = 0; i < d; i++) wt[1 + i] = 1 + 2 * narrow_rand(&seed);
            const float *wp = has_w ? wt + 1 : NULL;
            double *gw = acc + 1, *gb = gw + d, *gw2 = gb + d, *gb2 = gw2 + d; // unaligned
            memset(acc, 0, 4 * 1001 * sizeof *acc);
            memset(want_gw, 0, 2 * (size_t)d * sizeof *want_gw); // gw then its error scale
            double gb_want[1000] = {0}, gb_scale[1000] = {0};
            for (int row = 0; row < LN_ROWS; row++) {
                float *xr = x + 1 + row * d, *gyr = gy + 1 + row * d, *gxr = gx + 1 + row * d;
                row_fill(xr, d, (row_kind)kind, seed + 1000u * (uint32_t)row);
                for (int64_t i = 0; i < d; i++) gyr[i] = narrow_rand(&seed);
                float mean, rstd;
                k->layer_norm_row(y, &mean, &rstd, xr, NULL, NULL, d, LN_EPS);
                k->layer_norm_backward_row(gxr, gw, gb, gyr, xr, mean, rstd, wp, d);
                k->layer_norm_backward_row(NULL, gw2, gb2, gyr, xr, mean, rstd, wp, d);
                double m1 = 0, m2 = 0, a1 = 0, a2 = 0; // means of g, g xh, |g|, |g xh|
                for (int64_t i = 0; i < d; i++) {
                    double xh = ((double)xr[i] - mean) * rstd, g = gyr[i] * (wp ? wp[i] : 1.0);
                    m1 += g / (double)d, m2 += g * xh / (double)d;
                    a1 += fabs(g) / (double)d, a2 += fabs(g * xh) / (double)d;
                    want_gw[i] += gyr[i] * xh, want_gw[d + i] += fabs(gyr[i] * xh);
                    gb_want[i] += gyr[i], gb_scale[i] += fabs(gyr[i]);
                }
                for (int64_t i = 0; i < d; i++) {
                    double xh = ((double)xr[i] - mean) * rstd, g = gyr[i] * (wp ? wp[i] : 1.0);
                    double want = rstd * (g - m1 - xh * m2);
                    double terms = rstd * (fabs(g) + a1 + fabs(xh) * a2);
                    row_check(&w, "gx", row * d + i, gxr[i], want,
                              float_ulp(want) + terms * 0x1p-24, d, (row_kind)kind);
                }
            }
            for (int64_t i = 0; i < d; i++) {
                row_check(&w, "gw", i, gw[i], want_gw[i],
                          float_ulp(want_gw[i]) + want_gw[d + i] * 0x1p-24, d, (row_kind)kind);
                row_check(&w, "gb", i, gb[i], gb_want[i],
                          float_ulp(gb_want[i]) + gb_scale[i] * 0x1p-24, d, (row_kind)kind);
            }
            ck_assert_mem_eq(gw2, gw, 2 * (size_t)d * sizeof *gw);
        }
    row_report(&w, has_w ? "layer_norm backward row (with w)" : "layer_norm backward row");
    free(x), free(gy), free(gx), free(y), free(wt), free(acc), free(want_gw);
}
END_TEST

// ---- every path against the generic one, through the ops ----

// The outputs and gradients of a small network that runs every path kernel: LayerNorm, a rank-32
// product (narrow GEMM), GELU (both forms), softmax, log-softmax, exp, log and tanh, forward
// and backward. The returned tensors are kept (the caller frees them).
#define PATH_OUTPUTS 5

static void run_network(cpu_path path, tensor **out) {
    ck_assert_int_eq(cpu_path_set(path), PETAL_OK);
    rng_generator g = {.seed = 7};
    tensor *x = tensor_keep(tensor_empty(PETAL_F32, SHAPE(197, 300)));
    tensor *w = tensor_keep(tensor_empty(PETAL_F32, SHAPE(300, 32)));
    tensor *lw = tensor_keep(tensor_empty(PETAL_F32, SHAPE(300)));
    tensor *lb = tensor_keep(tensor_empty(PETAL_F32, SHAPE(300)));
    tensor_normal_(x, 0.0, 2.0, &g);
    tensor_normal_(w, 0.0, 0.1, &g);
    tensor_normal_(lw, 1.0, 0.2, &g);
    tensor_normal_(lb, 0.0, 0.2, &g);
    tensor *params[] = {x, w, lw, lb};
    for (int i = 0; i < 4; i++) tensor_set_requires_grad(params[i], true);
    int mark = scope_begin();
    tensor *h = tensor_matmul(tensor_layer_norm(x, lw, lb, 1e-5), w);
    tensor *a = tensor_add(tensor_gelu(h), tensor_gelu_tanh(h));
    tensor *s = tensor_softmax(a, -1);
    tensor *e = tensor_add(tensor_exp(tensor_tanh(a)), tensor_log(tensor_add_scalar(s, 1.0)));
    tensor *loss = tensor_sum_all(tensor_mul(tensor_add(e, tensor_log_softmax(a, -1)), s));
    autograd_backward(loss, NULL, false);
    out[0] = tensor_keep(tensor_detach(a));
    out[1] = tensor_keep(tensor_detach(e));
    scope_end(mark);
    out[2] = tensor_keep(tensor_detach(x->grad));
    out[3] = tensor_keep(tensor_detach(w->grad));
    out[4] = tensor_keep(tensor_detach(lw->grad));
    for (int i = 0; i < 4; i++) tensor_free(params[i]);
}

// Each path within 1e-5 relative, plus 3.5e-5 absolute, of the generic path: the SLEEF functions
// differ by about an ulp between widths, and the narrow GEMM sums its 300 products in another
// order than OpenBLAS (the absolute term: the narrow GEMM test's bound, 2e-6 sqrt(k)).
START_TEST(test_paths_agree_with_generic) {
    cpu_path path = (cpu_path)_i;
    if (!use_path(path)) return;
    static const char *const names[PATH_OUTPUTS] = {"layer_norm of gelus", "exp/log/tanh", "grad x",
                                                    "grad w", "grad layer_norm w"};
    tensor *want[PATH_OUTPUTS], *got[PATH_OUTPUTS];
    run_network(CPU_PATH_GENERIC, want);
    run_network(path, got);
    for (int i = 0; i < PATH_OUTPUTS; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s path, %s", cpu_path_name(path), names[i]);
        ck_assert(tensors_close(what, got[i], want[i], 3.5e-5, 1e-5));
        tensor_free(got[i]), tensor_free(want[i]);
    }
}
END_TEST

// Dropout's Philox words are integers and its scaling one multiply: every path gives exactly the
// per-element formula (random_keep), tail group included.
START_TEST(test_dropout_matches_formula) {
    cpu_path path = (cpu_path)_i;
    if (!use_path(path)) return;
    int64_t n = 4 * DROPOUT_LANES * 40 + 37;
    tensor *x = tensor_keep(tensor_empty(PETAL_F32, SHAPE(n)));
    rng_generator g = {.seed = 11};
    tensor_normal_(x, 0.0, 1.0, &g);
    rng_generator dg = {.seed = 5, .offset = 3};
    rng_state at = {dg.seed, dg.offset};
    tensor *y = tensor_keep(tensor_dropout(x, 0.3, true, &dg));
    int64_t wrong = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        float want = random_keep(at, i, 0.3) ? tensor_data_f32(x)[i] * (float)(1.0 / 0.7) : 0.0f;
        if (tensor_data_f32(y)[i] != want && wrong++ == 0) first = i;
    }
    if (wrong)
        printf("%s path, dropout: %lld of %lld elements differ, first at %lld\n",
               cpu_path_name(path), (long long)wrong, (long long)n, (long long)first);
    fflush(stdout);
    ck_assert_int_eq(wrong, 0);
    tensor_free(x), tensor_free(y);
}
END_TEST

// OpenBLAS's kernels suit this CPU once the suite has started (test_util.c's threads_reexec
// restarts it with OPENBLAS_CORETYPE where OpenBLAS misjudged the CPU, as `petal` does), and a
// program that runs with a misjudged OpenBLAS is told what to set.
START_TEST(test_blas_core_suits_the_cpu) {
    printf("OpenBLAS kernels: %s (OPENBLAS_CORETYPE=%s)\n", blas_core_name(),
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset");
    ck_assert_ptr_null(blas_core_advice());
    ck_assert(!blas_core_warn_once());
    // ... and libgomp's idle threads spin a bounded time, unless the user chose otherwise
    if (!getenv("OMP_WAIT_POLICY")) ck_assert_ptr_nonnull(getenv("GOMP_SPINCOUNT"));
    if (!cpu_path_supported(CPU_PATH_AVX2)) return;
    char self[512], cmd[1024]; // this program with a pre-AVX2 choice forced: the warning's fix
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    ck_assert(len > 0);
    self[len] = '\0';
    snprintf(cmd, sizeof cmd,
             "OPENBLAS_CORETYPE=Prescott '%s' --exit-after-warning 2>&1 >/dev/null", self);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char line[1024] = "";
    ck_assert_ptr_nonnull(fgets(line, sizeof line, p));
    pclose(p);
    printf("forced Prescott: %s", line);
    ck_assert_ptr_nonnull(strstr(line, "OpenBLAS runs its Prescott kernels"));
    ck_assert_ptr_nonnull(strstr(line, "(OPENBLAS_CORETYPE=Prescott)"));
    ck_assert_ptr_nonnull(strstr(line, cpu_path_supported(CPU_PATH_AVX512)
                                           ? "set OPENBLAS_CORETYPE=SkylakeX"
                                           : "set OPENBLAS_CORETYPE=Haswell"));
}
END_TEST

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--exit-after-warning") == 0)
        return blas_core_warn_once() ? 0 : 1;
    Suite *s = suite_create("cpu_path");
    TCase *choice = tcase_create("choice");
    tcase_add_test(choice, test_best_path_is_chosen);
    tcase_add_test(choice, test_petal_cpu_forces_a_path);
    tcase_add_test(choice, test_bad_petal_cpu_is_refused);
    tcase_add_test(choice, test_bad_petal_cpu_stops_the_first_kernel);
    tcase_add_test(choice, test_blas_core_suits_the_cpu);
    suite_add_tcase(s, choice);
    TCase *kernels = tcase_with_timeout("kernels", 20);
    tcase_add_loop_test(kernels, test_narrow_gemm_matches_reference, 0,
                        N_NARROW_CASES * CPU_PATH_COUNT);
    tcase_add_loop_test(kernels, test_math_within_sleef_bound, 0, N_MATH_CASES * CPU_PATH_COUNT);
    tcase_add_loop_test(kernels, test_gelu_within_bound, 0, N_GELU_CASES * CPU_PATH_COUNT);
    tcase_add_loop_test(kernels, test_softmax_rows_within_bound, 0, 2 * CPU_PATH_COUNT);
    tcase_add_loop_test(kernels, test_softmax_backward_rows_within_bound, 0, 2 * CPU_PATH_COUNT);
    tcase_add_loop_test(kernels, test_layer_norm_rows_within_bound, 0, 2 * CPU_PATH_COUNT);
    tcase_add_loop_test(kernels, test_layer_norm_backward_rows_within_bound, 0, 2 * CPU_PATH_COUNT);
    tcase_add_loop_test(kernels, test_paths_agree_with_generic, 0, CPU_PATH_COUNT);
    tcase_add_loop_test(kernels, test_dropout_matches_formula, 0, CPU_PATH_COUNT);
    suite_add_tcase(s, kernels);
    return run_suite(s);
}
