// tests/cuda: the CUDA backend against the CPU backend, the oracle (as ggml's test-backend-ops):
// every case of the op table (ops/op_table.c) forward and backward on cpu and cuda:0, in f64 and
// f32, with per-op tolerances; the same ops at sizes that take many blocks and on NaN, infinities,
// signed zeros and ties; every op run twice on cuda giving the same bits; bf16 and TF32 GEMMs
// against the CPU's emulation of them; Linear's bias inside the GEMM (cuBLASLt's epilogue: odd
// shapes, precisions, determinism, its plan cache, the path without cuBLASLt); then the allocator,
// copies of non-contiguous views, random streams, AdamW, the NCCL layer and the errors (devices
// mixed, bad indices). Every test case is tagged "gpu" (CK_EXCLUDE_TAGS=gpu leaves them out); the
// op table and the fused attention's cases also "sanitize" (CK_INCLUDE_TAGS=sanitize: what
// compute-sanitizer runs in scripts/gpu-check.sh). Where cuda:0 cannot be used (no driver, no
// device, out of memory, a build without CUDA) the suite reports itself skipped, or with
// PETAL_REQUIRE_GPU=1 fails every case naming why (gpu_gate.h).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops/op_table.h"
#include "petal.h"
#include "tests/cuda/gpu_gate.h"
#include "tests/test_util.h"
#include "train/dist.h"
#ifdef PETAL_HAVE_CUBLASLT
#include "tensor/cuda/cuda_backend.h"
#include "tensor/cuda/cuda_libs.h"
#include "tensor/cuda/cuda_lt_cache.h"
#endif

#define CUDA0 DEVICE_CUDA(0)

// The same tensor on `device` with the same strides and offset (its whole storage is moved with
// tensor_to), so the kernels meet the layouts the case was written with; requires_grad is kept.
static tensor *same_layout_on(const tensor *t, petal_device device) {
    int64_t numel = (int64_t)(t->storage->nbytes / dtype_size(t->dtype)), unit = 1;
    tensor *flat = tensor_make_view(t->storage, t->dtype, 1, &numel, &unit, 0);
    tensor *moved = tensor_to(flat, device);
    tensor *view =
        tensor_make_view(moved->storage, t->dtype, t->ndim, t->shape, t->strides, t->offset);
    tensor_free(flat);
    tensor_free(moved);
    return tensor_set_requires_grad(view, t->requires_grad);
}

typedef struct {
    double atol, rtol; // atol is relative to the largest |value| of the CPU result (at least 1)
} tolerance;

// f32: a few ulps for element-wise math (CUDA's tanhf, logf, powf are within 2 ulp, like libm's),
// more where a GEMM or a long sum adds in another order. f64: the same, a billion times tighter.
static tolerance tolerance_for(const op_case *c, petal_dtype dtype) {
    static const char *const reordered[] = {"matmul",           "linear",     "attention",
                                            "attention_packed", "layer_norm", "cross_entropy",
                                            "normalize"};
    bool loose = false;
    for (size_t i = 0; i < sizeof reordered / sizeof reordered[0]; i++)
        loose = loose || strcmp(c->op, reordered[i]) == 0;
    if (dtype == PETAL_F64) return loose ? (tolerance){1e-12, 1e-11} : (tolerance){1e-13, 1e-12};
    return loose ? (tolerance){1e-5, 1e-5} : (tolerance){4e-6, 4e-6};
}

static bool close_to_cpu(const char *what, const tensor *gpu, const tensor *cpu, tolerance tol) {
    return tensors_close(what, gpu, cpu, tol.atol * tensor_finite_scale(cpu), tol.rtol);
}

// Runs case c on cpu_args and on their copies on cuda:0: the output, then (if it requires grad)
// the gradient of every input that requires one, for the same random output gradient.
static bool check_args(const op_case *c, tensor **cpu_args, petal_dtype dtype) {
    int mark = scope_begin();
    tensor *gpu_args[4];
    for (int i = 0; i < c->n_args; i++) gpu_args[i] = same_layout_on(cpu_args[i], CUDA0);
    tensor *want = c->fn(cpu_args, c), *got = c->fn(gpu_args, c);
    tolerance tol = tolerance_for(c, dtype);
    char what[160];
    snprintf(what, sizeof what, "%s (%s) forward", c->name, dtype_name(dtype));
    bool ok = got->device.type == PETAL_CUDA && close_to_cpu(what, got, want, tol);
    if (ok && want->requires_grad) {
        tensor *seed = tensor_empty_like(want);
        tensor_normal_(seed, 0, 1, &(rng_generator){3, 0});
        autograd_backward(want, seed, false);
        autograd_backward(got, tensor_to(seed, CUDA0), false);
        for (int i = 0; i < c->n_args && ok; i++) {
            if (!cpu_args[i]->requires_grad) continue;
            snprintf(what, sizeof what, "%s (%s) grad %d", c->name, dtype_name(dtype), i);
            ok = cpu_args[i]->grad && gpu_args[i]->grad &&
                 gpu_args[i]->grad->device.type == PETAL_CUDA &&
                 close_to_cpu(what, gpu_args[i]->grad, cpu_args[i]->grad, tol);
            if (!ok && !(cpu_args[i]->grad && gpu_args[i]->grad))
                fprintf(stderr, "%s: missing on %s\n", what, cpu_args[i]->grad ? "cuda" : "cpu");
        }
    }
    scope_end(mark);
    return ok;
}

// A case with the arguments its table row describes.
static bool check_case(const op_case *c, petal_dtype dtype) {
    int mark = scope_begin();
    tensor *args[4];
    for (int i = 0; i < c->n_args; i++) args[i] = op_case_arg(c, i, dtype, 31 + 7 * i);
    bool ok = check_args(c, args, dtype);
    scope_end(mark);
    return ok;
}

static void check_both_types(const op_case *c) {
    ck_assert_msg(check_case(c, PETAL_F64), "%s (f64): cuda differs from cpu", c->name);
    ck_assert_msg(check_case(c, PETAL_F32), "%s (f32): cuda differs from cpu", c->name);
}

START_TEST(test_op_case) {
    const op_case *c = &op_cases[_i];
    GPU_REQUIRE();
    check_both_types(c);
}
END_TEST

// ---- the same ops at sizes that take many blocks, many lanes per row and several GEMM runs ----

static tensor *f_reduce(tensor **a, const op_case *c) {
    int dim = (int)c->iparam[1];
    switch (c->iparam[0]) {
    case 0:
        return tensor_sum(a[0], dim, false);
    case 1:
        return tensor_mean(a[0], dim, true);
    case 2:
        return tensor_max(a[0], dim, false);
    case 3:
        return tensor_min(a[0], dim, false);
    case 4:
        return tensor_logsumexp(a[0], dim, false);
    case 5:
        return tensor_argmax(a[0], dim, false);
    default:
        return tensor_argmin(a[0], dim, false);
    }
}
static tensor *f_softmax(tensor **a, const op_case *c) {
    return c->iparam[1] ? tensor_log_softmax(a[0], (int)c->iparam[0])
                        : tensor_softmax(a[0], (int)c->iparam[0]);
}
static tensor *f_layer_norm(tensor **a, const op_case *c) {
    (void)c;
    return tensor_layer_norm(a[0], a[1], a[2], 1e-5);
}
static tensor *f_cross_entropy(tensor **a, const op_case *c) {
    cross_entropy_options o = {3, 0.1, (loss_reduction)c->iparam[0]};
    return tensor_cross_entropy(a[0], a[1], &o);
}
static tensor *f_topk(tensor **a, const op_case *c) {
    return tensor_topk(a[0], c->iparam[0], c->iparam[1], NULL);
}
static tensor *f_matmul(tensor **a, const op_case *c) {
    (void)c;
    return tensor_matmul(a[0], a[1]);
}
static tensor *f_linear(tensor **a, const op_case *c) {
    (void)c;
    return tensor_linear(a[0], a[1], a[2]);
}
static tensor *f_attention(tensor **a, const op_case *c) {
    rng_generator g = {5, 0};
    attention_options o = {
        c->n_args > 3 ? a[3] : NULL, c->iparam[0], 0, c->fparam[0], c->fparam[0] > 0, &g};
    return tensor_attention(a[0], a[1], a[2], &o);
}
static tensor *f_embedding(tensor **a, const op_case *c) {
    (void)c;
    return tensor_embedding(a[0], a[1]);
}
static tensor *f_gather(tensor **a, const op_case *c) {
    return tensor_gather(a[0], (int)c->iparam[0], a[1]);
}
static tensor *f_index_select(tensor **a, const op_case *c) {
    return tensor_index_select(a[0], (int)c->iparam[0], a[1]);
}
static tensor *f_gelu(tensor **a, const op_case *c) {
    (void)c;
    return tensor_gelu(a[0]);
}
static tensor *f_add(tensor **a, const op_case *c) {
    (void)c;
    return tensor_add(a[0], a[1]);
}
static tensor *f_mul(tensor **a, const op_case *c) {
    (void)c;
    return tensor_mul(a[0], a[1]);
}
static tensor *f_add_gelu(tensor **a, const op_case *c) {
    (void)c;
    return tensor_add_gelu(a[0], a[1]);
}
// exp of x without its first element: contiguous, but not 16-byte aligned.
static tensor *f_exp_shifted(tensor **a, const op_case *c) {
    (void)c;
    return tensor_exp(view_slice(a[0], 0, 1, a[0]->shape[0], 1));
}
static tensor *f_dropout(tensor **a, const op_case *c) {
    return tensor_dropout(a[0], c->fparam[0], true, &(rng_generator){8, 0});
}

