// train/tb_events.c: CRC-32C on its check value, and an event file equal byte for byte to the one
// TensorBoard's own protobufs and record writer produce for the same events
// (tests/data/tb/expected.tfevents, written by tools/make_tb_fixture.py).
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "tests/test_util.h"
#include "train/tb_events.h"

START_TEST(test_crc32c_check_value) {
    ck_assert_uint_eq(tb_crc32c("123456789", 9), 0xE3069283u); // the standard check value
    ck_assert_uint_eq(tb_crc32c("", 0), 0);
}
END_TEST

START_TEST(test_file_equals_tensorboards) {
    tb_writer w;
    ck_assert_int_eq(tb_open(&w, test_dir_path(""), 1765000000.25), PETAL_OK);
    const char *train[] = {"train/loss", "train/lr", "train/loss_ita"};
    ck_assert_int_eq(tb_scalars(&w, 1765000001.5, 1, train, (double[]){3.25, 1e-3, 2.5}, 3),
                     PETAL_OK);
    const char *val[] = {"val/r_mean", "val/txt_mdr"};
    ck_assert_int_eq(tb_scalars(&w, 1765000002.75, 300, val, (double[]){41.5, 7.0}, 2), PETAL_OK);
    tb_close(&w);
    char *got, *want;
    size_t n_got, n_want;
    ck_assert_int_eq(buffer_read_file(test_dir_path("events.out.tfevents.petal"), &got, &n_got),
                     PETAL_OK);
    ck_assert_int_eq(buffer_read_file(PETAL_TEST_DATA "/tb/expected.tfevents", &want, &n_want),
                     PETAL_OK);
    size_t first = 0;
    while (first < n_got && first < n_want && got[first] == want[first]) first++;
    ck_assert_msg(n_got == n_want && first == n_got,
                  "%zu bytes written, TensorBoard's file has %zu; first difference at byte %zu",
                  n_got, n_want, first);
    free(got);
    free(want);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tb_events");
    TCase *tc = tcase_create("tb_events");
    tcase_add_checked_fixture(tc, test_dir_make, test_dir_remove);
    tcase_add_test(tc, test_crc32c_check_value);
    tcase_add_test(tc, test_file_equals_tensorboards);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
