#include "tensor/tensor.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/backend.h"
#include "tensor/error.h"
#include "tensor/scope.h"
#include "tensor/storage.h"

static void (*grad_fn_release)(struct ag_node *node);

void tensor_set_grad_fn_release(void (*release)(struct ag_node *node)) {
    grad_fn_release = release;
}

void tensor_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        strides[d] = s;
        s *= shape[d];
    }
}

static int64_t shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    return n;
}

static void check_shape(int ndim, const int64_t *shape) {
    PETAL_CHECK(ndim >= 0 && ndim <= PETAL_MAX_DIMS, "tensor: ndim %d out of range [0, %d]", ndim,
                PETAL_MAX_DIMS);
    for (int d = 0; d < ndim; d++)
        PETAL_CHECK(shape[d] >= 0, "tensor: negative size %" PRId64 " in dim %d", shape[d], d);
}

tensor *tensor_make_view(tensor_storage *storage, petal_dtype dtype, int ndim, const int64_t *shape,
                         const int64_t *strides, int64_t offset) {
    check_shape(ndim, shape);
    tensor *t = calloc(1, sizeof *t);
    PETAL_CHECK(t != NULL, "out of host memory allocating a tensor header");
    t->dtype = dtype;
    t->device = storage->device;
    t->ndim = ndim;
    if (ndim > 0) { // a 0-d tensor may come with NULL arrays
        memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
        memcpy(t->strides, strides, (size_t)ndim * sizeof *strides);
    }
    t->offset = offset;
    t->storage = storage;
    storage_retain(storage);
    t->refs = 1;
    scope_register(t);
    return t;
}

static tensor *tensor_alloc(petal_device device, petal_dtype dtype, int ndim, const int64_t *shape,
                            bool zeroed) {
    check_shape(ndim, shape);
    int64_t strides[PETAL_MAX_DIMS];
    tensor_contiguous_strides(ndim, shape, strides);
    size_t nbytes = (size_t)shape_numel(ndim, shape) * dtype_size(dtype);
    tensor_storage *s = zeroed ? storage_new_zeroed(device, nbytes) : storage_new(device, nbytes);
    tensor *t = tensor_make_view(s, dtype, ndim, shape, strides, 0);
    storage_release(s); // the view holds the only reference
    return t;
}

tensor *tensor_empty_on(petal_device device, petal_dtype dtype, int ndim, const int64_t *shape) {
    return tensor_alloc(device, dtype, ndim, shape, false);
}

tensor *tensor_empty(petal_dtype dtype, int ndim, const int64_t *shape) {
    return tensor_empty_on(DEVICE_CPU, dtype, ndim, shape);
}

tensor *tensor_zeros_on(petal_device device, petal_dtype dtype, int ndim, const int64_t *shape) {
    return tensor_alloc(device, dtype, ndim, shape, true);
}

tensor *tensor_zeros(petal_dtype dtype, int ndim, const int64_t *shape) {
    return tensor_zeros_on(DEVICE_CPU, dtype, ndim, shape);
}

tensor *tensor_full(petal_dtype dtype, int ndim, const int64_t *shape, double value) {
    tensor *t = tensor_empty(dtype, ndim, shape);
    tensor_fill_(t, value);
    return t;
}

tensor *tensor_ones(petal_dtype dtype, int ndim, const int64_t *shape) {
    return tensor_full(dtype, ndim, shape, 1.0);
}

tensor *tensor_scalar(petal_dtype dtype, double value) {
    return tensor_full(dtype, 0, NULL, value);
}

tensor *tensor_arange(petal_dtype dtype, double start, double end, double step) {
    PETAL_CHECK(step != 0 && isfinite(start) && isfinite(end),
                "tensor_arange: bad range start=%g end=%g step=%g", start, end, step);
    int64_t n = (int64_t)ceil((end - start) / step);
    if (n < 0) n = 0;
    tensor *t = tensor_empty(PETAL_F64, SHAPE(n));
    double *p = tensor_data_f64(t);
    for (int64_t i = 0; i < n; i++) p[i] = start + (double)i * step;
    if (dtype == PETAL_F64) return t;
    tensor *c = tensor_cast(t, dtype);
    tensor_free(t);
    return c;
}

tensor *tensor_from_data(petal_dtype dtype, int ndim, const int64_t *shape, const void *data) {
    tensor *t = tensor_empty(dtype, ndim, shape);
    memcpy(tensor_data(t), data, tensor_nbytes(t));
    return t;
}

tensor *tensor_empty_like(const tensor *t) {
    return tensor_empty_on(t->device, t->dtype, t->ndim, t->shape);
}

tensor *tensor_zeros_like(const tensor *t) {
    return tensor_zeros_on(t->device, t->dtype, t->ndim, t->shape);
}

