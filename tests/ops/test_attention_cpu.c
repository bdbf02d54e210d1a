// tests/ops: the CPU's fused attention (tensor/cpu/cpu_attention.c and the path micro-kernels of
// tensor/cpu/cpu_path_attention.h) against tensor_attention's GEMM path (PETAL_ATTENTION=unfused,
// OpenBLAS and the softmax kernels), output and gradients, on every CPU path this machine runs:
// tiles cut short in rows (T, S not multiples of the tile's rows) and columns (head dims below,
// at and between vectors), broadcast and strided masks, causal rows with no visible key (NaN as
// the GEMM path), dropout with the GEMM path's mask; results independent of the thread count;
// heads too long for the kernels' buffers left to the GEMM path; the packed op over a qkv
// projection (contiguous, rows padded, and a layout the kernels do not take) against the same op on
// the GEMM path, its gradient written into one tensor.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "petal.h"
#include "tensor/cpu/cpu_path.h"
#include "tests/ops/attention_case.h"
#include "tests/test_util.h"

static const attn_case cases[] = {
    {"one query", 1, 1, 1, 5, 4, 4, MASK_NONE, false, 0},
    {"ragged heads below a vector", 2, 3, 13, 29, 5, 3, MASK_NONE, false, 0},
    {"ragged heads across vectors", 1, 2, 7, 33, 20, 36, MASK_KEYS, false, 0},
    {"ViT-B head", 1, 2, 197, 197, 64, 64, MASK_NONE, false, 0},
    {"BERT cross-attention", 2, 2, 35, 197, 64, 64, MASK_KEYS, false, 0},
    {"full mask", 1, 3, 21, 18, 9, 11, MASK_FULL, false, 0},
    {"strided mask", 2, 2, 12, 17, 8, 8, MASK_STRIDED, false, 0},
    {"causal KV cache (T < S)", 1, 2, 7, 45, 12, 6, MASK_NONE, true, 0},
    {"causal T > S (rows with no key)", 1, 2, 35, 20, 6, 10, MASK_NONE, true, 0},
    {"dropout", 2, 2, 33, 29, 10, 7, MASK_NONE, false, 0.3},
    {"dropout, mask, causal", 2, 3, 30, 34, 16, 24, MASK_FULL, true, 0.2},
    {"head dim 128", 1, 2, 18, 20, 128, 128, MASK_KEYS, false, 0.1},
};

static tensor *random_tensor(int ndim, const int64_t *shape, uint64_t seed, double std) {
    tensor *t = tensor_empty(PETAL_F32, ndim, shape);
    tensor_normal_(t, 0, std, &(rng_generator){seed, 0});
    return t;
}

// MASK_KEYS: BERT's padding (-10000 on batch 1's last 4 keys); MASK_FULL: random (T, S);
// MASK_STRIDED: random (T, S) read through a transposed (S, T) tensor (keys 1 element apart no
// longer).
static tensor *make_mask(const attn_case *c) {
    switch (c->mask) {
    case MASK_NONE:
        return NULL;
    case MASK_KEYS: {
        tensor *m = tensor_zeros(PETAL_F32, SHAPE(c->b, 1, 1, c->s));
        for (int64_t j = 0; c->b > 1 && j < 4; j++) tensor_data_f32(m)[c->s + c->s - 1 - j] = -1e4f;
        return m;
    }
    case MASK_FULL:
        return random_tensor(SHAPE(c->t, c->s), 17, 2.0);
    case MASK_STRIDED:
        return tensor_transpose(random_tensor(SHAPE(c->s, c->t), 18, 2.0), 0, 1);
    case MASK_DEAD_ROW: // test_attention_tile's
        break;
    }
    return NULL;
}

// Whether attention output `out` came from the fused kernels: their node keeps the rows'
// log-sum-exp, (B, H, T), in slot 4 (until the backward frees it), where the GEMM path keeps
// nothing or the mask. Without this a comparison with the GEMM path would pass on the GEMM path
// against itself.
static bool took_fused(const tensor *out) {
    const tensor *lse = out->grad_fn->saved[4];
    return lse && lse->ndim == 3;
}

typedef struct {
    tensor *o, *g[3];
    bool fused; // took_fused, read before the backward
} attn_result;