#define ARG(...)                                                                                   \
    { .ndim = NDIMS(__VA_ARGS__), .shape = {__VA_ARGS__}, .grad = true }
#define ARG_D(d, ...)                                                                              \
    { .ndim = NDIMS(__VA_ARGS__), .shape = {__VA_ARGS__}, .domain = d, .grad = true }
#define ARG_T(...)                                                                                 \
    {                                                                                              \
        .ndim = NDIMS(__VA_ARGS__), .shape = {__VA_ARGS__}, .layout = LAYOUT_TRANSPOSED,           \
        .grad = true                                                                               \
    }
#define CONST(...)                                                                                 \
    { .ndim = NDIMS(__VA_ARGS__), .shape = {__VA_ARGS__}, .domain = DOMAIN_SMALL_INT }
#define IDS(hi, ...)                                                                               \
    { .ndim = NDIMS(__VA_ARGS__), .shape = {__VA_ARGS__}, .domain = DOMAIN_INDEX, .index_hi = hi }
#define NDIMS(...)                       NDIMS_(__VA_ARGS__, 6, 5, 4, 3, 2, 1, 0)
#define NDIMS_(a, b, c, d, e, f, n, ...) n

static const op_case sized_cases[] = {
    {"sum over dim 0", "sum", 1, {ARG(300, 3, 70)}, {0, 0}, .fn = f_reduce},
    {"mean over dim 1", "mean", 1, {ARG(3, 300, 70)}, {1, 1}, .fn = f_reduce},
    {"max over dim 1", "max", 1, {ARG_D(DOMAIN_DISTINCT, 3, 300, 70)}, {2, 1}, .fn = f_reduce},
    {"min over dim 2", "min", 1, {ARG_D(DOMAIN_DISTINCT, 3, 70, 300)}, {3, 2}, .fn = f_reduce},
    {"logsumexp over dim 2", "logsumexp", 1, {ARG(3, 70, 300)}, {4, 2}, .fn = f_reduce},
    {"argmax over dim 0", "argmax", 1, {ARG_D(DOMAIN_DISTINCT, 300, 70)}, {5, 0}, .fn = f_reduce},
    {"argmin over dim 1", "argmin", 1, {ARG_D(DOMAIN_DISTINCT, 70, 300)}, {6, 1}, .fn = f_reduce},
    {"softmax over dim 0", "softmax", 1, {ARG(500, 70)}, {0, 0}, .fn = f_softmax},
    {"log_softmax over dim 1", "log_softmax", 1, {ARG(70, 500)}, {1, 1}, .fn = f_softmax},
    {"layer_norm d=300",
     "layer_norm",
     3,
     {ARG(7, 30, 300), ARG(300), ARG(300)},
     .fn = f_layer_norm},
    {"cross_entropy 70x1000",
     "cross_entropy",
     2,
     {ARG(70, 1000), IDS(1000, 70)},
     {0},
     .fn = f_cross_entropy},
    {"cross_entropy none",
     "cross_entropy",
     2,
     {ARG(40, 300), IDS(5, 40)},
     {2},
     .fn = f_cross_entropy},
    {"topk 17 of 1000", "topk", 1, {ARG_D(DOMAIN_DISTINCT, 5, 1000)}, {17, 1}, .fn = f_topk},
    {"topk all, smallest", "topk", 1, {ARG_D(DOMAIN_DISTINCT, 4, 333)}, {333, 0}, .fn = f_topk},
    {"matmul folded rows", "matmul", 2, {ARG(3, 65, 130), ARG(130, 33)}, .fn = f_matmul},
    {"matmul batched", "matmul", 2, {ARG(3, 65, 130), ARG_T(3, 130, 33)}, .fn = f_matmul},
    {"matmul broadcast", "matmul", 2, {ARG(2, 1, 20, 30), ARG(3, 30, 10)}, .fn = f_matmul},
    {"linear", "linear", 3, {ARG(4, 50, 96), ARG(120, 96), ARG(120)}, .fn = f_linear},
    {"attention causal",
     "attention",
     3,
     {ARG(2, 3, 40, 16), ARG(2, 3, 50, 16), ARG(2, 3, 50, 24)},
     {1},
     .fn = f_attention},
    {"attention mask, dropout",
     "attention",
     4,
     {ARG(2, 3, 40, 16), ARG(2, 3, 50, 16), ARG(2, 3, 50, 24), CONST(2, 1, 1, 50)},
     {0},
     {0.2},
     .fn = f_attention},
    // The fused kernels (tensor/cuda/cuda_attention.cu) against the CPU's GEMM path: partial
    // tiles, masks, causal with T < S and T > S (rows with no visible key: NaN, as on the CPU),
    // dropout, the largest head dim, and one past it (the unfused path on the GPU).
    {"fused attention, partial tiles",
     "attention",
     3,
     {ARG(2, 3, 37, 20), ARG(2, 3, 53, 20), ARG(2, 3, 53, 13)},
     {0},
     .fn = f_attention},
    {"fused attention, (T, S) mask",
     "attention",
     4,
     {ARG(1, 3, 21, 9), ARG(1, 3, 18, 9), ARG(1, 3, 18, 11), CONST(21, 18)},
     {0},
     .fn = f_attention},
    {"fused attention, causal T < S",
     "attention",
     3,
     {ARG(1, 2, 7, 12), ARG(1, 2, 45, 12), ARG(1, 2, 45, 6)},
     {1},
     .fn = f_attention},
    {"fused attention, causal T > S",
     "attention",
     3,
     {ARG(1, 2, 40, 6), ARG(1, 2, 12, 6), ARG(1, 2, 12, 10)},
     {1},
     .fn = f_attention},
    {"fused attention, dropout, mask, causal",
     "attention",
     4,
     {ARG(2, 3, 30, 16), ARG(2, 3, 34, 16), ARG(2, 3, 34, 24), CONST(2, 1, 1, 34)},
     {1},
     {0.2},
     .fn = f_attention},
    {"fused attention, head dim 128",
     "attention",
     3,
     {ARG(2, 2, 50, 128), ARG(2, 2, 70, 128), ARG(2, 2, 70, 128)},
     {0},
     {0.1},
     .fn = f_attention},
    {"attention, head dim 160 (unfused)",
     "attention",
     3,
     {ARG(1, 2, 20, 160), ARG(1, 2, 24, 160), ARG(1, 2, 24, 160)},
     {0},
     .fn = f_attention},
    {"embedding", "embedding", 2, {ARG(1000, 40), IDS(1000, 7, 30)}, .fn = f_embedding},
    {"gather dim 1", "gather", 2, {ARG(20, 300), IDS(300, 20, 50)}, {1}, .fn = f_gather},
    {"index_select dim 1",
     "index_select",
     2,
     {ARG(4, 500, 6), IDS(500, 300)},
     {1},
     .fn = f_index_select},
    {"gelu 300k", "gelu", 1, {ARG_T(1000, 300)}, .fn = f_gelu},
    {"dropout 300k", "dropout", 1, {ARG(1000, 300)}, .fparam = {0.25}, .fn = f_dropout},
    // rows too few to fill the GPU: two-pass reductions (tensor/cuda/cuda_split.h)
    {"sum over dim 0, split", "sum", 1, {ARG(5000, 7)}, {0, 0}, .fn = f_reduce},
    {"mean over dim 1, split", "mean", 1, {ARG(3, 4000, 5)}, {1, 1}, .fn = f_reduce},
    {"max over dim 1, split", "max", 1, {ARG_D(DOMAIN_DISTINCT, 2, 20000)}, {2, 1}, .fn = f_reduce},
    {"min over dim 0, split", "min", 1, {ARG_D(DOMAIN_DISTINCT, 6000, 3)}, {3, 0}, .fn = f_reduce},
    {"logsumexp over dim 0, split", "logsumexp", 1, {ARG(4000, 5)}, {4, 0}, .fn = f_reduce},
    {"argmax over dim 0, split",
     "argmax",
     1,
     {ARG_D(DOMAIN_DISTINCT, 5000, 3)},
     {5, 0},
     .fn = f_reduce},
    {"argmin over dim 1, split",
     "argmin",
     1,
     {ARG_D(DOMAIN_DISTINCT, 2, 20000)},
     {6, 1},
     .fn = f_reduce},
    {"layer_norm 6400 rows, split weight and bias gradients",
     "layer_norm",
     3,
     {ARG(64, 100, 96), ARG(96), ARG(96)},
     .fn = f_layer_norm},
    // index_add by sorted runs: 2000 ids into 5 rows
    {"embedding, long runs", "embedding", 2, {ARG(5, 40), IDS(5, 40, 50)}, .fn = f_embedding},
    // element-wise fast paths (tensor/cuda/cuda_ew_path.h)
    {"add a bias over rows", "add", 2, {ARG(1000, 300), ARG(300)}, .fn = f_add},
    {"add_gelu, a bias over rows", "add_gelu", 2, {ARG(1000, 300), ARG(300)}, .fn = f_add_gelu},
    {"mul contiguous, a tail", "mul", 2, {ARG(1001, 301), ARG(1001, 301)}, .fn = f_mul},
    {"exp contiguous, unaligned", "exp", 1, {ARG(30001)}, .fn = f_exp_shifted},
};

