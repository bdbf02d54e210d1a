// tests/cuda, the index and tiling math of the CUDA kernels, run on the CPU everywhere (CI has no
// GPU): the chunking of the two-pass reductions (tensor/cuda/cuda_split.h), checked for its
// invariants and by running the two-pass algorithm with the kernels' chunks on the CPU against
// the CPU backend's reductions.
#include <math.h>
#include <stdio.h>

#include "petal.h"
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

int main(void) {
    Suite *s = suite_create("cuda_tiling");
    TCase *split = tcase_create("two-pass reductions");
    tcase_add_test(split, test_split_covers_each_element_once);
    tcase_add_test(split, test_split_fills_gpu_for_layer_norm);
    tcase_add_test(split, test_two_pass_equals_cpu_reduction);
    suite_add_tcase(s, split);
    return run_suite(s);
}
