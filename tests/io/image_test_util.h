// Fixture access and image comparison shared by tests/io/test_image.c and test_augment.c.
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "io/image.h"

// PETAL_TEST_DATA/image/<name>, in a static buffer that the next call reuses.
const char *imgtest_path(const char *name);
// Decodes a fixture image; fails the test (naming the file and the error) if it cannot.
void imgtest_load(const char *name, image *im);
// Reads a raw fixture of exactly `size` bytes into a malloc'd buffer; fails the test otherwise.
void *imgtest_raw(const char *name, size_t size);

// Compares two images value by value and prints one line: the largest difference in grey levels,
// the pixel (x, y, channel) where it occurs with both values, how many values differ and the mean
// absolute difference. Returns whether the sizes agree and the largest difference is <= tolerance.
bool imgtest_compare(const char *what, const image *got, const image *want, int tolerance);
// An image made from width x height RGB triples, row-major: tiny hand-made test images.
void imgtest_from_bytes(image *im, int width, int height, const unsigned char *rgb);
