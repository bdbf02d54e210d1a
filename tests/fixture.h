// Reading the reference fixtures of tools/make_blip_fixtures.py (HDF5: /weights, /inputs,
// /outputs, /grads, ...), and comparing against them.
#pragma once

#include <stdbool.h>

#include "nn/registry.h"
#include "tensor/tensor.h"

typedef struct {
    long long file; // hid_t
    char path[512];
} fixture;

bool fixture_open(fixture *f, const char *name); // a path under tests/data
void fixture_close(fixture *f);
bool fixture_has(const fixture *f, const char *dataset);
// The dataset as a tensor (f32, f64 or i64), or abort naming the file and dataset.
tensor *fixture_get(const fixture *f, const char *dataset);
// Loads /weights/<name> into every registry entry (converting to the entry's dtype). Returns the
// number of entries the file lacks (each printed).
int fixture_load_weights(const fixture *f, param_registry *r);
// An integer attribute of the file's root group (abort if missing).
int64_t fixture_attr(const fixture *f, const char *name);
// Compares got with the dataset: |got - want| <= tol * max(1, max|want|); prints the worst element.
bool fixture_check(const fixture *f, const char *dataset, const tensor *got, double tol);