tensor *tensor_clone_data(const tensor *t) {
    tensor *c = tensor_empty_like(t);
    backend_of(t)->copy(c, t);
    return c;
}

tensor *tensor_cast(const tensor *t, petal_dtype dtype) {
    tensor *c = tensor_empty_on(t->device, dtype, t->ndim, t->shape);
    backend_of(t)->copy(c, t);
    return c;
}

tensor *tensor_detach(const tensor *t) {
    return tensor_make_view(t->storage, t->dtype, t->ndim, t->shape, t->strides, t->offset);
}

// Address of the first element on the tensor's own device (tensor_data is for host memory only).
static void *device_data(const tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)dtype_size(t->dtype);
}

// Copies between devices go through a contiguous buffer on the side that is not the host.
static void copy_across_devices(tensor *dst, const tensor *src) {
    const tensor *s = src;
    tensor *tmp_src = NULL;
    if (!tensor_is_contiguous(src) || src->dtype != dst->dtype) {
        tmp_src = tensor_cast(src, dst->dtype);
        s = tmp_src;
    }
    tensor *d = tensor_is_contiguous(dst)
                    ? dst
                    : tensor_empty_on(dst->device, dst->dtype, dst->ndim, dst->shape);
    size_t n = tensor_nbytes(d);
    if (s->device.type == PETAL_CPU) {
        backend_of(d)->copy_from_host(device_data(d), tensor_data(s), n);
    } else if (d->device.type == PETAL_CPU) {
        backend_of(s)->copy_to_host(tensor_data(d), device_data(s), n);
    } else {
        tensor *host = tensor_empty(s->dtype, s->ndim, s->shape);
        backend_of(s)->copy_to_host(tensor_data(host), device_data(s), n);
        backend_of(d)->copy_from_host(device_data(d), tensor_data(host), n);
        tensor_free(host);
    }
    if (d != dst) {
        backend_of(dst)->copy(dst, d);
        tensor_free(d);
    }
    tensor_free(tmp_src);
}

void tensor_bump_version(tensor *t) {
    t->storage->version++;
}

void tensor_copy_(tensor *dst, const tensor *src) {
    tensor_bump_version(dst);
    char a[SHAPE_STR_MAX], b[SHAPE_STR_MAX];
    PETAL_CHECK(tensor_same_shape(dst, src), "tensor_copy_: destination %s, source %s",
                shape_str(dst->ndim, dst->shape, a, sizeof a),
                shape_str(src->ndim, src->shape, b, sizeof b));
    if (device_equal(dst->device, src->device))
        backend_of(dst)->copy(dst, src);
    else
        copy_across_devices(dst, src);
}

tensor *tensor_to(const tensor *t, petal_device device) {
    if (device_equal(t->device, device)) return tensor_detach(t);
    tensor *out = tensor_empty_on(device, t->dtype, t->ndim, t->shape);
    copy_across_devices(out, t);
    return out;
}

void tensor_move_(tensor *t, petal_device device) {
    if (device_equal(t->device, device)) return;
    PETAL_CHECK(!t->grad_fn, "tensor_move_: only a leaf moves (this tensor has autograd history)");
    if (t->grad) tensor_move_(t->grad, device);
    tensor *moved = tensor_to(t, device);
    storage_retain(moved->storage);
    storage_release(t->storage);
    t->storage = moved->storage;
    t->device = device;
    t->offset = 0;
    memcpy(t->strides, moved->strides, sizeof t->strides);
    tensor_free(moved);
    tensor_bump_version(t); // caches keyed on the storage's version recompute
}

void tensor_fill_(tensor *t, double value) {
    tensor_bump_version(t);
    backend_of(t)->fill(t, value);
}

// ---- ownership ----

void tensor_retain(tensor *t) {
    t->refs++;
}

void tensor_release(tensor *t) {
    if (--t->refs > 0) return;
    storage_release(t->storage);
    if (t->grad) tensor_free(t->grad);
    if (t->grad_fn) grad_fn_release(t->grad_fn);
    free(t);
}

void tensor_free(tensor *t) {
    if (!t) return;
    scope_unlink(t);
    tensor_release(t);
}

tensor *tensor_keep(tensor *t) {
    scope_unlink(t);
    return t;
}

// ---- queries ----

int64_t tensor_numel(const tensor *t) {
    return shape_numel(t->ndim, t->shape);
}

size_t tensor_nbytes(const tensor *t) {
    return (size_t)tensor_numel(t) * dtype_size(t->dtype);
}

bool tensor_is_contiguous(const tensor *t) {
    int64_t expected = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] == 1) continue;
        if (t->strides[d] != expected) return false;
        expected *= t->shape[d];
    }
    return true;
}

