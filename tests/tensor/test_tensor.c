// tensor/: creation, views, dtypes, element access, Philox, random fills, scopes, memory.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "petal.h"
#include "tensor/block_cache.h"
#include "tensor/philox.h"
#include "tests/test_util.h"

START_TEST(test_creation) {
    int mark = scope_begin();
    tensor *z = tensor_zeros(PETAL_F32, SHAPE(2, 3));
    tensor *o = tensor_ones(PETAL_F64, SHAPE(4));
    tensor *f = tensor_full(PETAL_I64, SHAPE(2, 2), 7);
    tensor *a = tensor_arange(PETAL_I32, 2, 11, 3);
    tensor *s = tensor_scalar(PETAL_F32, 2.5);
    ck_assert_int_eq(z->ndim, 2);
    ck_assert_int_eq(tensor_numel(z), 6);
    ck_assert(tensor_is_contiguous(z));
    ck_assert_int_eq((int)z->strides[0], 3);
    for (int i = 0; i < 6; i++) ck_assert(tensor_get_flat(z, i) == 0.0);
    for (int i = 0; i < 4; i++) ck_assert(tensor_data_f64(o)[i] == 1.0);
    ck_assert_int_eq(tensor_data_i64(f)[3], 7);
    ck_assert_int_eq((int)tensor_numel(a), 3); // 2, 5, 8
    ck_assert_int_eq(tensor_data_i32(a)[2], 8);
    ck_assert_int_eq(s->ndim, 0);
    ck_assert(tensor_item(s) == 2.5);
    double data[] = {1, 2, 3, 4, 5, 6};
    tensor *d = tensor_from_data(PETAL_F64, SHAPE(3, 2), data);
    ck_assert(tensor_get(d, (int64_t[]){2, 1}) == 6.0);
    scope_end(mark);
}
END_TEST

START_TEST(test_views_share_storage) {
    int mark = scope_begin();
    tensor *t = tensor_arange(PETAL_F64, 0, 24, 1);
    tensor *r = view_reshape(t, SHAPE(2, 3, 4));
    ck_assert_ptr_eq(r->storage, t->storage);
    tensor *p = view_permute(r, (const int[]){2, 0, 1}); // (4, 2, 3)
    ck_assert_int_eq((int)p->shape[0], 4);
    ck_assert_int_eq((int)p->strides[0], 1);
    ck_assert_int_eq((int)p->strides[1], 12);
    ck_assert(!tensor_is_contiguous(p));
    ck_assert(tensor_get(p, (int64_t[]){3, 1, 2}) == 1 * 12 + 2 * 4 + 3);
    ck_assert_ptr_null(view_reshape(p, SHAPE(24))); // no stride expresses it: caller copies
    tensor *q = view_reshape(view_transpose(r, 0, 1), SHAPE(3, 2, 2, 2)); // splits a dim: fine
    ck_assert_ptr_nonnull(q);
    tensor *s = view_slice(t, 0, -10, 100, 3); // 14, 17, 20, 23
    ck_assert_int_eq((int)s->shape[0], 4);
    ck_assert(tensor_get_flat(s, 3) == 23);
    tensor *sel = view_select(r, 1, -1); // r[:, 2, :] -> (2, 4)
    ck_assert(tensor_get(sel, (int64_t[]){1, 3}) == 12 + 8 + 3);
    tensor *e = view_expand(view_unsqueeze(view_select(r, 0, 0), 0), SHAPE(5, 3, 4));
    ck_assert_int_eq((int)e->strides[0], 0);
    ck_assert(tensor_get(e, (int64_t[]){4, 2, 3}) == 11);
    tensor *sq = view_squeeze(view_unsqueeze(t, 1), 1);
    ck_assert_int_eq(sq->ndim, 1);
    tensor *c = view_contiguous(p);
    ck_assert(tensor_is_contiguous(c));
    ck_assert_ptr_ne(c->storage, t->storage);
    double want[24], got[24];
    tensor_to_doubles(p, want);
    tensor_to_doubles(c, got);
    ck_assert_mem_eq(want, got, sizeof want);
    scope_end(mark);
}
END_TEST

