// autograd/memory_profile: the saved bytes of a small graph, worked out by hand (a storage saved by
// two nodes counted once, for the older; a parameter older than the profile apart), the snapshot
// retaken at the peak, and the live-node list
// left empty once the profile ends and the graph is freed.
#include "autograd/autograd.h"
#include "autograd/memory_profile.h"
#include "ops/ops.h"
#include "tensor/scope.h"
#include "tensor/storage.h"
#include "tests/test_util.h"

static tensor *leaf(int64_t rows, int64_t cols, uint64_t seed) {
    tensor *t = tensor_empty(PETAL_F32, SHAPE(rows, cols));
    tensor_normal_(t, 0, 1, &(rng_generator){seed, 0});
    return tensor_set_requires_grad(t, true);
}

static void assert_row(const memory_profile_row *r, const char *op, int64_t rows, int64_t cols,
                       size_t bytes) {
    ck_assert_str_eq(r->op, op);
    ck_assert_int_eq(r->ndim, 2);
    ck_assert_int_eq(r->shape[0], rows);
    ck_assert_int_eq(r->shape[1], cols);
    ck_assert_int_eq(r->count, 1);
    ck_assert_uint_eq(r->bytes, bytes);
}

// x (64, 256) @ w (256, 512) saves both, but w (a parameter, 512 KiB) is older than the profile:
// only x (64 KiB) counts; exp saves its output (128 KiB); the mul of that output with itself saves
// it twice more, which must add nothing. A snapshot is taken as an output is allocated, before its
// node saves anything: neg (which saves nothing) allocates the one that sees mul's. Allocated since
// the start: x and four outputs.
START_TEST(test_saved_bytes_by_hand) {
    int mark = scope_begin();
    tensor *w = leaf(256, 512, 2);
    size_t before = memory_get_stats(DEVICE_CPU).current;
    memory_profile_begin(DEVICE_CPU);
    tensor *x = leaf(64, 256, 1);
    tensor *z = tensor_exp(tensor_matmul(x, w));
    tensor *u = tensor_neg(tensor_mul(z, z));
    memory_profile p = memory_profile_get();
    ck_assert_uint_eq(p.base, before);
    ck_assert_uint_eq(p.in_use, before + 65536 + 4 * 131072);
    ck_assert_uint_eq(p.saved, 65536 + 131072);
    ck_assert_uint_eq(p.saved_before, 524288);
    ck_assert_uint_eq(p.grads, 0);
    ck_assert_int_eq(p.n_rows, 2);
    assert_row(&p.rows[0], "exp", 64, 512, 131072);
    assert_row(&p.rows[1], "matmul", 64, 256, 65536);
    (void)u;
    memory_profile_end();
    scope_end(mark);
}
END_TEST

// The backward pass's peak (the forward's outputs, each node's pending gradient and the rule's
// temporaries) is above the forward's, so the snapshot moves there: it sees gradients pending.
START_TEST(test_snapshot_follows_the_peak) {
    int mark = scope_begin();
    tensor *x = leaf(64, 256, 1), *w = leaf(256, 512, 2);
    memory_profile_begin(DEVICE_CPU);
    tensor *z = tensor_exp(tensor_matmul(x, w));
    size_t forward = memory_profile_get().in_use;
    autograd_backward(tensor_sum_all(tensor_mul(z, z)), NULL, false);
    memory_profile p = memory_profile_get();
    ck_assert_uint_gt(p.in_use, forward);
    ck_assert_uint_eq(p.in_use, memory_get_stats(DEVICE_CPU).peak);
    ck_assert_uint_gt(p.grads, 0);
    memory_profile_end();
    scope_end(mark);
}
END_TEST

static int live_nodes(void) {
    int n = 0;
    for (ag_node *node = ag_live_first(); node; node = node->live_next) n++;
    return n;
}

START_TEST(test_live_list_empties) {
    int mark = scope_begin();
    tensor *x = leaf(8, 8, 1);
    memory_profile_begin(DEVICE_CPU);
    tensor *y = tensor_exp(tensor_exp(x));
    ck_assert_int_eq(live_nodes(), 2);
    memory_profile_end();
    tensor_exp(y); // recorded with the profile off: not listed
    ck_assert_int_eq(live_nodes(), 2);
    scope_end(mark);
    ck_assert_int_eq(live_nodes(), 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("memory_profile");
    TCase *tc = tcase_create("memory_profile");
    tcase_add_test(tc, test_saved_bytes_by_hand);
    tcase_add_test(tc, test_snapshot_follows_the_peak);
    tcase_add_test(tc, test_live_list_empties);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