START_TEST(test_sized_case) {
    const op_case *c = &sized_cases[_i];
    GPU_REQUIRE();
    check_both_types(c);
}
END_TEST

// ---- mixed precision: bf16 and TF32 GEMMs against the CPU's emulation of them ----

// The GEMM path of attention on cuda too (the fused kernels are the default there).
static tensor *f_attention_gemm(tensor **a, const op_case *c) {
    setenv("PETAL_ATTENTION", "unfused", 1);
    tensor *out = f_attention(a, c);
    unsetenv("PETAL_ATTENTION");
    return out;
}

typedef struct {
    op_case c;
    // The GPU rounds what the CPU emulation rounds (its GEMMs' operands). Not so the fused
    // attention under bf16: it rounds flash attention's unnormalised probabilities, not P.
    bool same_rounding;
} precision_case;

static const precision_case precision_cases[] = {
    {{"matmul folded rows", "matmul", 2, {ARG(3, 65, 130), ARG(130, 33)}, .fn = f_matmul}, true},
    {{"matmul batched, both transposed",
      "matmul",
      2,
      {ARG_T(3, 65, 130), ARG_T(3, 130, 33)},
      .fn = f_matmul},
     true},
    {{"matmul broadcast", "matmul", 2, {ARG(2, 1, 20, 30), ARG(3, 30, 10)}, .fn = f_matmul}, true},
    {{"linear", "linear", 3, {ARG(4, 50, 96), ARG(120, 96), ARG(120)}, .fn = f_linear}, true},
    {{"attention causal, GEMM path",
      "attention",
      3,
      {ARG(2, 3, 40, 16), ARG(2, 3, 50, 16), ARG(2, 3, 50, 24)},
      {1},
      .fn = f_attention_gemm},
     true},
    {{"attention causal, fused on cuda",
      "attention",
      3,
      {ARG(2, 3, 40, 16), ARG(2, 3, 50, 16), ARG(2, 3, 50, 24)},
      {1},
      .fn = f_attention},
     false},
};

// The rms of gpu - cpu over the largest |cpu| (at least 1): a rare element that a rounding
// flipped (an attention probability one bf16 unit apart) does not dominate it.
static double scaled_rms_diff(const tensor *gpu, const tensor *cpu) {
    double scale = 1, sum = 0;
    int64_t n = tensor_numel(cpu);
    for (int64_t i = 0; i < n; i++) {
        double d = tensor_get_flat(gpu, i) - tensor_get_flat(cpu, i);
        scale = fmax(scale, fabs(tensor_get_flat(cpu, i)));
        sum += d * d;
    }
    return sqrt(sum / (double)n) / scale;
}

// Case c in f32 under precision p on cuda:0 against the CPU's emulation of p (the same rounded
// operands, sums in another order), forward and then backward, which is called outside the region
// and must still run the nodes' GEMMs in p. Under bf16 the GPU's output must also be nearer the
// emulation than the plain f32 result (in rms), which a GEMM that ignored p would not be; where
// the GPU rounds elsewhere (the fused attention), it must at least be clearly off f32 (f32's own
// differences between the devices are near 1e-7).
static void check_precision_case(const precision_case *pc, petal_precision p) {
    const op_case *c = &pc->c;
    int mark = scope_begin();
    tensor *args[4], *gpu_args[4];
    for (int i = 0; i < c->n_args; i++) {
        args[i] = op_case_arg(c, i, PETAL_F32, 31 + 7 * i);
        gpu_args[i] = same_layout_on(args[i], CUDA0);
    }
    bool grad = grad_mode_set(false);
    tensor *plain = c->fn(args, c);
    grad_mode_set(grad);
    petal_precision prev = precision_set(p);
    tensor *want = c->fn(args, c), *got = c->fn(gpu_args, c);
    precision_set(prev);
    tolerance tol = p == PETAL_PRECISION_BF16 ? (tolerance){1e-2, 1e-2} : (tolerance){2e-3, 2e-3};
    char what[160];
    snprintf(what, sizeof what, "%s (%s) forward", c->name, precision_name(p));
    ck_assert_msg(close_to_cpu(what, got, want, tol), "%s: cuda differs from the emulation", what);
    double to_emulation = scaled_rms_diff(got, want), to_f32 = scaled_rms_diff(got, plain);
    printf("%s: cuda vs emulation %.3g, vs f32 %.3g\n", what, to_emulation, to_f32);
    if (p == PETAL_PRECISION_BF16 && pc->same_rounding)
        ck_assert_msg(to_emulation < to_f32 / 4, "%s: cuda is as near f32 as the emulation", what);
    if (p == PETAL_PRECISION_BF16)
        ck_assert_msg(to_f32 > 1e-5, "%s: cuda is f32 (%.3g from it)", what, to_f32);
    tensor *seed = tensor_empty_like(want);
    tensor_normal_(seed, 0, 1, &(rng_generator){3, 0});
    autograd_backward(want, seed, false);
    autograd_backward(got, tensor_to(seed, CUDA0), false);
    for (int i = 0; i < c->n_args; i++) {
        if (!args[i]->requires_grad) continue;
        snprintf(what, sizeof what, "%s (%s) grad %d", c->name, precision_name(p), i);
        ck_assert_msg(args[i]->grad && gpu_args[i]->grad, "%s: missing", what);
        ck_assert_msg(close_to_cpu(what, gpu_args[i]->grad, args[i]->grad, tol),
                      "%s: cuda differs from the emulation", what);
    }
    scope_end(mark);
}

