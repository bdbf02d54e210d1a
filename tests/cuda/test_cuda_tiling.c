// tests/cuda, the index and tiling math of the CUDA kernels, run on the CPU everywhere (CI has no
// GPU): the chunking of the two-pass reductions (tensor/cuda/cuda_split.h), checked for its
// invariants and by running the two-pass algorithm with the kernels' chunks on the CPU against
// the CPU backend's reductions; and the element-wise kernels' paths (tensor/cuda/cuda_ew_path.h):
// which shapes, strides and alignments take which kernel, and the rows path's offsets against
// the general iteration's; and index_add by sorted runs (tensor/cuda/cuda_index_runs.h), run on
// the CPU against the CPU backend's index_add, bit for bit.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "petal.h"
#include "tensor/backend.h"
#include "tensor/cuda/cuda_ew_path.h"
#include "tensor/cuda/cuda_index_runs.h"
#include "tensor/cuda/cuda_split.h"
#include "tests/test_util.h"

// ---- the chunking ----

// Every element of a row falls in exactly one chunk, no chunk is empty or (when split) shorter
// than SPLIT_MIN_CHUNK but the last, and the split stops once the grid reaches its target.
START_TEST(test_split_covers_each_element_once) {
    const int64_t blocks[] = {1, 3, 24, 100, 527, 528, 4000};
    const int64_t lens[] = {0, 1, 63, 127, 128, 129, 1000, 6304, 100003, 1 << 20};
    for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; bi++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            int64_t rb = blocks[bi], len = lens[li];
            split_plan p = split_plan_for(rb, len);
            ck_assert_int_ge(p.chunks, 1);
            if (rb >= SPLIT_TARGET_BLOCKS || len < 2 * SPLIT_MIN_CHUNK) {
                ck_assert_msg(p.chunks == 1, "blocks %lld len %lld split in %lld", (long long)rb,
                              (long long)len, (long long)p.chunks);
                continue;
            }
            ck_assert_msg(p.chunks > 1, "blocks %lld len %lld not split", (long long)rb,
                          (long long)len);
            ck_assert_int_ge(p.chunk_len, SPLIT_MIN_CHUNK);
            // no more chunks than needed to reach the target
            ck_assert_int_lt(rb * (p.chunks - 1), SPLIT_TARGET_BLOCKS);
            int64_t next = 0;
            for (int64_t k = 0; k < p.chunks; k++) {
                int64_t b, e;
                split_bounds(p, len, k, &b, &e);
                ck_assert_int_eq(b, next);
                ck_assert_int_gt(e, b); // never empty
                next = e;
            }
            ck_assert_int_eq(next, len);
        }
}
END_TEST

// A (6304, 768) LayerNorm gradient: 24 column tiles become at least the target's blocks.
START_TEST(test_split_fills_gpu_for_layer_norm) {
    split_plan p = split_plan_for(24, 6304);
    ck_assert_int_ge(24 * p.chunks, SPLIT_TARGET_BLOCKS);
    ck_assert_int_eq(p.chunks, 22);
    ck_assert_int_eq(p.chunk_len, 287);
    ck_assert_int_eq(split_row(22 * 768 - 1, 768), 767);
    ck_assert_int_eq(split_chunk(22 * 768 - 1, 768), 21);
}
END_TEST

// ---- the two-pass algorithm on the CPU ----

// The sum and the (value, first index) maximum of column c of x (len, cols), by the kernels'
// two passes: partials per (chunk, column), then combined in chunk order.
static void two_pass_column(const tensor *x, int64_t c, split_plan p, double *sum, double *max,
                            int64_t *argmax) {
    int64_t len = x->shape[0], cols = x->shape[1];
    double part_sum[512], part_max[512];
    int64_t part_arg[512];
    ck_assert_int_le(p.chunks, 512);
    for (int64_t k = 0; k < p.chunks; k++) {
        int64_t b, e;
        split_bounds(p, len, k, &b, &e);
        part_sum[k] = 0, part_max[k] = -INFINITY, part_arg[k] = -1;
        for (int64_t r = b; r < e; r++) {
            double v = tensor_get_flat(x, r * cols + c);
            part_sum[k] += v;
            if (part_arg[k] < 0 || v > part_max[k]) part_max[k] = v, part_arg[k] = r;
        }
    }
    *sum = part_sum[0], *max = part_max[0], *argmax = part_arg[0];
    for (int64_t k = 1; k < p.chunks; k++) {
        *sum += part_sum[k];
        if (part_max[k] > *max) *max = part_max[k], *argmax = part_arg[k]; // ties: earlier chunk
    }
}

