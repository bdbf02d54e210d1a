// Helpers shared by the Check suites.
#pragma once

#include <check.h>
#include <stdbool.h>

#include "tensor/tensor.h"

// Compares `got` (any dtype/device) with `want` (numel doubles, row-major) elementwise:
// |got - want| <= atol + rtol * |want|. On failure prints the worst element and returns false.
bool tensor_close(const char *what, const tensor *got, const double *want, double atol,
                  double rtol);
// Same, for two tensors of one shape.
bool tensors_close(const char *what, const tensor *got, const tensor *want, double atol,
                   double rtol);
// The largest finite |element| of t, at least 1.
double tensor_finite_scale(const tensor *t);
// tensors_close with rtol = tol and atol = tol times tensor_finite_scale(want): a kernel's
// rounding measured against the tensor's scale.
bool tensors_close_scaled(const char *what, const tensor *got, const tensor *want, double tol);

// Runs fn in a child process and checks that it aborts with a message containing `expect`
// (stderr is captured). Prints what it saw on failure.
bool aborts_with(void (*fn)(void), const char *expect);

// A fresh directory under /tmp for each test: tcase_add_checked_fixture(tc, test_dir_make,
// test_dir_remove). test_dir_path names a file in it (valid until test_dir_remove; 256 a test).
void test_dir_make(void);
void test_dir_remove(void);
const char *test_dir_path(const char *name);
// Writes text into a file of the test directory; returns its path (as test_dir_path).
const char *test_dir_write(const char *name, const char *text);

// A CK_FORK-safe test case with a timeout suited to model-sized work.
TCase *tcase_with_timeout(const char *name, double seconds);

// Runs the suite; returns the process exit status.
int run_suite(Suite *s);
