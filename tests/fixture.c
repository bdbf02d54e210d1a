#include "tests/fixture.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "tensor/error.h"
#include "tests/test_util.h"

bool fixture_open(fixture *f, const char *name) {
    snprintf(f->path, sizeof f->path, "%s/%s", PETAL_TEST_DATA, name);
    f->file = H5Fopen(f->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f->file < 0) fprintf(stderr, "cannot open fixture %s\n", f->path);
    return f->file >= 0;
}

void fixture_close(fixture *f) {
    if (f->file >= 0) H5Fclose((hid_t)f->file);
    f->file = -1;
}

bool fixture_has(const fixture *f, const char *dataset) {
    return H5Lexists((hid_t)f->file, dataset, H5P_DEFAULT) > 0;
}

tensor *fixture_get(const fixture *f, const char *dataset) {
    PETAL_CHECK(fixture_has(f, dataset), "fixture %s has no dataset %s", f->path, dataset);
    hid_t d = H5Dopen2((hid_t)f->file, dataset, H5P_DEFAULT);
    hid_t space = H5Dget_space(d), type = H5Dget_type(d);
    int ndim = H5Sget_simple_extent_ndims(space);
    hsize_t dims[PETAL_MAX_DIMS];
    H5Sget_simple_extent_dims(space, dims, NULL);
    int64_t shape[PETAL_MAX_DIMS];
    for (int i = 0; i < ndim; i++) shape[i] = (int64_t)dims[i];
    bool is_float = H5Tget_class(type) == H5T_FLOAT;
    petal_dtype dt = is_float ? (H5Tget_size(type) == 8 ? PETAL_F64 : PETAL_F32) : PETAL_I64;
    hid_t mem = dt == PETAL_F64 ? H5T_NATIVE_DOUBLE
                                : (dt == PETAL_F32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT64);
    tensor *t = tensor_empty(dt, ndim, shape);
    PETAL_CHECK(H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, tensor_data(t)) >= 0,
                "fixture %s: cannot read %s", f->path, dataset);
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(d);
    return t;
}

int64_t fixture_attr(const fixture *f, const char *name) {
    PETAL_CHECK(H5Aexists((hid_t)f->file, name) > 0, "fixture %s has no attribute %s", f->path,
                name);
    hid_t a = H5Aopen((hid_t)f->file, name, H5P_DEFAULT);
    int64_t v = 0;
    H5Aread(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    return v;
}

int fixture_load_weights(const fixture *f, param_registry *r) {
    int missing = 0;
    char name[600];
    for (int i = 0; i < r->n; i++) {
        param_entry *e = &r->items[i];
        snprintf(name, sizeof name, "weights/%s", e->name);
        if (!fixture_has(f, name)) {
            fprintf(stderr, "fixture %s lacks %s\n", f->path, e->name);
            missing++;
            continue;
        }
        tensor *w = fixture_get(f, name);
        tensor_copy_(e->value, w);
        tensor_free(w);
    }
    return missing;
}

bool fixture_check(const fixture *f, const char *dataset, const tensor *got, double tol) {
    tensor *want = fixture_get(f, dataset);
    int64_t n = tensor_numel(want);
    double *w = malloc((size_t)(n + 1) * sizeof *w), scale = 1;
    tensor_to_doubles(want, w);
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(w[i]));
    bool ok = tensor_numel(got) == n;
    if (!ok)
        fprintf(stderr, "%s: %lld elements, want %lld\n", dataset, (long long)tensor_numel(got),
                (long long)n);
    if (ok) ok = tensor_close(dataset, got, w, tol * scale, 0);
    free(w);
    tensor_free(want);
    return ok;
}