START_TEST(test_copy_and_cast) {
    int mark = scope_begin();
    tensor *t = tensor_from_data(PETAL_F64, SHAPE(2, 3), (double[]){-1.5, 0.25, 3, 1e6, -7, 2.75});
    tensor *i = tensor_cast(t, PETAL_I64);
    ck_assert_int_eq(tensor_data_i64(i)[0], -1); // truncation toward zero, like C and torch
    ck_assert_int_eq(tensor_data_i64(i)[3], 1000000);
    tensor *f = tensor_cast(view_transpose(t, 0, 1), PETAL_F32);
    ck_assert(tensor_get(f, (int64_t[]){2, 1}) == 2.75f);
    tensor *dst = tensor_zeros(PETAL_F64, SHAPE(3, 2));
    tensor_copy_(dst, view_transpose(t, 0, 1));
    ck_assert(tensor_get(dst, (int64_t[]){0, 1}) == 1e6);
    tensor_fill_(view_select(dst, 1, 0), 9);
    ck_assert(tensor_get(dst, (int64_t[]){2, 0}) == 9 &&
              tensor_get(dst, (int64_t[]){2, 1}) == 2.75);
    scope_end(mark);
}
END_TEST

START_TEST(test_half_conversions) {
    // Exactly representable values survive the round trip.
    float exact[] = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.9604644775390625e-08f};
    for (size_t k = 0; k < sizeof exact / sizeof exact[0]; k++)
        ck_assert(f16_to_f32(f32_to_f16(exact[k])) == exact[k]);
    ck_assert(isinf(f16_to_f32(f32_to_f16(1e6f))));
    ck_assert(isnan(f16_to_f32(f32_to_f16(NAN))));
    ck_assert_uint_eq(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); // a tie rounds to even
    ck_assert_uint_eq(f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
    ck_assert_uint_eq(f32_to_bf16(1.0f), 0x3f80);
    ck_assert(bf16_to_f32(f32_to_bf16(3.140625f)) == 3.140625f);
    ck_assert_uint_eq(f32_to_bf16(1.0f + 1.0f / 256), 0x3f80); // tie to even
    ck_assert(isnan(bf16_to_f32(f32_to_bf16(NAN))));
    // Every f16 value converts to f32 and back unchanged.
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        ck_assert_uint_eq(f32_to_f16(f), h);
    }
}
END_TEST

// Known-answer tests from the Random123 distribution (kat_vectors, philox4x32_10).
START_TEST(test_philox_known_answers) {
    philox_block a = philox4x32_10_full(0, 0, 0, 0, 0, 0);
    ck_assert_uint_eq(a.v[0], 0x6627e8d5u);
    ck_assert_uint_eq(a.v[1], 0xe169c58du);
    ck_assert_uint_eq(a.v[2], 0xbc57ac4cu);
    ck_assert_uint_eq(a.v[3], 0x9b00dbd8u);
    philox_block b = philox4x32_10_full(~0u, ~0u, ~0u, ~0u, ~0u, ~0u);
    ck_assert_uint_eq(b.v[0], 0x408f276du);
    ck_assert_uint_eq(b.v[1], 0x41c83b0eu);
    ck_assert_uint_eq(b.v[2], 0xa20bc7c6u);
    ck_assert_uint_eq(b.v[3], 0x6d5451fdu);
    philox_block c = philox4x32_10_full(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u,
                                        0xa4093822u, 0x299f31d0u);
    ck_assert_uint_eq(c.v[0], 0xd16cfe09u);
    ck_assert_uint_eq(c.v[1], 0x94fdccebu);
    ck_assert_uint_eq(c.v[2], 0x5001e420u);
    ck_assert_uint_eq(c.v[3], 0x24126ea1u);
}
END_TEST

static void fill_normal_with_threads(int threads, double *out, int64_t n) {
    threads_set(threads);
    rng_generator g = {1234, 0};
    tensor *t = tensor_empty(PETAL_F64, SHAPE(n));
    tensor_normal_(t, 0.0, 1.0, &g);
    tensor_to_doubles(t, out);
    tensor_free(t);
}

START_TEST(test_random_independent_of_threads) {
    enum { N = 100000 };
    double *one = malloc(N * sizeof *one), *two = malloc(N * sizeof *two);
    fill_normal_with_threads(1, one, N);
    fill_normal_with_threads(2, two, N);
    ck_assert_mem_eq(one, two, N * sizeof *one);
    double mean = 0, var = 0;
    for (int i = 0; i < N; i++) mean += one[i] / N;
    for (int i = 0; i < N; i++) var += (one[i] - mean) * (one[i] - mean) / N;
    ck_assert_msg(fabs(mean) < 0.02 && fabs(var - 1) < 0.02, "mean %g var %g", mean, var);
    free(one);
    free(two);
}
END_TEST

