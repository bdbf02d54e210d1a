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

// ---- every path against the generic one, through the ops ----

// The outputs and gradients of a small network that runs every path kernel: a rank-32 product
// (narrow GEMM), GELU (both forms), softmax, exp, log and tanh, forward and backward. The
// returned tensors are kept (the caller frees them).
#define PATH_OUTPUTS 4

static void run_network(cpu_path path, tensor **out) {
    ck_assert_int_eq(cpu_path_set(path), PETAL_OK);
    rng_generator g = {.seed = 7};
    tensor *x = tensor_keep(tensor_empty(PETAL_F32, SHAPE(197, 300)));
    tensor *w = tensor_keep(tensor_empty(PETAL_F32, SHAPE(300, 32)));
    tensor_normal_(x, 0.0, 2.0, &g);
    tensor_normal_(w, 0.0, 0.1, &g);
    tensor_set_requires_grad(x, true);
    tensor_set_requires_grad(w, true);
    int mark = scope_begin();
    tensor *h = tensor_matmul(x, w);
    tensor *a = tensor_add(tensor_gelu(h), tensor_gelu_tanh(h));
    tensor *s = tensor_softmax(a, -1);
    tensor *e = tensor_add(tensor_exp(tensor_tanh(a)), tensor_log(tensor_add_scalar(s, 1.0)));
    tensor *loss = tensor_sum_all(tensor_mul(e, s));
    autograd_backward(loss, NULL, false);
    out[0] = tensor_keep(tensor_detach(a));
    out[1] = tensor_keep(tensor_detach(e));
    scope_end(mark);
    out[2] = tensor_keep(tensor_detach(x->grad));
    out[3] = tensor_keep(tensor_detach(w->grad));
    tensor_free(x), tensor_free(w);
}

// Each path within 1e-5 relative, plus 3.5e-5 absolute, of the generic path: the SLEEF functions
// differ by about an ulp between widths, and the narrow GEMM sums its 300 products in another
// order than OpenBLAS (the absolute term: the narrow GEMM test's bound, 2e-6 sqrt(k)).
START_TEST(test_paths_agree_with_generic) {
    cpu_path path = (cpu_path)_i;
    if (!use_path(path)) return;
    static const char *const names[PATH_OUTPUTS] = {"gelu sum", "exp/log/tanh", "grad x", "grad w"};
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
    tcase_add_loop_test(kernels, test_paths_agree_with_generic, 0, CPU_PATH_COUNT);
    tcase_add_loop_test(kernels, test_dropout_matches_formula, 0, CPU_PATH_COUNT);
    suite_add_tcase(s, kernels);
    return run_suite(s);
}