START_TEST(test_precision_case) {
    GPU_REQUIRE();
    check_precision_case(&precision_cases[_i], PETAL_PRECISION_BF16);
    check_precision_case(&precision_cases[_i], PETAL_PRECISION_TF32);
}
END_TEST

// ---- determinism: every CUDA op gives the same bits on two runs ----

// The output and the gradients of case c's inputs, run on cuda:0 and copied to the host; NULL for
// an input without a gradient. Returns how many tensors it wrote.
static int run_on_cuda(const op_case *c, petal_dtype dtype, tensor **results) {
    tensor *args[4];
    for (int i = 0; i < c->n_args; i++)
        args[i] = same_layout_on(op_case_arg(c, i, dtype, 31 + 7 * i), CUDA0);
    tensor *y = c->fn(args, c);
    int n = 0;
    results[n++] = tensor_to(y, DEVICE_CPU);
    if (!y->requires_grad) return n;
    tensor *seed = tensor_empty_like(y);
    tensor_normal_(seed, 0, 1, &(rng_generator){3, 0});
    autograd_backward(y, seed, false);
    for (int i = 0; i < c->n_args; i++)
        results[n++] = args[i]->grad ? tensor_to(args[i]->grad, DEVICE_CPU) : NULL;
    return n;
}

static void check_repeats(const op_case *c) {
    petal_dtype types[] = {PETAL_F64, PETAL_F32};
    for (int t = 0; t < 2; t++) {
        int mark = scope_begin();
        tensor *first[5], *second[5];
        int n = run_on_cuda(c, types[t], first);
        ck_assert_int_eq(run_on_cuda(c, types[t], second), n);
        for (int k = 0; k < n; k++) {
            ck_assert_msg((first[k] == NULL) == (second[k] == NULL), "%s (%s): result %d", c->name,
                          dtype_name(types[t]), k);
            if (!first[k]) continue;
            ck_assert_msg(
                memcmp(tensor_data(first[k]), tensor_data(second[k]), tensor_nbytes(first[k])) == 0,
                "%s (%s): %s differs between two runs on cuda", c->name, dtype_name(types[t]),
                k == 0 ? "the output" : "a gradient");
        }
        scope_end(mark);
    }
}

START_TEST(test_op_case_repeats) {
    GPU_REQUIRE();
    check_repeats(&op_cases[_i]);
}
END_TEST

START_TEST(test_sized_case_repeats) {
    GPU_REQUIRE();
    check_repeats(&sized_cases[_i]);
}
END_TEST

// ---- Linear's bias inside the GEMM: cuBLASLt's epilogue (tensor/cuda/cuda_linear.cu) ----
#ifdef PETAL_HAVE_CUBLASLT

// Sizes no tile divides (m, n, k not multiples of 8), one row, one input vector, (B, T, C) rows.
static const op_case bias_cases[] = {
    {"linear bias, odd sizes", "linear", 3, {ARG(7, 13), ARG(11, 13), ARG(11)}, .fn = f_linear},
    {"linear bias, one row", "linear", 3, {ARG(1, 37), ARG(29, 37), ARG(29)}, .fn = f_linear},
    {"linear bias, one vector", "linear", 3, {ARG(37), ARG(29, 37), ARG(29)}, .fn = f_linear},
    {"linear bias, (B, T, C)", "linear", 3, {ARG(3, 17, 45), ARG(33, 45), ARG(33)}, .fn = f_linear},
};

// Epilogue GEMMs run on cuda:0 so far (each looks its plan up once); every plan made must have
// an algorithm, or its shape would have silently taken the cuBLAS path.
static int64_t epilogue_runs(void) {
    cuda_linear_cache_stats st = cuda_linear_cache_get_stats(0);
    ck_assert_msg(st.usable == st.entries, "%d of %d plans have no algorithm",
                  st.entries - st.usable, st.entries);
    return st.hits + st.misses;
}

// Forward and backward against the CPU in f32, TF32 and bf16 (the tolerances of the op table and
// of the precision cases), two runs giving the same bits; every forward through the epilogue.
START_TEST(test_linear_bias_epilogue) {
    GPU_REQUIRE();
    const op_case *c = &bias_cases[_i];
    ck_assert_msg(check_case(c, PETAL_F32), "%s (f32): cuda differs from cpu", c->name);
    ck_assert_msg(epilogue_runs() == 1, "%s: %lld epilogue GEMMs, expected 1", c->name,
                  (long long)epilogue_runs());
    precision_case pc = {*c, true};
    check_precision_case(&pc, PETAL_PRECISION_BF16);
    check_precision_case(&pc, PETAL_PRECISION_TF32);
    ck_assert_int_eq(epilogue_runs(), 3);
    check_repeats(c); // f64 (cuBLAS) and f32 (the epilogue)
    ck_assert_int_eq(epilogue_runs(), 5);
}
END_TEST

static tensor *normal_on_cpu(petal_dtype dtype, int ndim, const int64_t *shape, rng_generator *g) {
    tensor *t = tensor_empty(dtype, ndim, shape);
    tensor_normal_(t, 0, 1, g);
    return t;
}

// y = x w^T + b on cuda:0 against the CPU, x (rows, 40) from row `first` of a (first + rows, 40).
static void check_linear_rows(int64_t rows, int64_t first, petal_dtype dtype) {
    int mark = scope_begin();
    rng_generator g = {(uint64_t)rows, 0};
    tensor *xs = normal_on_cpu(dtype, SHAPE(first + rows, 40), &g);
    tensor *w = normal_on_cpu(dtype, SHAPE(24, 40), &g), *b = normal_on_cpu(dtype, SHAPE(24), &g);
    tensor *x = tensor_slice(xs, 0, first, first + rows, 1);
    tensor *gx = tensor_slice(tensor_to(xs, CUDA0), 0, first, first + rows, 1);
    tensor *want = tensor_linear(x, w, b);
    tensor *got = tensor_linear(gx, tensor_to(w, CUDA0), tensor_to(b, CUDA0));
    ck_assert(close_to_cpu("linear", got, want, (tolerance){1e-5, 1e-5}));
    scope_end(mark);
}

static void expect_cache(int64_t hits, int64_t misses, int64_t evictions, int entries) {
    cuda_linear_cache_stats st = cuda_linear_cache_get_stats(0);
    ck_assert_msg(st.hits == hits && st.misses == misses && st.evictions == evictions &&
                      st.entries == entries && st.usable == entries,
                  "cache: %lld hits, %lld misses, %lld evictions, %d entries (%d usable); "
                  "expected %lld, %lld, %lld, %d (all usable)",
                  (long long)st.hits, (long long)st.misses, (long long)st.evictions, st.entries,
                  st.usable, (long long)hits, (long long)misses, (long long)evictions, entries);
}

// One plan per shape, precision and alignment, reused; bounded, the least recently used replaced;
// f64 never enters it.
START_TEST(test_linear_bias_cache) {
    GPU_REQUIRE();
    check_linear_rows(5, 0, PETAL_F32);
    expect_cache(0, 1, 0, 1);
    check_linear_rows(5, 0, PETAL_F32); // the same shape: found
    expect_cache(1, 1, 0, 1);
    check_linear_rows(9, 0, PETAL_F32); // another shape: its own plan
    expect_cache(1, 2, 0, 2);
    check_linear_rows(5, 1, PETAL_F32); // x 160 bytes past an allocation: another alignment
    expect_cache(1, 3, 0, 3);
    petal_precision prev = precision_set(PETAL_PRECISION_TF32);
    check_linear_rows(5, 0, PETAL_F32); // the same shape in TF32
    precision_set(prev);
    expect_cache(1, 4, 0, 4);
    check_linear_rows(5, 0, PETAL_F64); // cuBLAS
    expect_cache(1, 4, 0, 4);
    for (int i = 0; i < LT_CACHE_SLOTS; i++) check_linear_rows(20 + i, 0, PETAL_F32);
    expect_cache(1, 4 + LT_CACHE_SLOTS, 4, LT_CACHE_SLOTS);
    check_linear_rows(5, 0, PETAL_F32); // replaced by then: made again, still right
    expect_cache(1, 5 + LT_CACHE_SLOTS, 5, LT_CACHE_SLOTS);
}
END_TEST