// Sums over dim 0 equal the CPU's within f64 rounding; max and argmax are the CPU's exactly,
// ties included (values drawn from few integers make many).
START_TEST(test_two_pass_equals_cpu_reduction) {
    int mark = scope_begin();
    const int64_t len = 5000, cols = 7;
    tensor *x = tensor_empty(PETAL_F64, SHAPE(len, cols));
    tensor_normal_(x, 0, 1, &(rng_generator){1, 0});
    tensor *ties = tensor_cast(tensor_cast(tensor_mul_scalar(x, 2), PETAL_I32), PETAL_F64);
    tensor *inputs[] = {x, ties};
    for (int in = 0; in < 2; in++) {
        tensor *sum = tensor_sum(inputs[in], 0, false), *max = tensor_max(inputs[in], 0, false);
        tensor *arg = tensor_argmax(inputs[in], 0, false);
        split_plan p = split_plan_for(1, len);
        ck_assert_int_gt(p.chunks, 1);
        double worst = 0;
        for (int64_t c = 0; c < cols; c++) {
            double s, m;
            int64_t a;
            two_pass_column(inputs[in], c, p, &s, &m, &a);
            double want = tensor_get_flat(sum, c);
            worst = fmax(worst, fabs(s - want) / fmax(1, fabs(want)));
            ck_assert_double_eq(m, tensor_get_flat(max, c));
            ck_assert_int_eq(a, (int64_t)tensor_get_flat(arg, c));
        }
        printf("two-pass sum over %lld rows in %lld chunks: worst relative difference %.3g\n",
               (long long)len, (long long)p.chunks, worst);
        ck_assert_double_le(worst, 1e-13);
    }
    scope_end(mark);
}
END_TEST

// ---- element-wise paths ----

static ew_path path_of(tensor *out, tensor *a, tensor *b) {
    const tensor *ops[] = {out, a, b};
    cpu_iter it;
    cpu_iter_build(&it, b ? 3 : 2, ops);
    return ew_path_choose(&it, dtype_size(out->dtype));
}

START_TEST(test_ew_path_choice) {
    int mark = scope_begin();
    petal_dtype types[] = {PETAL_F32, PETAL_F64, PETAL_I32, PETAL_I64};
    for (int t = 0; t < 4; t++) {
        tensor *x = tensor_zeros(types[t], SHAPE(6, 10)), *y = tensor_zeros(types[t], SHAPE(6, 10));
        tensor *out = tensor_zeros(types[t], SHAPE(6, 10)),
               *bias = tensor_zeros(types[t], SHAPE(10));
        // contiguous and 64-byte aligned (the CPU allocator's): 16-byte packs
        ck_assert_int_eq(path_of(out, x, y).kind, EW_PATH_FLAT);
        ck_assert_int_eq(path_of(out, x, NULL).kind, EW_PATH_FLAT);
        // a bias over rows
        ew_path p = path_of(out, x, bias);
        ck_assert_int_eq(p.kind, EW_PATH_ROWS);
        ck_assert_int_eq(p.cols, 10);
        ck_assert(!p.repeat[1] && p.repeat[2]);
        ck_assert(path_of(out, bias, x).repeat[1]);
        // contiguous but one element in: not aligned for packs, 32-bit scalar kernel
        tensor *shifted = view_slice(tensor_zeros(types[t], SHAPE(61)), 0, 1, 61, 1);
        tensor *flat_out = tensor_zeros(types[t], SHAPE(60));
        p = path_of(flat_out, shifted, NULL);
        ck_assert_int_eq(p.kind, EW_PATH_ROWS);
        ck_assert_int_eq(p.cols, 60);
        ck_assert(!p.repeat[1]);
        // transposed, a column broadcast, a scalar broadcast: the general kernel
        ck_assert_int_eq(
            path_of(out, x, view_transpose(tensor_zeros(types[t], SHAPE(10, 6)), 0, 1)).kind,
            EW_PATH_STRIDED);
        ck_assert_int_eq(path_of(out, x, tensor_zeros(types[t], SHAPE(6, 1))).kind,
                         EW_PATH_STRIDED);
        ck_assert_int_eq(path_of(out, x, tensor_zeros(types[t], SHAPE(1))).kind, EW_PATH_STRIDED);
        // a strided output
        ck_assert_int_eq(
            path_of(view_slice(tensor_zeros(types[t], SHAPE(6, 20)), 1, 0, 20, 2), x, y).kind,
            EW_PATH_STRIDED);
    }
    scope_end(mark);
}
END_TEST