START_TEST(test_random_fills) {
    int mark = scope_begin();
    rng_manual_seed(5);
    tensor *u = tensor_empty(PETAL_F32, SHAPE(1000));
    tensor_uniform_(u, -2, 3, NULL);
    tensor *u2 = tensor_empty(PETAL_F32, SHAPE(1000));
    tensor_uniform_(u2, -2, 3, NULL);
    ck_assert(tensor_get_flat(u, 0) != tensor_get_flat(u2, 0)); // the stream advanced
    for (int i = 0; i < 1000; i++)
        ck_assert(tensor_get_flat(u, i) >= -2 && tensor_get_flat(u, i) < 3);
    rng_manual_seed(5);
    tensor *again = tensor_empty(PETAL_F32, SHAPE(1000));
    tensor_uniform_(again, -2, 3, NULL);
    ck_assert_mem_eq(tensor_data(u), tensor_data(again), 4000);
    tensor *tn = tensor_empty(PETAL_F64, SHAPE(20000));
    tensor_trunc_normal_(tn, 0.0, 1.0, -0.5, 1.5, NULL);
    double lo = 1e9, hi = -1e9;
    for (int i = 0; i < 20000; i++) {
        lo = fmin(lo, tensor_get_flat(tn, i));
        hi = fmax(hi, tensor_get_flat(tn, i));
    }
    ck_assert(lo >= -0.5 && hi <= 1.5 && lo < -0.49 && hi > 1.49);
    // nn.Linear(768, 3072): kaiming-uniform with a = sqrt(5) gives bound 1 / sqrt(768).
    tensor *w = tensor_empty(PETAL_F32, SHAPE(3072, 768));
    init_kaiming_uniform_(w, sqrt(5.0), NULL);
    double bound = 1 / sqrt(768.0), m = 0;
    for (int64_t i = 0; i < tensor_numel(w); i++) m = fmax(m, fabs(tensor_data_f32(w)[i]));
    ck_assert(m <= bound && m > 0.999 * bound);
    tensor *x = tensor_empty(PETAL_F64, SHAPE(32, 32, 3, 3));
    init_xavier_uniform_(x, 1.0, NULL); // fans 288 and 288
    double xb = sqrt(6.0 / 576.0), xm = 0;
    for (int64_t i = 0; i < tensor_numel(x); i++) xm = fmax(xm, fabs(tensor_data_f64(x)[i]));
    ck_assert(xm <= xb && xm > 0.99 * xb);
    // A non-contiguous destination receives the same values, in logical order.
    rng_generator g1 = {9, 0}, g2 = {9, 0};
    tensor *c = tensor_empty(PETAL_F64, SHAPE(3, 4));
    tensor *buf = tensor_empty(PETAL_F64, SHAPE(4, 3));
    tensor_normal_(c, 0, 1, &g1);
    tensor_normal_(view_transpose(buf, 0, 1), 0, 1, &g2);
    ck_assert(tensors_close("transposed fill", view_transpose(buf, 0, 1), c, 0, 0));
    scope_end(mark);
}
END_TEST

// The backend's mix op, in place (the momentum encoders' update), gives the bits of
// a * p0 + b * p1 as two scalar products and a sum, in f32 and f64.
START_TEST(test_mix_rounds_as_its_parts) {
    petal_dtype dtypes[] = {PETAL_F32, PETAL_F64};
    for (int d = 0; d < 2; d++) {
        tensor *a = tensor_keep(tensor_empty(dtypes[d], SHAPE(1000, 37)));
        tensor *b = tensor_keep(tensor_empty(dtypes[d], SHAPE(1000, 37)));
        rng_generator g = {.seed = 3};
        tensor_normal_(a, 0, 1, &g);
        tensor_normal_(b, 0, 1, &g);
        int mark = scope_begin();
        tensor *want = tensor_add(tensor_mul_scalar(a, 0.995), tensor_mul_scalar(b, 1.0 - 0.995));
        backend_of(a)->binary(BINARY_MIX, a, a, b, 0.995, 1.0 - 0.995);
        size_t bytes = (size_t)tensor_numel(a) * dtype_size(a->dtype);
        ck_assert_msg(memcmp(tensor_data(a), tensor_data(want), bytes) == 0, "%s mix differs",
                      dtype_name(dtypes[d]));
        scope_end(mark);
        tensor_free(a), tensor_free(b);
    }
}
END_TEST