// Without cuBLASLt, Linear takes the cuBLAS path (bias copied, beta = 1) and still matches the
// CPU; the loader says what is missing and what to set.
START_TEST(test_linear_bias_without_cublaslt) {
    GPU_REQUIRE();
    setenv("PETAL_CUBLASLT_LIBRARY", "/nonexistent/libcublasLt.so.13", 1);
    for (int i = 0; i < (int)(sizeof bias_cases / sizeof bias_cases[0]); i++)
        ck_assert_msg(check_case(&bias_cases[i], PETAL_F32), "%s: cuda differs from cpu",
                      bias_cases[i].name);
    ck_assert_int_eq(epilogue_runs(), 0);
    ck_assert_int_eq(cuda_cublaslt_load(), PETAL_ERR_DEVICE);
    const char *msg = petal_error_message();
    ck_assert_msg(strstr(msg, "cannot load cuBLASLt (/nonexistent/libcublasLt.so.13, named by "
                              "PETAL_CUBLASLT_LIBRARY)") &&
                      strstr(msg, "set PETAL_CUBLASLT_LIBRARY"),
                  "%s", msg);
}
END_TEST
#endif

// ---- special values: NaN, infinities, signed zeros and ties, as the CPU treats them ----

static tensor *special_values(petal_dtype dtype) {
    const double nan = NAN, inf = INFINITY;
    double v[] = {1, nan, 3, nan, -inf, -inf, 2,    2,    0.0, -0.0, -0.0, 0.0,
                  5, 5,   5, 5,   -inf, -inf, -inf, -inf, inf, 1,    inf,  -2};
    tensor *t = tensor_from_data(PETAL_F64, SHAPE(6, 4), v);
    tensor *c = tensor_cast(t, dtype);
    tensor_free(t);
    return c;
}

static tensor *f_topk_indices(tensor **a, const op_case *c) {
    tensor *idx;
    tensor_topk(a[0], c->iparam[0], c->iparam[1], &idx);
    return idx;
}

static const op_case special_cases[] = {
    {"max", "max", 1, .iparam = {2, 1}, .fn = f_reduce},
    {"min", "min", 1, .iparam = {3, 1}, .fn = f_reduce},
    {"argmax", "argmax", 1, .iparam = {5, 1}, .fn = f_reduce},
    {"argmin", "argmin", 1, .iparam = {6, 1}, .fn = f_reduce},
    {"argmax over rows", "argmax", 1, .iparam = {5, 0}, .fn = f_reduce},
    {"logsumexp", "logsumexp", 1, .iparam = {4, 1}, .fn = f_reduce},
    {"sum", "sum", 1, .iparam = {0, 1}, .fn = f_reduce},
    {"softmax", "softmax", 1, .iparam = {1, 0}, .fn = f_softmax},
    {"log_softmax", "log_softmax", 1, .iparam = {1, 1}, .fn = f_softmax},
    {"topk largest", "topk", 1, .iparam = {4, 1}, .fn = f_topk},
    {"topk largest, indices", "topk", 1, .iparam = {4, 1}, .fn = f_topk_indices},
    {"topk smallest, indices", "topk", 1, .iparam = {3, 0}, .fn = f_topk_indices},
};

START_TEST(test_special_values) {
    const op_case *c = &special_cases[_i];
    GPU_REQUIRE();
    petal_dtype types[] = {PETAL_F64, PETAL_F32};
    for (int t = 0; t < 2; t++) {
        int mark = scope_begin();
        tensor *x = special_values(types[t]);
        ck_assert_msg(check_args(c, &x, types[t]), "%s (%s) with NaN, inf, -0 and ties", c->name,
                      dtype_name(types[t]));
        scope_end(mark);
    }
}
END_TEST

// ---- fused attention: repeatable, and P never stored ----

typedef struct {
    tensor *o, *gq, *gk, *gv;
} attention_run;

// An attention of ViT-B's sequence and head sizes (2 images of 197 tokens, 4 heads of 64) with a
// padding mask, causal and dropout, forward and backward on cuda:0, the results copied to the host.
static attention_run attention_on_gpu(petal_dtype dtype, size_t *held_after_forward) {
    tensor *in[3];
    for (int i = 0; i < 3; i++) {
        tensor *h = tensor_empty(dtype, SHAPE(2, 4, 197, 64));
        tensor_normal_(h, 0, 1, &(rng_generator){40 + (uint64_t)i, 0});
        in[i] = tensor_set_requires_grad(tensor_to(h, CUDA0), true);
    }
    tensor *mask = tensor_to(tensor_zeros(dtype, SHAPE(2, 1, 1, 197)), CUDA0);
    size_t before = memory_get_stats(CUDA0).current;
    attention_options o = {mask, true, 0, 0.1, true, &(rng_generator){6, 0}};
    tensor *out = tensor_attention(in[0], in[1], in[2], &o);
    if (held_after_forward) *held_after_forward = memory_get_stats(CUDA0).current - before;
    tensor *seed = tensor_empty(dtype, SHAPE(2, 4, 197, 64));
    tensor_normal_(seed, 0, 1, &(rng_generator){3, 0});
    autograd_backward(out, tensor_to(seed, CUDA0), false);
    attention_run r = {tensor_to(out, DEVICE_CPU), tensor_to(in[0]->grad, DEVICE_CPU),
                       tensor_to(in[1]->grad, DEVICE_CPU), tensor_to(in[2]->grad, DEVICE_CPU)};
    return r;
}

static bool same_bits(const char *what, const tensor *a, const tensor *b) {
    size_t n = (size_t)tensor_numel(a) * dtype_size(a->dtype);
    bool same = tensor_is_contiguous(a) && tensor_is_contiguous(b) &&
                memcmp(tensor_data(a), tensor_data(b), n) == 0;
    if (!same) fprintf(stderr, "%s: two runs differ\n", what);
    return same;
}

// No atomics in the fused kernels: two runs give the same bits, output and gradients.
START_TEST(test_fused_attention_deterministic) {
    GPU_REQUIRE();
    petal_dtype types[2] = {PETAL_F32, PETAL_F64};
    for (int t = 0; t < 2; t++) {
        int mark = scope_begin();
        attention_run a = attention_on_gpu(types[t], NULL), b = attention_on_gpu(types[t], NULL);
        ck_assert(same_bits("o", tensor_contiguous(a.o), tensor_contiguous(b.o)));
        ck_assert(same_bits("dq", a.gq, b.gq));
        ck_assert(same_bits("dk", a.gk, b.gk));
        ck_assert(same_bits("dv", a.gv, b.gv));
        scope_end(mark);
    }
}
END_TEST