// Output and the gradients of q, k, v for one case on the path PETAL_ATTENTION picks.
static attn_result run_case(const attn_case *c, bool fused) {
    setenv("PETAL_ATTENTION", fused ? "fused" : "unfused", 1);
    tensor *q = random_tensor(SHAPE(c->b, c->h, c->t, c->d), 1, 1.5);
    tensor *k = random_tensor(SHAPE(c->b, c->h, c->s, c->d), 2, 1.5);
    tensor *v = random_tensor(SHAPE(c->b, c->h, c->s, c->dv), 3, 1.0);
    tensor *in[3] = {q, k, v};
    for (int i = 0; i < 3; i++) tensor_set_requires_grad(in[i], true);
    rng_generator gen = {9, 4};
    attention_options o = {make_mask(c), c->causal, 0, c->dropout, c->dropout > 0, &gen};
    attn_result r = {tensor_attention(q, k, v, &o), {NULL}, false};
    r.fused = took_fused(r.o);
    autograd_backward(r.o, random_tensor(SHAPE(c->b, c->h, c->t, c->dv), 4, 1.0), false);
    for (int i = 0; i < 3; i++) r.g[i] = in[i]->grad;
    return r;
}

static bool same_bits(const tensor *a, const tensor *b) {
    tensor *ac = tensor_contiguous((tensor *)a), *bc = tensor_contiguous((tensor *)b);
    return memcmp(tensor_data(ac), tensor_data(bc), (size_t)tensor_nbytes(ac)) == 0;
}

static void check_case(const attn_case *c, cpu_path path) {
    int mark = scope_begin();
    attn_result want = run_case(c, false), got = run_case(c, true);
    ck_assert_msg(got.fused && !want.fused, "%s: not the paths compared", c->name);
    const char *part[4] = {"output", "dq", "dk", "dv"};
    const tensor *g[4] = {got.o, got.g[0], got.g[1], got.g[2]};
    const tensor *w[4] = {want.o, want.g[0], want.g[1], want.g[2]};
    for (int i = 0; i < 4; i++) {
        char what[160];
        snprintf(what, sizeof what, "%s (%s) %s", c->name, cpu_path_name(path), part[i]);
        ck_assert_msg(tensors_close_scaled(what, g[i], w[i], 2e-6), "%s", what);
    }
    scope_end(mark);
}

START_TEST(test_fused_matches_unfused) {
    for (int p = 0; p < CPU_PATH_COUNT; p++) {
        if (!cpu_path_supported((cpu_path)p)) continue;
        ck_assert_int_eq(cpu_path_set((cpu_path)p), PETAL_OK);
        check_case(&cases[_i], (cpu_path)p);
    }
}
END_TEST

// Each head is one thread's, in one order: one thread or two, the same bits.
START_TEST(test_threads_same_bits) {
    const attn_case *c = &cases[10];
    int mark = scope_begin();
    threads_set(1);
    attn_result one = run_case(c, true);
    threads_set(2);
    attn_result two = run_case(c, true);
    ck_assert(one.fused && two.fused);
    ck_assert(same_bits(one.o, two.o));
    for (int i = 0; i < 3; i++) ck_assert_msg(same_bits(one.g[i], two.g[i]), "gradient %d", i);
    scope_end(mark);
}
END_TEST

// A head of more than 2^22 scores takes the GEMM path (the fused kernels would hold it whole per
// thread): that node keeps no log-sum-exp, which the fused one does.
START_TEST(test_long_rows_take_gemm_path) {
    int mark = scope_begin();
    int64_t sizes[2] = {4096, ((int64_t)1 << 22) + 1};
    for (int i = 0; i < 2; i++) {
        tensor *q = tensor_set_requires_grad(random_tensor(SHAPE(1, 1, 1, 2), 1, 1.0), true);
        tensor *k = random_tensor(SHAPE(1, 1, sizes[i], 2), 2, 1.0);
        tensor *y = tensor_attention(q, k, k, NULL);
        ck_assert_str_eq(y->grad_fn->op, "attention");
        ck_assert_msg(took_fused(y) == (i == 0), "%lld keys", (long long)sizes[i]);
    }
    scope_end(mark);
}
END_TEST

// ---- the packed op ----

typedef enum { QKV_CONTIGUOUS, QKV_PADDED_ROWS, QKV_COLUMN_MAJOR } qkv_layout;

