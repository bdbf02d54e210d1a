// train/eval_shard.c without ranks: the shares of the batches (contiguous, in rank order, every
// batch once, sizes within one of each other) and the outputs list. The shares evaluated and
// gathered by real ranks are tests/tools/test_dist_cli.c's.
#include <stdio.h>
#include <string.h>

#include "io/buffer.h"
#include "tests/test_util.h"
#include "train/eval_shard.h"

START_TEST(test_shares_cover_the_batches_in_order) {
    for (int64_t batches = 0; batches <= 9; batches++)
        for (int world = 1; world <= 4; world++) {
            int64_t next = 0;
            for (int r = 0; r < world; r++) {
                int64_t start, stop;
                eval_shard_range(batches, r, world, &start, &stop);
                ck_assert_int_eq(start, next);
                ck_assert_int_le(start, stop);
                int64_t size = stop - start;
                ck_assert_msg(size == batches / world || size == batches / world + 1,
                              "%lld batches over %d ranks: rank %d has %lld", (long long)batches,
                              world, r, (long long)size);
                next = stop;
            }
            ck_assert_int_eq(next, batches);
        }
}
END_TEST

START_TEST(test_outputs_keep_their_order) {
    eval_outputs o = {0};
    char text[16];
    for (int64_t i = 0; i < 100; i++) {
        snprintf(text, sizeof text, "answer %lld", (long long)(7 * i));
        eval_outputs_push(&o, 99 - i, buffer_strndup(text, strlen(text)));
    }
    ck_assert_int_eq(eval_outputs_gather(NULL, &o), PETAL_OK); // one process: as it is
    ck_assert_int_eq(o.n, 100);
    for (int64_t i = 0; i < 100; i++) {
        snprintf(text, sizeof text, "answer %lld", (long long)(7 * i));
        ck_assert_int_eq(o.index[i], 99 - i);
        ck_assert_str_eq(o.text[i], text);
    }
    eval_outputs_free(&o);
    ck_assert_int_eq(o.n, 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("eval_shard");
    TCase *tc = tcase_create("shares");
    tcase_add_test(tc, test_shares_cover_the_batches_in_order);
    tcase_add_test(tc, test_outputs_keep_their_order);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
