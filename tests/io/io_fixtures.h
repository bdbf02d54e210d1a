// The fixtures of tests/data/io (written by tools/make_io_fixtures.py), shared by the io suites.
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "io/tensor_list.h"

#define IO_DATA(name) PETAL_TEST_DATA "/io/" name

// expected.h5: what each fixture should read as, under "<fixture>.<name>" (read once).
const tensor_list *io_fixture_expected(void);
named_tensor *io_fixture_want(const char *fixture, const char *name);
// Every tensor of `got` equals (exactly, by value) the expected one of the same name under
// `fixture`, and `got` has as many tensors as there are expected ones. Prints what differs.
bool io_fixture_matches(const char *fixture, const tensor_list *got);

// The whole file in a malloc'd buffer of exactly its size (so ASan sees reads past the end).
unsigned char *io_fixture_slurp(const char *path, size_t *size);