// The fused path keeps lse (B, H, T) where the GEMM path saving P keeps P (B, H, T, S): after the
// forward, P's bytes less lse's are held; PETAL_ATTENTION=unfused gives the GEMM path on the GPU
// (with recomputation off it saves P rather than rebuilding it in backward), and the two agree
// within the GEMM tolerance.
START_TEST(test_fused_attention_saves_memory) {
    GPU_REQUIRE();
    int mark = scope_begin();
    size_t fused_held, unfused_held;
    attention_run fused = attention_on_gpu(PETAL_F32, &fused_held);
    setenv("PETAL_ATTENTION", "unfused", 1);
    bool recompute = ag_recompute_set(false);
    attention_run unfused = attention_on_gpu(PETAL_F32, &unfused_held);
    ag_recompute_set(recompute);
    unsetenv("PETAL_ATTENTION");
    size_t p_bytes = (size_t)2 * 4 * 197 * 197 * sizeof(float);
    size_t lse_bytes = (size_t)2 * 4 * 197 * sizeof(float);
    fprintf(stderr, "attention forward holds %zu bytes fused, %zu unfused (P: %zu)\n", fused_held,
            unfused_held, p_bytes);
    ck_assert_uint_ge(unfused_held + lse_bytes, fused_held + p_bytes);
    ck_assert(tensors_close("fused vs unfused o", fused.o, unfused.o, 1e-5, 1e-5));
    ck_assert(tensors_close("fused vs unfused dq", fused.gq, unfused.gq, 1e-5, 1e-5));
    ck_assert(tensors_close("fused vs unfused dk", fused.gk, unfused.gk, 1e-5, 1e-5));
    ck_assert(tensors_close("fused vs unfused dv", fused.gv, unfused.gv, 1e-5, 1e-5));
    scope_end(mark);
}
END_TEST

// ---- memory ----

START_TEST(test_allocator_reuse_and_stats) {
    GPU_REQUIRE();
    memory_stats s0 = memory_get_stats(CUDA0);
    size_t nbytes = (size_t)1 << 22;
    tensor *a = tensor_empty_on(CUDA0, PETAL_F32, SHAPE(1024, 1024));
    void *block = a->storage->data;
    memory_stats s1 = memory_get_stats(CUDA0);
    ck_assert_uint_eq(s1.current, s0.current + nbytes);
    ck_assert_int_eq(s1.n_live, s0.n_live + 1);
    ck_assert_uint_ge(s1.peak, s1.current);
    ck_assert_uint_ge(s1.reserved, s0.reserved + nbytes);
    tensor_free(a);
    memory_stats s2 = memory_get_stats(CUDA0);
    ck_assert_uint_eq(s2.current, s0.current);
    ck_assert_uint_eq(s2.reserved, s1.reserved); // the block stays cached
    ck_assert_uint_eq(s2.peak, s1.peak);
    tensor *b = tensor_empty_on(CUDA0, PETAL_F32, SHAPE(1 << 20)); // same size: same block
    ck_assert_ptr_eq(b->storage->data, block);
    ck_assert_uint_eq(memory_get_stats(CUDA0).reserved, s1.reserved);
    tensor_free(b);
    memory_reset_peak(CUDA0);
    ck_assert_uint_eq(memory_get_stats(CUDA0).peak, s0.current);
    memory_empty_cache(CUDA0);
    ck_assert_uint_le(memory_get_stats(CUDA0).reserved, s0.reserved);
}
END_TEST

// ---- copies ----

static bool same_values(const char *what, const tensor *got, const tensor *want) {
    return tensors_close(what, got, want, 0, 0);
}

START_TEST(test_copies_of_views) {
    GPU_REQUIRE();
    int mark = scope_begin();
    tensor *host = tensor_arange(PETAL_F64, 0, 30, 1);
    tensor *grid = tensor_reshape(host, SHAPE(5, 6));
    // host view -> device: a transposed, stepped view arrives as a contiguous copy of its values
    tensor *view = view_transpose(view_slice(grid, 1, 1, 6, 2), 0, 1); // (3, 5)
    tensor *dev = tensor_to(view, CUDA0);
    ck_assert(tensor_is_contiguous(dev) && dev->device.type == PETAL_CUDA);
    ck_assert(same_values("host view -> cuda", dev, view));
    // device view -> host
    tensor *dev_grid = tensor_to(grid, CUDA0);
    tensor *dev_view = view_transpose(view_slice(dev_grid, 0, 1, 5, 3), 0, 1); // (6, 2)
    tensor *back = tensor_to(dev_view, DEVICE_CPU);
    ck_assert(
        same_values("cuda view -> host", back, view_transpose(view_slice(grid, 0, 1, 5, 3), 0, 1)));
    // into a non-contiguous device destination, converting f64 -> f32 on the way
    tensor *dst = tensor_zeros_on(CUDA0, PETAL_F32, SHAPE(6, 5));
    tensor *dst_t = view_transpose(dst, 0, 1); // (5, 6)
    tensor_copy_(dst_t, grid);
    ck_assert(same_values("host -> cuda transposed view", dst_t, grid));
    scope_end(mark);
}
END_TEST

// tensor_move_ (petal train's model move): the same struct, now on cuda with the values of its
// strided view, contiguous; its gradient moved with it; another view of the old storage stays on
// the host with its values; a second move to the same device changes nothing.
START_TEST(test_move_in_place) {
    GPU_REQUIRE();
    int mark = scope_begin();
    tensor *grid = tensor_reshape(tensor_arange(PETAL_F32, 0, 12, 1), SHAPE(3, 4));
    tensor *leaf = tensor_keep(tensor_transpose(grid, 0, 1)); // (4, 3), strided
    tensor *want = tensor_clone_data(leaf);
    tensor *other = tensor_select(grid, 0, 1); // another view of the storage: 4 5 6 7
    leaf->grad = tensor_keep(tensor_full(PETAL_F32, SHAPE(4, 3), 0.5));
    tensor_move_(leaf, CUDA0);
    ck_assert(leaf->device.type == PETAL_CUDA && leaf->storage->device.type == PETAL_CUDA);
    ck_assert(tensor_is_contiguous(leaf) && leaf->offset == 0);
    ck_assert(same_values("moved leaf", leaf, want));
    ck_assert(leaf->grad->device.type == PETAL_CUDA);
    ck_assert_double_eq(tensor_get_flat(leaf->grad, 11), 0.5);
    ck_assert(other->device.type == PETAL_CPU);
    ck_assert_double_eq(tensor_get_flat(other, 2), 6.0);
    tensor_storage *storage = leaf->storage;
    tensor_move_(leaf, CUDA0);
    ck_assert_ptr_eq(leaf->storage, storage);
    tensor_free(leaf);
    scope_end(mark);
}
END_TEST

// Copies larger than the pinned staging buffers, and every dtype conversion the CPU makes.
START_TEST(test_copies_large_and_converted) {
    GPU_REQUIRE();
    int mark = scope_begin();
    tensor *big = tensor_empty(PETAL_F32, SHAPE(3 * 1024 * 1024 + 12345));
    tensor_uniform_(big, -1, 1, &(rng_generator){5, 0});
    tensor *there = tensor_to(big, CUDA0), *again = tensor_to(there, DEVICE_CPU);
    ck_assert_mem_eq(tensor_data(again), tensor_data(big), tensor_nbytes(big));
    int64_t wide[] = {((int64_t)1 << 60) + 1, -((int64_t)1 << 55) - 3, 7};
    tensor *ids = tensor_from_data(PETAL_I64, SHAPE(3), wide);
    ck_assert_mem_eq(tensor_data(tensor_to(tensor_to(ids, CUDA0), DEVICE_CPU)), wide, sizeof wide);
    tensor *x = tensor_empty(PETAL_F32, SHAPE(257));
    tensor_normal_(x, 0, 1000, &(rng_generator){6, 0});
    petal_dtype kinds[] = {PETAL_F64, PETAL_I32, PETAL_I64, PETAL_F16, PETAL_BF16};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        tensor *want = tensor_cast(x, kinds[k]);
        tensor *got = tensor_to(tensor_cast(tensor_to(x, CUDA0), kinds[k]), DEVICE_CPU);
        ck_assert_msg(memcmp(tensor_data(got), tensor_data(want), tensor_nbytes(want)) == 0,
                      "f32 -> %s differs", dtype_name(kinds[k]));
        tensor *round = tensor_to(tensor_cast(tensor_to(want, CUDA0), PETAL_F32), DEVICE_CPU);
        ck_assert(same_values(dtype_name(kinds[k]), round, tensor_cast(want, PETAL_F32)));
    }
    scope_end(mark);
}
END_TEST

