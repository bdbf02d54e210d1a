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

// Runs fn in a child process and checks that it aborts with a message containing `expect`
// (stderr is captured). Prints what it saw on failure.
bool aborts_with(void (*fn)(void), const char *expect);

// A CK_FORK-safe test case with a timeout suited to model-sized work.
TCase *tcase_with_timeout(const char *name, double seconds);

// Runs the suite; returns the process exit status.
int run_suite(Suite *s);
