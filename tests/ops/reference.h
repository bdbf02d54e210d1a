// Naive f64 reference implementations of every op in the op table, written from the math with
// plain loops over row-major arrays: the oracle for the forward tests.
#pragma once

#include <stdbool.h>

#include "ops/op_table.h"

typedef struct {
    int ndim;
    int64_t shape[PETAL_MAX_DIMS];
    double *v; // row-major values
} ref_t;

// Computes case c on args (n_args of them) into out (out->v malloc'd). False if no reference.
bool reference_run(const op_case *c, const ref_t *args, ref_t *out);