// 2^31 elements and more take the general kernel: the 32-bit indices would wrap. The plan is
// written by hand (no memory behind it: the choice reads only shapes, strides and addresses).
START_TEST(test_ew_path_numel_limit) {
    cpu_iter it = {.n_ops = 2, .ndim = 1, .shape = {EW_MAX_NUMEL - 1}, .strides = {{4}, {4}}};
    it.numel = EW_MAX_NUMEL - 1;
    it.data[0] = it.data[1] = (char *)(uintptr_t)4096;
    ck_assert_int_eq(ew_path_choose(&it, 4).kind, EW_PATH_FLAT);
    it.numel = it.shape[0] = EW_MAX_NUMEL;
    ck_assert_int_eq(ew_path_choose(&it, 4).kind, EW_PATH_STRIDED);
    it.numel = it.shape[0] = 0;
    ck_assert_int_eq(ew_path_choose(&it, 4).kind, EW_PATH_STRIDED);
}
END_TEST

// The rows path reads, for every output element, the element the general iteration's strides
// point at; the flat path's packs and tail cover every element once.
START_TEST(test_ew_rows_offsets_match_iteration) {
    int mark = scope_begin();
    tensor *x = tensor_zeros(PETAL_F32, SHAPE(7, 13)), *b = tensor_zeros(PETAL_F32, SHAPE(13));
    tensor *out = tensor_zeros(PETAL_F32, SHAPE(7, 13));
    const tensor *ops[] = {out, x, b};
    cpu_iter it;
    cpu_iter_build(&it, 3, ops);
    ew_path p = ew_path_choose(&it, 4);
    ck_assert_int_eq(p.kind, EW_PATH_ROWS);
    for (int64_t i = 0; i < it.numel; i++) {
        int64_t r = i / it.shape[1], c = i % it.shape[1];
        for (int k = 1; k < 3; k++) {
            int64_t want = (r * it.strides[k][0] + c * it.strides[k][1]) / 4;
            ck_assert_int_eq(ew_rows_index((uint32_t)i, (uint32_t)p.cols, p.repeat[k]), want);
        }
    }
    for (uint32_t n = 0; n < 40; n++)
        for (uint32_t per = 2; per <= 8; per *= 2) {
            uint32_t tail = ew_tail_start(n, per);
            ck_assert(tail % per == 0 && tail <= n && n - tail < per);
        }
    scope_end(mark);
}
END_TEST

// ---- index_add by sorted runs ----

// The radix sort's result: keys ascending, equal keys in position order (a stable counting sort).
static void sort_stable(const int32_t *keys, int64_t n, int64_t len, int32_t *keys_sorted,
                        int32_t *pos_sorted) {
    int64_t *start = calloc((size_t)len + 2, sizeof *start);
    for (int64_t l = 0; l < n; l++) start[keys[l] + 1]++;
    for (int64_t k = 0; k <= len; k++) start[k + 1] += start[k];
    for (int64_t l = 0; l < n; l++) {
        int64_t at = start[keys[l]]++;
        keys_sorted[at] = keys[l];
        pos_sorted[at] = (int32_t)l;
    }
    free(start);
}