bool tensor_is_dense(const tensor *t) {
    int order[PETAL_MAX_DIMS], n = 0;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] > 1) order[n++] = d;
    for (int i = 1; i < n; i++) // insertion sort by stride, largest first
        for (int j = i; j > 0 && t->strides[order[j]] > t->strides[order[j - 1]]; j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    int64_t expected = 1;
    for (int i = n - 1; i >= 0; i--) {
        if (t->strides[order[i]] != expected) return false;
        expected *= t->shape[order[i]];
    }
    return true;
}

bool tensor_same_shape(const tensor *a, const tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

int tensor_dim_index(const tensor *t, int dim, const char *op) {
    int d = dim < 0 ? dim + t->ndim : dim;
    PETAL_CHECK(d >= 0 && d < t->ndim, "%s: dim %d out of range for a %d-d tensor", op, dim,
                t->ndim);
    return d;
}

int64_t tensor_size(const tensor *t, int dim) {
    return t->shape[tensor_dim_index(t, dim, "tensor_size")];
}

void *tensor_data(const tensor *t) {
    char dev[16];
    PETAL_CHECK(t->device.type == PETAL_CPU || t->storage->device.type != PETAL_CPU,
                "tensor_data: inconsistent device");
    PETAL_CHECK(t->device.type == PETAL_CPU,
                "tensor_data: the tensor is on %s; copy it with tensor_to(t, DEVICE_CPU) first",
                device_name(t->device, dev));
    return (char *)t->storage->data + t->offset * (int64_t)dtype_size(t->dtype);
}

static void *typed_data(const tensor *t, petal_dtype dtype, const char *fn) {
    PETAL_CHECK(t->dtype == dtype, "%s: the tensor is %s, not %s", fn, dtype_name(t->dtype),
                dtype_name(dtype));
    return tensor_data(t);
}

float *tensor_data_f32(const tensor *t) {
    return typed_data(t, PETAL_F32, "tensor_data_f32");
}
double *tensor_data_f64(const tensor *t) {
    return typed_data(t, PETAL_F64, "tensor_data_f64");
}
int64_t *tensor_data_i64(const tensor *t) {
    return typed_data(t, PETAL_I64, "tensor_data_i64");
}
int32_t *tensor_data_i32(const tensor *t) {
    return typed_data(t, PETAL_I32, "tensor_data_i32");
}

// The element at storage position `pos` of a CPU storage, as a double.
static double load_as_double(const tensor *t, int64_t pos) {
    size_t es = dtype_size(t->dtype); // aborts on an invalid dtype
    return dtype_load_double(t->dtype, (const char *)t->storage->data + pos * (int64_t)es);
}

void tensor_to_doubles(const tensor *t, double *out) {
    const tensor *h = t;
    tensor *tmp = NULL;
    if (t->device.type != PETAL_CPU) h = tmp = tensor_to(t, DEVICE_CPU);
    int64_t n = tensor_numel(h), idx[PETAL_MAX_DIMS] = {0};
    for (int64_t i = 0; i < n; i++) {
        int64_t pos = h->offset;
        for (int d = 0; d < h->ndim; d++) pos += idx[d] * h->strides[d];
        out[i] = load_as_double(h, pos);
        for (int d = h->ndim - 1; d >= 0; d--) {
            if (++idx[d] < h->shape[d]) break;
            idx[d] = 0;
        }
    }
    tensor_free(tmp);
}

double tensor_get(const tensor *t, const int64_t *index) {
    int64_t flat = 0;
    for (int d = 0; d < t->ndim; d++) {
        PETAL_CHECK(index[d] >= 0 && index[d] < t->shape[d],
                    "tensor_get: index %" PRId64 " out of range for dim %d of size %" PRId64,
                    index[d], d, t->shape[d]);
        flat = flat * t->shape[d] + index[d];
    }
    return tensor_get_flat(t, flat);
}

double tensor_get_flat(const tensor *t, int64_t i) {
    int64_t n = tensor_numel(t);
    PETAL_CHECK(i >= 0 && i < n, "tensor_get_flat: index %" PRId64 " of %" PRId64, i, n);
    if (t->device.type != PETAL_CPU) {
        tensor *h = tensor_to(t, DEVICE_CPU);
        double v = tensor_get_flat(h, i);
        tensor_free(h);
        return v;
    }
    int64_t pos = t->offset;
    for (int d = t->ndim - 1; d >= 0; d--) {
        pos += (i % t->shape[d]) * t->strides[d];
        i /= t->shape[d];
    }
    return load_as_double(t, pos);
}

double tensor_item(const tensor *t) {
    PETAL_CHECK(tensor_numel(t) == 1, "tensor_item: the tensor has %" PRId64 " elements, not 1",
                tensor_numel(t));
    return tensor_get_flat(t, 0);
}

const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && used < size; d++)
        used += (size_t)snprintf(buf + used, size - used, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}
