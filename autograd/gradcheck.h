// Finite-difference gradient checking in f64 (docs/architecture.md "Autograd").
//
// For f(inputs) -> output, compares the analytic Jacobian (one backward pass per output element,
// seeded with a one-hot gradient) with central differences (f(x + eps) - f(x - eps)) / 2 eps for
// every element of every input that requires grad. An entry passes when
//     |analytic - numeric| <= atol + rtol * |numeric|.
// The result names the worst entry so a failure says where to look.
#pragma once

#include <stdbool.h>

#include "tensor/tensor.h"

typedef tensor *(*gradcheck_fn)(tensor **inputs, const void *ctx);

typedef struct {
    double eps, atol, rtol;
    // Perturb at most this many elements of each input, evenly spaced over it (0: all). Whole
    // models have thousands of parameters; a spread sample of each tensor still catches a wrong
    // rule, which corrupts whole rows or columns.
    int64_t max_per_input;
} gradcheck_options;
#define GRADCHECK_DEFAULTS ((gradcheck_options){1e-6, 1e-5, 1e-3, 0})

typedef struct {
    bool passed;
    int64_t n_checked;  // Jacobian entries compared
    double worst_ratio; // max |a - n| / (atol + rtol |n|); <= 1 passes
    int worst_input;    // where the worst entry is: input, element, output element
    int64_t worst_element, worst_output;
    double worst_analytic, worst_numeric;
} gradcheck_result;

// Inputs must be f64 CPU tensors; those with requires_grad are checked (perturbed in place and
// restored). Aborts if an input is not f64 or the output is not f64.
gradcheck_result gradcheck(gradcheck_fn fn, const void *ctx, int n_inputs, tensor **inputs,
                           const gradcheck_options *opt);

// One line: "passed (N entries, worst ratio R)" or the worst entry's coordinates and values.
void gradcheck_describe(const gradcheck_result *r, char *buf, size_t size);
