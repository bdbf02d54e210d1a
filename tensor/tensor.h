// The tensor: a strided view over a refcounted storage block (docs/architecture.md "Tensor").
//
// Ownership. A tensor created while a scope is open (tensor/scope.h) belongs to that scope and is
// released when the scope ends; one created with no scope open belongs to the caller, who releases
// it with tensor_free. Views and autograd nodes hold their own references, so freeing a tensor
// early never invalidates a view of it or a graph that saved it.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tensor/device.h"
#include "tensor/dtype.h"

#define PETAL_MAX_DIMS 6

// Shape literals: tensor_zeros(PETAL_F32, SHAPE(4, 197, 768)) passes ndim and a shape array.
#ifdef __cplusplus
// C++ has no compound literals. There the sizes go into a returned array that lives until the end
// of the full expression (the call SHAPE is an argument of), and the count is taken unevaluated,
// so each size is evaluated once, as in C. extern "C++": petal.h includes this inside extern "C".
extern "C++" {
struct petal_shape_array {
    int64_t dims[PETAL_MAX_DIMS];
};
template <typename... T> char (&petal_shape_ndim(T...))[sizeof...(T)];
template <typename... T> inline petal_shape_array petal_shape_of(T... dims) {
    static_assert(sizeof...(T) >= 1 && sizeof...(T) <= PETAL_MAX_DIMS,
                  "SHAPE takes 1 to PETAL_MAX_DIMS sizes");
    return {{static_cast<int64_t>(dims)...}};
}
}
#define SHAPE(...) (int)sizeof(petal_shape_ndim(__VA_ARGS__)), petal_shape_of(__VA_ARGS__).dims
#else
#define SHAPE(...)                                                                                 \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]) {                 \
        __VA_ARGS__                                                                                \
    }
#endif

typedef struct tensor_storage {
    void *data;
    size_t nbytes;    // what the tensors need
    size_t capacity;  // what the allocator handed out (>= nbytes)
    uint64_t version; // bumped by every in-place write (copy_, fill_, random fills, optimizers)
    int64_t serial;   // its device's allocation count when it was made (memory_stats n_allocs)
    petal_device device;
    int refs;
} tensor_storage;

struct ag_node;
struct scope;

typedef struct tensor {
    petal_dtype dtype;
    petal_device device;
    int ndim;
    int64_t shape[PETAL_MAX_DIMS];
    int64_t strides[PETAL_MAX_DIMS]; // in elements
    int64_t offset;                  // in elements, from the start of the storage
    tensor_storage *storage;

    // Autograd (autograd/): a leaf that requires grad accumulates into `grad`; a tensor computed
    // from such leaves points at the node that made it.
    bool requires_grad;
    struct tensor *grad;
    struct ag_node *grad_fn;

    // Ownership: one reference for the owner (scope or caller) plus one per view-less holder
    // (autograd edges and saved tensors). `owner` is the scope that holds the owner reference.
    int refs;
    struct scope *owner;
    struct tensor *scope_prev, *scope_next;
} tensor;

// ---- creation (CPU unless a device is given) ----
tensor *tensor_empty(petal_dtype dtype, int ndim, const int64_t *shape);
tensor *tensor_empty_on(petal_device device, petal_dtype dtype, int ndim, const int64_t *shape);
tensor *tensor_zeros(petal_dtype dtype, int ndim, const int64_t *shape);
tensor *tensor_zeros_on(petal_device device, petal_dtype dtype, int ndim, const int64_t *shape);
tensor *tensor_ones(petal_dtype dtype, int ndim, const int64_t *shape);
tensor *tensor_full(petal_dtype dtype, int ndim, const int64_t *shape, double value);
tensor *tensor_scalar(petal_dtype dtype, double value); // a 0-d tensor
tensor *tensor_arange(petal_dtype dtype, double start, double end, double step);
tensor *tensor_from_data(petal_dtype dtype, int ndim, const int64_t *shape, const void *data);
tensor *tensor_empty_like(const tensor *t);
tensor *tensor_zeros_like(const tensor *t);

// A contiguous copy with no autograd history, on the same device.
tensor *tensor_clone_data(const tensor *t);
// A copy on another device (the same tensor, with a new reference, if already there).
tensor *tensor_to(const tensor *t, petal_device device);
// A contiguous copy converted to another dtype, without autograd history.
tensor *tensor_cast(const tensor *t, petal_dtype dtype);

// ---- ownership ----
void tensor_free(tensor *t);    // releases the owner reference (NULL is fine)
tensor *tensor_keep(tensor *t); // takes t out of its scope: the caller now owns it
// A new tensor struct that views t's data with no autograd history (like torch's detach()).
tensor *tensor_detach(const tensor *t);

// ---- in-place data operations (no autograd); each bumps the storage's version ----
void tensor_fill_(tensor *t, double value);
void tensor_copy_(tensor *dst, const tensor *src); // same shape; converts dtype; any device pair
// For code that writes a tensor's memory directly: marks it changed, so caches keyed on the
// storage version (petl/cp.c's shared projections) see the write.
void tensor_bump_version(tensor *t);

// ---- queries ----
int64_t tensor_numel(const tensor *t);
size_t tensor_nbytes(const tensor *t);
bool tensor_is_contiguous(const tensor *t);
// Elements cover a gap-free, non-overlapping block starting at the offset, in some dim order
// (a permutation of a contiguous tensor is dense; an expanded or sliced one is not).
bool tensor_is_dense(const tensor *t);
bool tensor_same_shape(const tensor *a, const tensor *b);
int64_t tensor_size(const tensor *t, int dim);                  // negative dims count from the end
int tensor_dim_index(const tensor *t, int dim, const char *op); // normalises, aborts if bad

// Host pointer to the first element (CPU tensors only).
void *tensor_data(const tensor *t);
float *tensor_data_f32(const tensor *t);
double *tensor_data_f64(const tensor *t);
int64_t *tensor_data_i64(const tensor *t);
int32_t *tensor_data_i32(const tensor *t);

// Element access for tests and examples: any dtype and device, converted to double.
double tensor_item(const tensor *t);                      // a one-element tensor
double tensor_get(const tensor *t, const int64_t *index); // ndim indices
double tensor_get_flat(const tensor *t, int64_t i);       // i-th element in row-major order
// Copies all elements in row-major order into `out` (numel doubles).
void tensor_to_doubles(const tensor *t, double *out);

// "[4, 197, 768]" into buf; returns buf.
const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t size);
#define SHAPE_STR_MAX 96

// Internal: a new tensor struct over `storage` (takes a storage reference) registered with the
// current scope. Used by views and by backends.
tensor *tensor_make_view(tensor_storage *storage, petal_dtype dtype, int ndim, const int64_t *shape,
                         const int64_t *strides, int64_t offset);
void tensor_retain(tensor *t);  // adds a holder reference (autograd edges, saved tensors)
void tensor_release(tensor *t); // drops a holder reference; never touches scope ownership
void tensor_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);

// Internal: autograd installs the function that drops a tensor's reference to its grad_fn node,
// so that this layer never calls upward into autograd/.
void tensor_set_grad_fn_release(void (*release)(struct ag_node *node));
