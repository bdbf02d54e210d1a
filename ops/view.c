// Views with backward rules. Forward results share storage with their input.
#include <string.h>

#include "ops/internal.h"
#include "ops/ops.h"

// Any op whose gradient is g laid back into the input's shape: reshape, flatten, (un)squeeze.
static void reshape_backward(ag_node *n, tensor *g, tensor **gin) {
    gin[0] = tensor_reshape(g, n->in[0].ndim, n->in[0].shape);
}

static tensor *record_view(tensor *out, tensor *x, const char *name, ag_backward_fn rule) {
    ag_record(name, rule, out, 1, &x);
    return out;
}

tensor *tensor_reshape(tensor *x, int ndim, const int64_t *shape) {
    tensor *out = view_reshape(x, ndim, shape);
    if (!out) { // the strides cannot express the new shape: copy first
        tensor *c = tensor_clone_data(x);
        out = view_reshape(c, ndim, shape);
        tensor_free(c);
    }
    record_view(out, x, "reshape", reshape_backward);
    if (out->grad_fn) out->grad_fn->reshape = true;
    return out;
}

tensor *tensor_flatten(tensor *x, int start_dim, int end_dim) {
    if (x->ndim == 0) return tensor_reshape(x, SHAPE(1));
    int s = tensor_dim_index(x, start_dim, "tensor_flatten");
    int e = tensor_dim_index(x, end_dim, "tensor_flatten");
    PETAL_CHECK(s <= e, "tensor_flatten: start_dim %d after end_dim %d", s, e);
    int64_t shape[PETAL_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (d <= s || d > e)
            shape[nd++] = x->shape[d];
        else
            shape[nd - 1] *= x->shape[d];
    }
    return tensor_reshape(x, nd, shape);
}

tensor *tensor_squeeze(tensor *x, int dim) {
    return record_view(view_squeeze(x, dim), x, "squeeze", reshape_backward);
}

tensor *tensor_unsqueeze(tensor *x, int dim) {
    return record_view(view_unsqueeze(x, dim), x, "unsqueeze", reshape_backward);
}

static void permute_backward(ag_node *n, tensor *g, tensor **gin) {
    int inverse[PETAL_MAX_DIMS];
    for (int d = 0; d < g->ndim; d++) inverse[n->attr_i[d]] = d;
    gin[0] = tensor_permute(g, inverse);
}

tensor *tensor_permute(tensor *x, const int *perm) {
    tensor *out = view_permute(x, perm);
    ag_node *n = ag_record("permute", permute_backward, out, 1, &x);
    for (int d = 0; n && d < x->ndim; d++) n->attr_i[d] = perm[d] < 0 ? perm[d] + x->ndim : perm[d];
    return out;
}

tensor *tensor_transpose(tensor *x, int d0, int d1) {
    int a = tensor_dim_index(x, d0, "tensor_transpose"),
        b = tensor_dim_index(x, d1, "tensor_transpose");
    int perm[PETAL_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) perm[d] = d;
    perm[a] = b;
    perm[b] = a;
    return tensor_permute(x, perm);
}

// slice / select: g is added into the same window of the input's gradient buffer.
static void window_backward(ag_node *n, tensor *g, tensor **gin) {
    (void)gin;
    tensor *buf = ag_grad_buffer(n, 0);
    int dim = (int)n->attr_i[0];
    bool is_select = n->attr_i[4];
    tensor *window = is_select ? view_select(buf, dim, n->attr_i[1])
                               : view_slice(buf, dim, n->attr_i[1], n->attr_i[2], n->attr_i[3]);
    backend_of(buf)->binary(BINARY_ADD, window, window, g, 0, 0);
    tensor_free(window);
}

static tensor *record_window(tensor *out, tensor *x, int dim, int64_t start, int64_t end,
                             int64_t step, bool is_select) {
    ag_node *n = ag_record(is_select ? "select" : "slice", window_backward, out, 1, &x);
    if (n) {
        n->attr_i[0] = dim;
        n->attr_i[1] = start;
        n->attr_i[2] = end;
        n->attr_i[3] = step;
        n->attr_i[4] = is_select;
    }
    return out;
}

tensor *tensor_slice(tensor *x, int dim, int64_t start, int64_t end, int64_t step) {
    int d = tensor_dim_index(x, dim, "tensor_slice");
    slice_resolve("tensor_slice", x->shape[d], &start, &end, step);
    tensor *out = view_slice(x, d, start, end, step);
    return record_window(out, x, d, start, end, step, false);
}

tensor *tensor_select(tensor *x, int dim, int64_t index) {
    int d = tensor_dim_index(x, dim, "tensor_select");
    tensor *out = view_select(x, d, index);
    int64_t i = index < 0 ? index + x->shape[d] : index;
    return record_window(out, x, d, i, 0, 1, true);
}

static void expand_backward(ag_node *n, tensor *g, tensor **gin) {
    gin[0] = ops_sum_to(g, n, 0);
}

tensor *tensor_expand(tensor *x, int ndim, const int64_t *shape) {
    return record_view(view_expand(x, ndim, shape), x, "expand", expand_backward);
}

static void contiguous_backward(ag_node *n, tensor *g, tensor **gin) {
    (void)n;
    gin[0] = g;
}

tensor *tensor_contiguous(tensor *x) {
    return record_view(view_contiguous(x), x, "contiguous", contiguous_backward);
}