START_TEST(test_fast_exp_erf) {
    double worst_exp = 0, worst_erf = 0;
    for (int i = -1000000; i <= 1000000; i++) {
        float x = (float)i * 8.7e-5f; // [-87, 87]: below -87.3 the result flushes to 0
        double e = exp((double)x), got = ew_expf(x);
        worst_exp = fmax(worst_exp, fabs(got - e) / e);
        float y = (float)i * 6e-6f; // [-6, 6]
        worst_erf = fmax(worst_erf, fabs(ew_erff(y) - erf((double)y)));
    }
    ck_assert_msg(worst_exp < 2.5e-7, "expf relative error %g", worst_exp);
    ck_assert_msg(worst_erf < 2e-7, "erff absolute error %g", worst_erf);
    ck_assert(ew_expf(-INFINITY) == 0.0f && ew_expf(-100.0f) == 0.0f);
    ck_assert(isinf(ew_expf(100.0f)) && isnan(ew_expf(NAN)));
    ck_assert(ew_erff(0.0f) == 0.0f || fabs(ew_erff(0.0f)) < 2e-7);
}
END_TEST

START_TEST(test_scopes_release_everything) {
    memory_stats before = memory_get_stats(DEVICE_CPU);
    int outer = scope_begin();
    tensor *kept = NULL, *escaped = NULL;
    int inner = scope_begin();
    tensor *a = tensor_ones(PETAL_F32, SHAPE(100, 100));
    tensor *b = view_transpose(a, 0, 1);
    ck_assert_int_eq((int)scope_count(), 2);
    kept = tensor_keep(tensor_zeros(PETAL_F32, SHAPE(10)));
    escaped = scope_escape(tensor_zeros(PETAL_F32, SHAPE(20)));
    tensor_free(a); // freeing early is allowed; the view keeps the storage alive
    ck_assert(tensor_get_flat(b, 0) == 1.0);
    scope_end(inner);
    ck_assert_int_eq((int)scope_count(), 1); // the escaped tensor now belongs to the outer scope
    ck_assert(tensor_get_flat(escaped, 19) == 0.0);
    scope_end(outer);
    ck_assert(tensor_get_flat(kept, 9) == 0.0);
    tensor_free(kept);
    memory_stats after = memory_get_stats(DEVICE_CPU);
    ck_assert_uint_eq(after.current, before.current);
    ck_assert_int_eq((int)after.n_live, (int)before.n_live);
    ck_assert(after.peak >= before.current + 40000);
}
END_TEST

static void end_wrong_scope(void) {
    int a = scope_begin();
    scope_begin();
    scope_end(a);
}

static void read_out_of_range(void) {
    tensor *t = tensor_zeros(PETAL_F32, SHAPE(2, 3));
    tensor_get(t, (int64_t[]){1, 3});
}

static void reshape_wrong_size(void) {
    view_reshape(tensor_zeros(PETAL_F32, SHAPE(2, 3)), SHAPE(4, -1));
}

static void data_of_wrong_dtype(void) {
    tensor_data_f64(tensor_zeros(PETAL_F32, SHAPE(2)));
}

START_TEST(test_errors_name_the_problem) {
    ck_assert(aborts_with(end_wrong_scope, "scope_end(1): the innermost open scope is 2"));
    ck_assert(aborts_with(read_out_of_range, "index 3 out of range for dim 1 of size 3"));
    ck_assert(aborts_with(reshape_wrong_size, "cannot infer -1 in [4, -1] for 6 elements"));
    ck_assert(aborts_with(data_of_wrong_dtype, "the tensor is f32, not f64"));
}
END_TEST

static int raw_allocs, raw_frees;
static size_t raw_bytes; // asked of counting_alloc and not yet given back
static void *counting_alloc(size_t n) {
    raw_allocs++;
    raw_bytes += n;
    return malloc(n);
}
static void counting_free(void *p, size_t n) {
    raw_frees++;
    raw_bytes -= n; // raw_free must be told the size raw_alloc was asked for
    free(p);
}

START_TEST(test_block_cache_reuses_blocks) {
    block_cache c = BLOCK_CACHE_INIT(counting_alloc, counting_free, 1024, false);
    size_t cap1, cap2, cap3;
    void *a = block_cache_alloc(&c, 100000, &cap1);
    ck_assert(cap1 >= 100000 && cap1 <= 112500); // within one class (12.5%)
    block_cache_free(&c, a, cap1);
    void *b = block_cache_alloc(&c, 99000, &cap2); // same class: the same block comes back
    ck_assert_ptr_eq(a, b);
    ck_assert_int_eq(raw_allocs, 1);
    void *small = block_cache_alloc(&c, 100, &cap3); // below min_cached: straight to malloc
    block_cache_free(&c, small, cap3);
    ck_assert_int_eq(raw_frees, 1);
    block_cache_free(&c, b, cap2);
    block_cache_empty(&c);
    ck_assert_uint_eq(c.reserved, 0);
    ck_assert_int_eq(raw_allocs, raw_frees);
    ck_assert_uint_eq(raw_bytes, 0);
}
END_TEST

