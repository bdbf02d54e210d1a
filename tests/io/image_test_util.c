#include "tests/io/image_test_util.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *imgtest_path(const char *name) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/image/%s", PETAL_TEST_DATA, name);
    return path;
}

void imgtest_load(const char *name, image *im) {
    petal_status st = image_load(imgtest_path(name), im);
    ck_assert_msg(st == PETAL_OK, "%s: %s", name, petal_error_message());
}

void *imgtest_raw(const char *name, size_t size) {
    FILE *f = fopen(imgtest_path(name), "rb");
    ck_assert_msg(f, "cannot open fixture %s", name);
    unsigned char *buf = malloc(size + 1);
    size_t got = fread(buf, 1, size + 1, f);
    fclose(f);
    ck_assert_msg(got == size, "fixture %s has %zu bytes, expected %zu", name, got, size);
    return buf;
}

bool imgtest_compare(const char *what, const image *got, const image *want, int tolerance) {
    if (got->width != want->width || got->height != want->height) {
        printf("%s: size %d x %d, want %d x %d\n", what, got->width, got->height, want->width,
               want->height);
        return false;
    }
    size_t n = (size_t)got->width * (size_t)got->height * 3, worst = 0, differ = 0;
    int max_diff = 0;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)got->data[i] - (int)want->data[i]);
        sum += d;
        differ += d != 0;
        if (d > max_diff) {
            max_diff = d;
            worst = i;
        }
    }
    size_t pixel = worst / 3;
    printf("%s: max |diff| %d grey levels at (x %zu, y %zu, channel %zu): got %d, want %d; "
           "%zu of %zu values differ, mean |diff| %.4f\n",
           what, max_diff, pixel % (size_t)got->width, pixel / (size_t)got->width, worst % 3,
           got->data[worst], want->data[worst], differ, n, sum / (double)n);
    fflush(stdout); // Check's forked test may end without flushing stdio
    return max_diff <= tolerance;
}

void imgtest_from_bytes(image *im, int width, int height, const unsigned char *rgb) {
    image_init(im, width, height);
    memcpy(im->data, rgb, (size_t)width * (size_t)height * 3);
}
