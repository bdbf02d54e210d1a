// train/schedule.c against BLIP's utils.py formulas (cosine_lr_schedule, warmup_lr_schedule) and
// train_retrieval.py's alpha ramp, written out here in doubles as the Python computes them.
#include <math.h>

#include "tests/test_util.h"
#include "train/schedule.h"

START_TEST(test_epoch_cosine_is_blips) {
    // cosine_lr_schedule(optimizer, epoch, max_epoch=6, init_lr=1e-5, min_lr=0)
    const double want[6] = {1e-05, 9.330127018922195e-06,  7.500000000000001e-06,
                            5e-06, 2.5000000000000015e-06, 6.698729810778065e-07};
    // Python's values to the bit: the same operations in the same order.
    for (int e = 0; e < 6; e++) ck_assert_double_eq(schedule_epoch_cosine(e, 6, 1e-5, 0), want[e]);
    ck_assert_double_eq(schedule_epoch_cosine(3, 6, 2e-4, 1e-6), 0.0001005);
}
END_TEST

START_TEST(test_warmup_is_blips) {
    // warmup_lr_schedule(optimizer, step, max_step=3000, init_lr=1e-6, max_lr=3e-4)
    ck_assert_double_eq(schedule_warmup(0, 3000, 1e-6, 3e-4), 1e-6);
    ck_assert_double_eq(schedule_warmup(1500, 3000, 1e-6, 3e-4), 0.00015049999999999997);
    ck_assert_double_eq(schedule_warmup(5000, 3000, 1e-6, 3e-4), 3e-4);
}
END_TEST

START_TEST(test_step_cosine_warms_up_then_decays) {
    // 10 warmup steps of 100 to init_lr 1e-2 with min_lr 1e-4
    for (int s = 0; s < 10; s++)
        ck_assert_double_eq_tol(schedule_step_cosine(s, 100, 10, 1e-2, 1e-4), 1e-3 * (s + 1),
                                1e-17);
    ck_assert_double_eq_tol(schedule_step_cosine(10, 100, 10, 1e-2, 1e-4), 1e-2, 1e-18);
    ck_assert_double_eq_tol(schedule_step_cosine(55, 100, 10, 1e-2, 1e-4), 1e-4 + 0.5 * 0.99e-2,
                            1e-15);
    double last = schedule_step_cosine(99, 100, 10, 1e-2, 1e-4);
    ck_assert_double_eq_tol(last, 1e-4 + 0.99e-2 * 0.5 * (1 + cos(M_PI * 89.0 / 90.0)), 1e-17);
    for (int s = 11; s < 100; s++)
        ck_assert(schedule_step_cosine(s, 100, 10, 1e-2, 1e-4) <
                  schedule_step_cosine(s - 1, 100, 10, 1e-2, 1e-4));
}
END_TEST

START_TEST(test_alpha_ramps_over_the_first_epoch) {
    // alpha = config['alpha'] * min(1, i / len(data_loader)) in epoch 0, alpha after
    ck_assert_double_eq(schedule_alpha(0.4, 0, 0, 50), 0);
    ck_assert_double_eq_tol(schedule_alpha(0.4, 0, 25, 50), 0.2, 1e-16);
    ck_assert_double_eq_tol(schedule_alpha(0.4, 0, 49, 50), 0.4 * 49 / 50, 1e-16);
    ck_assert_double_eq(schedule_alpha(0.4, 1, 0, 50), 0.4);
    ck_assert_double_eq(schedule_alpha(0.4, 3, 17, 50), 0.4);
}
END_TEST

START_TEST(test_schedule_lr_follows_the_config) {
    train_config c;
    train_config_defaults(TRAIN_TASK_RETRIEVAL, &c);
    c.init_lr = 1e-2;
    c.min_lr = 0;
    c.max_epoch = 4;
    ck_assert_double_eq(schedule_lr(&c, 123, 2, 1000), schedule_epoch_cosine(2, 4, 1e-2, 0));
    c.lr_schedule = TRAIN_SCHEDULE_STEP_COSINE;
    c.warmup_steps = 5;
    ck_assert_double_eq_tol(schedule_lr(&c, 2, 0, 1000), 6e-3, 1e-18);
    train_config_free(&c);
}
END_TEST

int main(void) {
    Suite *s = suite_create("schedule");
    TCase *tc = tcase_create("schedule");
    tcase_add_test(tc, test_epoch_cosine_is_blips);
    tcase_add_test(tc, test_warmup_is_blips);
    tcase_add_test(tc, test_step_cosine_warms_up_then_decays);
    tcase_add_test(tc, test_alpha_ramps_over_the_first_epoch);
    tcase_add_test(tc, test_schedule_lr_follows_the_config);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