// NaN, infinities and values outside an integer's range convert by tensor/dtype_convert.h's
// saturating rule on both devices (C leaves them undefined, and x86 and CUDA differ).
START_TEST(test_float_to_int_saturates) {
    GPU_REQUIRE();
    int mark = scope_begin();
    double edges[] = {NAN,    INFINITY, -INFINITY, 2147483648.0, -2147483649.0,
                      0x1p63, -0x1p64,  -0.0,      0.9999,       -0.9999};
    tensor *x = tensor_from_data(PETAL_F64, SHAPE(10), edges);
    petal_dtype from[] = {PETAL_F64, PETAL_F32}, to[] = {PETAL_I32, PETAL_I64};
    for (int f = 0; f < 2; f++) {
        tensor *src = tensor_cast(x, from[f]), *there = tensor_to(src, CUDA0);
        for (int t = 0; t < 2; t++) {
            tensor *want = tensor_cast(src, to[t]);
            tensor *got = tensor_to(tensor_cast(there, to[t]), DEVICE_CPU);
            ck_assert_msg(memcmp(tensor_data(got), tensor_data(want), tensor_nbytes(want)) == 0,
                          "%s -> %s differs from the CPU", dtype_name(from[f]), dtype_name(to[t]));
        }
    }
    scope_end(mark);
}
END_TEST

// ---- random streams: the same seed gives the same numbers on both devices ----

static void fill_both(tensor *cpu, tensor *gpu, random_kind kind) {
    rng_generator g1 = {11, 4}, g2 = {11, 4};
    if (kind == RANDOM_UNIFORM) {
        tensor_uniform_(cpu, -2, 3, &g1);
        tensor_uniform_(gpu, -2, 3, &g2);
    } else if (kind == RANDOM_NORMAL) {
        tensor_normal_(cpu, 1, 2, &g1);
        tensor_normal_(gpu, 1, 2, &g2);
    } else {
        tensor_trunc_normal_(cpu, 0, 1, -0.5, 2, &g1);
        tensor_trunc_normal_(gpu, 0, 1, -0.5, 2, &g2);
    }
}

START_TEST(test_random_streams_equal) {
    GPU_REQUIRE();
    int mark = scope_begin();
    petal_dtype types[] = {PETAL_F64, PETAL_F32};
    for (int t = 0; t < 2; t++)
        for (int kind = RANDOM_UNIFORM; kind <= RANDOM_TRUNC_NORMAL; kind++) {
            // a transposed destination: element i is still the i-th in row-major order
            tensor *cpu = tensor_empty(types[t], SHAPE(37, 29));
            tensor *gpu = view_transpose(tensor_empty_on(CUDA0, types[t], SHAPE(29, 37)), 0, 1);
            fill_both(cpu, gpu, (random_kind)kind);
            char what[64];
            snprintf(what, sizeof what, "random kind %d (%s)", kind, dtype_name(types[t]));
            // Uniforms are exact; normals go through log, cos and erf, CUDA's and libm's.
            double tol = kind == RANDOM_UNIFORM ? 0 : (t == 0 ? 1e-12 : 1e-6);
            ck_assert(tensors_close(what, gpu, cpu, tol, tol));
        }
    tensor *ones = tensor_ones(PETAL_F32, SHAPE(100, 50));
    tensor *mask_cpu = tensor_dropout(ones, 0.3, true, &(rng_generator){9, 0});
    tensor *mask_gpu = tensor_dropout(tensor_to(ones, CUDA0), 0.3, true, &(rng_generator){9, 0});
    ck_assert(same_values("dropout mask", mask_gpu, mask_cpu));
    scope_end(mark);
}
END_TEST

// ---- AdamW ----

START_TEST(test_adamw_step_equal) {
    GPU_REQUIRE();
    int mark = scope_begin();
    petal_dtype types[] = {PETAL_F64, PETAL_F32};
    for (int t = 0; t < 2; t++) {
        tensor *p = tensor_empty(types[t], SHAPE(33, 31)), *g = tensor_empty_like(p);
        tensor_normal_(p, 0, 1, &(rng_generator){1, 0});
        tensor_normal_(g, 0, 0.1, &(rng_generator){2, 0});
        tensor *ps[2] = {tensor_set_requires_grad(p, true),
                         tensor_set_requires_grad(tensor_to(p, CUDA0), true)};
        adamw_config cfg = ADAMW_DEFAULTS;
        cfg.weight_decay = 0.05;
        optim_adamw *opt[2];
        for (int d = 0; d < 2; d++) {
            opt[d] = adamw_new(&ps[d], 1, cfg);
            for (int step = 0; step < 3; step++) {
                tensor_reset_grad(ps[d]);
                ps[d]->grad = tensor_keep(tensor_to(g, ps[d]->device));
                adamw_step(opt[d]);
            }
        }
        double tol = t == 0 ? 1e-15 : 1e-7; // the same formula, no FMA: equal but for a few bits
        ck_assert(tensors_close("adamw param", ps[1], ps[0], tol, tol));
        ck_assert(tensors_close("adamw m", opt[1]->m[0], opt[0]->m[0], tol, tol));
        ck_assert(tensors_close("adamw v", opt[1]->v[0], opt[0]->v[0], tol, tol));
        for (int d = 0; d < 2; d++) adamw_free(opt[d]);
    }
    scope_end(mark);
}
END_TEST

// ---- NCCL: a world of one rank (the collectives themselves need more GPUs than a test has) ----

START_TEST(test_dist_single_rank) {
    GPU_REQUIRE();
    char path[64];
    snprintf(path, sizeof path, "/tmp/petal-dist-test-%d.id", (int)getpid());
    dist_config cfg = {
        .world_size = 1, .backend = DIST_NCCL, .device = CUDA0, .id_file = path, .timeout_s = 30};
    dist_comm *comm;
    petal_status st = dist_init(&cfg, &comm);
#ifdef PETAL_HAVE_NCCL
    ck_assert_msg(st == PETAL_OK, "dist_init: %s", petal_error_message());
    ck_assert(access(path, F_OK) != 0); // removed by rank 0 (or never written: MPI carried the id)
    ck_assert_int_eq(dist_rank(comm), 0);
    ck_assert_int_eq(dist_world_size(comm), 1);
    int mark = scope_begin();
    tensor *a = tensor_to(tensor_arange(PETAL_F32, 0, 10, 1), CUDA0);
    tensor *b = tensor_to(tensor_arange(PETAL_F64, -3, 3, 0.5), CUDA0);
    tensor *a0 = tensor_to(a, DEVICE_CPU), *b0 = tensor_to(b, DEVICE_CPU);
    ck_assert_int_eq(dist_all_reduce(comm, (tensor *[]){a, b}, 2, DIST_AVG), PETAL_OK);
    ck_assert_int_eq(dist_broadcast(comm, (tensor *[]){a, b}, 2, 0), PETAL_OK);
    ck_assert(same_values("all_reduce + broadcast, one rank", a, a0));
    ck_assert(same_values("all_reduce + broadcast, one rank", b, b0));
    tensor *gathered;
    ck_assert_int_eq(dist_all_gather(comm, b, &gathered), PETAL_OK);
    ck_assert(same_values("all_gather, one rank", gathered, b0));
    tensor_free(gathered);
    scope_end(mark);
    dist_free(comm);
#else
    ck_assert_int_eq(st, PETAL_ERR_DEVICE);
    ck_assert(strstr(petal_error_message(), "without NCCL") != NULL);
#endif
}
END_TEST

// ---- errors ----
//
// aborts_with runs each mistake in a forked child. CUDA cannot be used in a child forked after
// the parent initialised it, so these tests touch no CUDA themselves: the mistakes build their
// CUDA tensors inside the aborting child.

static void add_across_devices(void) {
    tensor *a = tensor_ones(PETAL_F32, SHAPE(2, 2));
    tensor_add(a, tensor_to(a, CUDA0));
}
static void matmul_across_devices(void) {
    tensor *a = tensor_ones(PETAL_F32, SHAPE(2, 2));
    tensor_matmul(tensor_to(a, CUDA0), a);
}
static void index_across_devices(void) {
    tensor_index_select(tensor_zeros_on(CUDA0, PETAL_F32, SHAPE(4, 2)), 0,
                        tensor_zeros(PETAL_I64, SHAPE(2)));
}