// The kernel's algorithm over (len, cols) out and (n, cols) src: each run's first entry adds the
// run's rows in position order. Returns the smallest bad position, or -1.
static int64_t index_add_by_runs(tensor *out, const int64_t *ids, int64_t n, const tensor *src) {
    int64_t len = out->shape[0], cols = out->shape[1], bad = -1;
    int32_t *keys = malloc((size_t)n * sizeof *keys), *ks = malloc((size_t)n * sizeof *ks);
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    for (int64_t l = 0; l < n; l++) keys[l] = index_sort_key(ids[l], len);
    sort_stable(keys, n, len, ks, pos);
    float *o = tensor_data(out);
    const float *x = tensor_data(src);
    for (int64_t p = 0; p < n; p++) {
        if (!index_run_starts(ks, p)) continue;
        if (ks[p] == len) {
            bad = pos[p];
            continue;
        }
        for (int64_t c = 0; c < cols; c++) {
            float acc = o[ks[p] * cols + c];
            for (int64_t q = p; q < n && ks[q] == ks[p]; q++) acc += x[pos[q] * cols + c];
            o[ks[p] * cols + c] = acc;
        }
    }
    free(keys), free(ks), free(pos);
    return bad;
}

// An embedding's backward: 300 ids into 50 rows, id 0 (padding) a third of them.
START_TEST(test_index_add_runs_equal_cpu_bits) {
    int mark = scope_begin();
    const int64_t n = 300, len = 50, cols = 9;
    int64_t ids[300];
    for (int64_t l = 0; l < n; l++) ids[l] = l % 3 == 0 ? 0 : (l * 7919) % len;
    tensor *src = tensor_empty(PETAL_F32, SHAPE(n, cols));
    tensor_normal_(src, 0, 1, &(rng_generator){4, 0});
    tensor *want = tensor_empty(PETAL_F32, SHAPE(len, cols));
    tensor_normal_(want, 0, 1, &(rng_generator){5, 0});
    tensor *got = tensor_empty_like(want);
    tensor_copy_(got, want);
    backend_get(DEVICE_CPU)->index_add(want, 0, tensor_from_data(PETAL_I64, SHAPE(n), ids), src);
    ck_assert_int_eq(index_add_by_runs(got, ids, n, src), -1);
    ck_assert_mem_eq(tensor_data(got), tensor_data(want), tensor_nbytes(want));
    ck_assert_int_ge(index_sort_bits(len), 6); // keys up to len = 50 need 6 bits
    ck_assert_int_eq(index_sort_bits(63), 6);
    ck_assert_int_eq(index_sort_bits(64), 7);
    scope_end(mark);
}
END_TEST

// Bad indices form the last run, never added; its first entry is the smallest bad position.
START_TEST(test_index_add_runs_bad_last) {
    int mark = scope_begin();
    int64_t ids[] = {3, 9, 1, -1, 3, 4, 100, 0};
    tensor *src = tensor_ones(PETAL_F32, SHAPE(8, 2)), *out = tensor_zeros(PETAL_F32, SHAPE(5, 2));
    ck_assert_int_eq(index_add_by_runs(out, ids, 8, src), 1);
    double want[] = {1, 1, 1, 1, 0, 0, 2, 2, 1, 1};
    ck_assert(tensors_close("index_add, bad skipped", out,
                            tensor_cast(tensor_from_data(PETAL_F64, SHAPE(5, 2), want), PETAL_F32),
                            0, 0));
    scope_end(mark);
}
END_TEST

int main(void) {
    Suite *s = suite_create("cuda_tiling");
    TCase *split = tcase_create("two-pass reductions");
    tcase_add_test(split, test_split_covers_each_element_once);
    tcase_add_test(split, test_split_fills_gpu_for_layer_norm);
    tcase_add_test(split, test_two_pass_equals_cpu_reduction);
    suite_add_tcase(s, split);
    TCase *ew = tcase_create("element-wise paths");
    tcase_add_test(ew, test_ew_path_choice);
    tcase_add_test(ew, test_ew_path_numel_limit);
    tcase_add_test(ew, test_ew_rows_offsets_match_iteration);
    suite_add_tcase(s, ew);
    TCase *runs = tcase_create("index_add by sorted runs");
    tcase_add_test(runs, test_index_add_runs_equal_cpu_bits);
    tcase_add_test(runs, test_index_add_runs_bad_last);
    suite_add_tcase(s, runs);
    return run_suite(s);
}