// qkv (B, T, 3 H D) in a layout: contiguous; rows 3 H D + 8 apart (a slice of a wider tensor);
// or with its last dim strided (a transposed tensor, which the kernels do not take).
static tensor *make_qkv(int64_t b, int64_t t, int64_t width, qkv_layout layout) {
    if (layout == QKV_CONTIGUOUS) return random_tensor(SHAPE(b, t, width), 5, 1.5);
    if (layout == QKV_PADDED_ROWS)
        return tensor_slice(random_tensor(SHAPE(b, t, width + 8), 5, 1.5), 2, 0, width, 1);
    return tensor_transpose(random_tensor(SHAPE(b, width, t), 5, 1.5), 1, 2);
}

static void packed_grads(qkv_layout layout, bool fused, tensor **y, tensor **grad) {
    setenv("PETAL_ATTENTION", fused ? "fused" : "unfused", 1);
    int64_t b = 2, t = 19, heads = 3, hd = 20;
    tensor *base = make_qkv(b, t, 3 * heads * hd, layout);
    tensor *leaf = tensor_set_requires_grad(tensor_detach(base), true);
    tensor *mask = tensor_zeros(PETAL_F32, SHAPE(b, 1, 1, t));
    tensor_data_f32(mask)[t + t - 1] = -1e4f;
    rng_generator gen = {3, 0};
    attention_options o = {mask, false, 0, 0.1, true, &gen};
    *y = tensor_attention_packed(leaf, heads, &o);
    autograd_backward(*y, random_tensor(SHAPE(b, t, heads * hd), 6, 1.0), false);
    *grad = leaf->grad;
}

START_TEST(test_packed_matches_unfused) {
    static const char *const names[] = {"contiguous", "padded rows", "column-major"};
    qkv_layout layout = (qkv_layout)_i;
    int mark = scope_begin();
    tensor *y_want, *g_want, *y_got, *g_got;
    packed_grads(layout, false, &y_want, &g_want);
    packed_grads(layout, true, &y_got, &g_got);
    char what[2][96];
    snprintf(what[0], sizeof what[0], "packed qkv (%s) output", names[layout]);
    snprintf(what[1], sizeof what[1], "packed qkv (%s) gradient", names[layout]);
    bool fused = layout != QKV_COLUMN_MAJOR; // the kernels take rows contiguous only
    ck_assert((strcmp(y_got->grad_fn->op, "attention_packed") == 0) == fused);
    ck_assert_str_ne(y_want->grad_fn->op, "attention_packed");
    ck_assert_int_eq(y_got->ndim, 3);
    ck_assert(tensor_is_contiguous(y_got));
    ck_assert_msg(tensors_close_scaled(what[0], y_got, y_want, 2e-6), "%s", what[0]);
    ck_assert_msg(tensors_close_scaled(what[1], g_got, g_want, 2e-6), "%s", what[1]);
    scope_end(mark);
}
END_TEST

// The fused packed op's gradient is one node writing the whole (B, T, 3 H D) tensor: none of the
// select / permute / reshape nodes of the view chain.
START_TEST(test_packed_one_node) {
    int mark = scope_begin();
    tensor *qkv = tensor_set_requires_grad(random_tensor(SHAPE(1, 9, 3 * 2 * 8), 5, 1.0), true);
    tensor *y = tensor_attention_packed(qkv, 2, NULL);
    ck_assert_str_eq(y->grad_fn->op, "attention_packed");
    ck_assert_ptr_eq(y->grad_fn->in[0].leaf, qkv);
    setenv("PETAL_ATTENTION", "unfused", 1);
    tensor *chain = tensor_attention_packed(qkv, 2, NULL);
    ck_assert_str_ne(chain->grad_fn->op, "attention_packed");
    scope_end(mark);
}
END_TEST

static void packed_bad_width(void) {
    tensor_attention_packed(tensor_zeros(PETAL_F32, SHAPE(1, 4, 20)), 3, NULL);
}

START_TEST(test_packed_errors) {
    ck_assert(aborts_with(packed_bad_width, "qkv [1, 4, 20] is not (B, T, 3 H D) for 3 heads"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("attention_cpu");
    TCase *tc = tcase_with_timeout("fused", 60);
    tcase_add_loop_test(tc, test_fused_matches_unfused, 0, (int)(sizeof cases / sizeof *cases));
    tcase_add_test(tc, test_threads_same_bits);
    tcase_add_test(tc, test_long_rows_take_gemm_path);
    tcase_add_loop_test(tc, test_packed_matches_unfused, QKV_CONTIGUOUS, QKV_COLUMN_MAJOR + 1);
    tcase_add_test(tc, test_packed_one_node);
    tcase_add_test(tc, test_packed_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