static void seed_across_devices(void) {
    tensor *x = tensor_set_requires_grad(tensor_zeros_on(CUDA0, PETAL_F32, SHAPE(3)), true);
    autograd_backward(tensor_exp(x), tensor_ones(PETAL_F32, SHAPE(3)), false);
}

START_TEST(test_device_mismatch_names_both) {
    GPU_REQUIRE();
    ck_assert(aborts_with(add_across_devices,
                          "tensor_add: operands on different devices (cpu and cuda:0)"));
    ck_assert(aborts_with(matmul_across_devices,
                          "tensor_matmul: operands on different devices (cuda:0 and cpu)"));
    ck_assert(aborts_with(index_across_devices,
                          "tensor_index_select: indices on cpu but the tensor on cuda:0"));
    ck_assert(aborts_with(seed_across_devices,
                          "autograd_backward: seed gradient on cpu, the root on cuda:0"));
}
END_TEST

static tensor *ids_on_gpu(const int64_t *ids, int64_t n) {
    return tensor_to(tensor_from_data(PETAL_I64, 1, &n, ids), CUDA0);
}
// Each mistake ends with a call that waits for the device, where a bad index is reported.
static void select_out_of_range(void) {
    tensor_to(tensor_index_select(tensor_zeros_on(CUDA0, PETAL_F32, SHAPE(4, 2)), 0,
                                  ids_on_gpu((int64_t[]){0, 1, 9, -1}, 4)),
              DEVICE_CPU);
}
static void select_at_the_end(void) { // the first index past the end, the off-by-one case
    tensor_to(tensor_index_select(tensor_zeros_on(CUDA0, PETAL_F32, SHAPE(4, 2)), 0,
                                  ids_on_gpu((int64_t[]){3, 4}, 2)),
              DEVICE_CPU);
}
static void embedding_out_of_range(void) {
    tensor_to(tensor_embedding(tensor_zeros_on(CUDA0, PETAL_F32, SHAPE(5, 3)),
                               ids_on_gpu((int64_t[]){4, -2, 0}, 3)),
              DEVICE_CPU);
}
static void target_out_of_range(void) {
    tensor_item(tensor_cross_entropy(tensor_zeros_on(CUDA0, PETAL_F32, SHAPE(2, 3)),
                                     ids_on_gpu((int64_t[]){1, 7}, 2), NULL));
}
// The first bad index in stream order is the one reported, at the backend's synchronize, even
// after good work and a second bad index (of another op) were queued.
static void first_of_two_reported(void) {
    tensor *x = tensor_zeros_on(CUDA0, PETAL_F32, SHAPE(4, 3));
    int64_t shape[] = {4, 1}, rows[] = {2, 0, 1, 5};
    tensor *idx = tensor_to(tensor_from_data(PETAL_I64, 2, shape, rows), CUDA0);
    tensor_gather(x, 1, idx);
    tensor_index_select(x, 0, ids_on_gpu((int64_t[]){1, 2}, 2));
    tensor_index_select(x, 0, ids_on_gpu((int64_t[]){1, 8}, 2));
    backend_get(CUDA0)->synchronize();
}
// index_add by sorted runs (many ids) reports the smallest bad position.
static void many_ids_out_of_range(void) {
    int64_t ids[100];
    for (int i = 0; i < 100; i++) ids[i] = i == 70 ? 12 : (i == 90 ? -1 : i % 5);
    tensor *w = tensor_zeros_on(CUDA0, PETAL_F32, SHAPE(5, 3));
    tensor *src = tensor_to(tensor_ones(PETAL_F32, SHAPE(100, 3)), CUDA0);
    backend_get(CUDA0)->index_add(w, 0, ids_on_gpu(ids, 100), src);
    tensor_to(w, DEVICE_CPU);
}

// Bad indices are caught on the device (never read through) and reported as the CPU reports
// them, the first bad position and its value, at the next call that waits for the device.
START_TEST(test_bad_indices_reported) {
    GPU_REQUIRE();
    ck_assert(aborts_with(select_out_of_range,
                          "index_select: index 9 at position 2 is out of range [0, 4)"));
    ck_assert(aborts_with(select_at_the_end,
                          "index_select: index 4 at position 1 is out of range [0, 4)"));
    ck_assert(aborts_with(embedding_out_of_range,
                          "index_select: index -2 at position 1 is out of range [0, 5)"));
    ck_assert(aborts_with(target_out_of_range, "cross_entropy: target[1] = 7 is outside [0, 3)"));
    ck_assert(
        aborts_with(first_of_two_reported, "gather: index 5 at position 3 is out of range [0, 3)"));
    ck_assert(aborts_with(many_ids_out_of_range,
                          "index_add: index 12 at position 70 is out of range [0, 5)"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("cuda");
    TCase *ops = tcase_with_timeout("op table: cuda vs cpu", 120);
    tcase_add_loop_test(ops, test_op_case, 0, n_op_cases);
    TCase *sized = tcase_with_timeout("larger sizes and special values: cuda vs cpu", 300);
    tcase_add_loop_test(sized, test_sized_case, 0,
                        (int)(sizeof sized_cases / sizeof sized_cases[0]));
    tcase_add_loop_test(sized, test_special_values, 0,
                        (int)(sizeof special_cases / sizeof special_cases[0]));
    TCase *mixed = tcase_with_timeout("bf16 and tf32 GEMMs: cuda vs the cpu emulation", 120);
    tcase_add_loop_test(mixed, test_precision_case, 0,
                        (int)(sizeof precision_cases / sizeof precision_cases[0]));
    TCase *attn = tcase_with_timeout("fused attention", 300);
    tcase_add_test(attn, test_fused_attention_deterministic);
    tcase_add_test(attn, test_fused_attention_saves_memory);
    TCase *repeat = tcase_with_timeout("determinism: two runs on cuda, the same bits", 300);
    tcase_add_loop_test(repeat, test_op_case_repeats, 0, n_op_cases);
    tcase_add_loop_test(repeat, test_sized_case_repeats, 0,
                        (int)(sizeof sized_cases / sizeof sized_cases[0]));
    TCase *lt = tcase_with_timeout("Linear's bias in the GEMM (cuBLASLt)", 120);
#ifdef PETAL_HAVE_CUBLASLT
    tcase_add_loop_test(lt, test_linear_bias_epilogue, 0,
                        (int)(sizeof bias_cases / sizeof bias_cases[0]));
    tcase_add_test(lt, test_linear_bias_cache);
    tcase_add_test(lt, test_linear_bias_without_cublaslt);
#endif
    TCase *mem = tcase_with_timeout("memory and copies", 120);
    tcase_add_test(mem, test_allocator_reuse_and_stats);
    tcase_add_test(mem, test_copies_of_views);
    tcase_add_test(mem, test_move_in_place);
    tcase_add_test(mem, test_copies_large_and_converted);
    tcase_add_test(mem, test_float_to_int_saturates);
    TCase *num = tcase_with_timeout("random, optimizer, NCCL", 120);
    tcase_add_test(num, test_random_streams_equal);
    tcase_add_test(num, test_adamw_step_equal);
    tcase_add_test(num, test_dist_single_rank);
    TCase *err = tcase_with_timeout("errors", 60);
    tcase_add_test(err, test_device_mismatch_names_both);
    tcase_add_test(err, test_bad_indices_reported);
    TCase *all[] = {ops, sized, attn, repeat, mixed, lt, mem, num, err};
    for (int i = 0; i < 9; i++) {
        // The sanitizers (scripts/gpu-check.sh) run the tagged cases: every kernel at small sizes,
        // the fused attention at many tiles, and cuBLASLt's epilogue GEMMs (the bias it reads).
        bool sanitize = all[i] == ops || all[i] == attn || all[i] == lt;
        tcase_set_tags(all[i], sanitize ? "gpu sanitize" : "gpu");
        suite_add_tcase(s, all[i]);
    }
    return gpu_gate_run_suite(s);
}
