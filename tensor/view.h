// Views without autograd: new tensor structs over the same storage. ops/ wraps each of them with a
// backward rule (ops/view.c); use these directly only in kernels, loaders and no-grad code.
#pragma once

#include <stdbool.h>

#include "tensor/tensor.h"

// Shape with at most one -1 (inferred). Returns NULL when the strides of t cannot express the new
// shape without a copy (then call it on a contiguous copy).
tensor *view_reshape(const tensor *t, int ndim, const int64_t *shape);
tensor *view_permute(const tensor *t, const int *perm);
tensor *view_transpose(const tensor *t, int d0, int d1);
tensor *view_slice(const tensor *t, int dim, int64_t start, int64_t end, int64_t step);
tensor *view_select(const tensor *t, int dim, int64_t index); // removes dim
tensor *view_expand(const tensor *t, int ndim, const int64_t *shape);
tensor *view_squeeze(const tensor *t, int dim);
tensor *view_unsqueeze(const tensor *t, int dim);
// t itself (a new struct) if contiguous, else a contiguous copy.
tensor *view_contiguous(const tensor *t);

// Resolves Python-style slice bounds (negative counts from the end, end clipped to n) in place;
// aborts naming `op` when they are out of range.
void slice_resolve(const char *op, int64_t n, int64_t *start, int64_t *end, int64_t step);
// Resolves one -1 in `shape` against numel; aborts (naming `op`) if the sizes do not match.
void shape_infer(const char *op, int64_t numel, int ndim, const int64_t *in, int64_t *out);
// NumPy broadcasting of a and b into out (returns out's ndim); aborts naming `op` and both shapes.
int shape_broadcast(const char *op, int na, const int64_t *a, int nb, const int64_t *b,
                    int64_t *out);