static size_t resident_bytes(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%ld %ld", &pages, &resident), 2);
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

// Zeros cost no memory until written (fresh pages), and a reused block is cleared: a model built
// for loading (`petal params`) stays small, and zeros are zeros whichever way they came.
START_TEST(test_zeros_touch_no_page_until_written) {
    int64_t n = (int64_t)64 << 20; // 256 MiB of f32
    size_t before = resident_bytes();
    tensor *z = tensor_zeros(PETAL_F32, SHAPE(n));
    ck_assert_uint_lt(resident_bytes() - before, (size_t)16 << 20);
    float *d = tensor_data_f32(z);
    ck_assert(d[0] == 0 && d[n / 2] == 0 && d[n - 1] == 0);
    for (int64_t i = 0; i < n; i += 4096) d[i] = 1.0f;
    tensor_free(z); // back to the block cache, dirty
    tensor *again = tensor_zeros(PETAL_F32, SHAPE(n));
    ck_assert_ptr_eq(tensor_data_f32(again), d); // the same block, cleared
    for (int64_t i = 0; i < n; i += 4096) ck_assert(tensor_data_f32(again)[i] == 0);
    tensor *small = tensor_zeros(PETAL_F32, SHAPE(100)); // below the cache: malloc, memset
    for (int i = 0; i < 100; i++) ck_assert(tensor_data_f32(small)[i] == 0);
    tensor_free(small);
    tensor_free(again);
}
END_TEST

// A step that holds n blocks of `size` bytes at once, then frees them.
static void cache_step(block_cache *c, size_t size, int n) {
    void *p[4];
    size_t cap[4];
    for (int i = 0; i < n; i++) p[i] = block_cache_alloc(c, size, &cap[i]);
    for (int i = 0; i < n; i++) block_cache_free(c, p[i], cap[i]);
}

// Two alternating steps with different block sizes (training and evaluation, or the two models of
// `petal bench block --petl`): after one round each finds its blocks cached, although the cache
// then holds, unused, as many bytes as the other step asks for.
START_TEST(test_block_cache_keeps_blocks_of_alternating_steps) {
    block_cache c = BLOCK_CACHE_INIT(counting_alloc, counting_free, 1024, false);
    raw_allocs = raw_frees = 0;
    for (int round = 0; round < 5; round++) {
        cache_step(&c, 100000, 4);
        cache_step(&c, 400000, 1);
    }
    ck_assert_int_eq(raw_allocs, 5);
    ck_assert_int_eq(raw_frees, 0);
    ck_assert_uint_le(c.reserved, 2 * c.peak_in_use);
    block_cache_empty(&c);
    ck_assert_int_eq(raw_allocs, raw_frees);
}
END_TEST

// Requests of ever larger sizes never fit a cached block; the cache gives cached blocks back
// (largest first) rather than reserve more than twice the peak in use.
START_TEST(test_block_cache_bounds_its_reserve) {
    block_cache c = BLOCK_CACHE_INIT(counting_alloc, counting_free, 1024, false);
    raw_allocs = raw_frees = 0;
    for (int i = 0; i < 12; i++) {
        cache_step(&c, 100000 * (size_t)(i + 1), 1);
        ck_assert_uint_le(c.reserved, 2 * c.peak_in_use);
        ck_assert_uint_eq(c.reserved, c.cached);
    }
    ck_assert_int_eq(raw_allocs, 12);
    ck_assert_int_gt(raw_frees, 0);
    block_cache_empty(&c);
    ck_assert_uint_eq(c.reserved, 0);
    ck_assert_int_eq(raw_allocs, raw_frees);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_with_timeout("core", 30);
    tcase_add_test(tc, test_creation);
    tcase_add_test(tc, test_zeros_touch_no_page_until_written);
    tcase_add_test(tc, test_views_share_storage);
    tcase_add_test(tc, test_copy_and_cast);
    tcase_add_test(tc, test_half_conversions);
    tcase_add_test(tc, test_philox_known_answers);
    tcase_add_test(tc, test_random_independent_of_threads);
    tcase_add_test(tc, test_random_fills);
    tcase_add_test(tc, test_fast_exp_erf);
    tcase_add_test(tc, test_mix_rounds_as_its_parts);
    tcase_add_test(tc, test_scopes_release_everything);
    tcase_add_test(tc, test_errors_name_the_problem);
    tcase_add_test(tc, test_block_cache_reuses_blocks);
    tcase_add_test(tc, test_block_cache_keeps_blocks_of_alternating_steps);
    tcase_add_test(tc, test_block_cache_bounds_its_reserve);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
