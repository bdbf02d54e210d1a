// Reductions and their backward rules.
#include "ops/internal.h"
#include "ops/ops.h"

// Shape of x with dim removed (or kept as 1).
static int reduced_shape(const tensor *x, int dim, bool keepdim, int64_t *shape) {
    int nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (d != dim)
            shape[nd++] = x->shape[d];
        else if (keepdim)
            shape[nd++] = 1;
    }
    return nd;
}

// The kernel call shared by every reduction: contiguous input, output in its final shape.
static tensor *reduce_data(reduce_op kind, tensor *x, int dim, bool keepdim) {
    int64_t shape[PETAL_MAX_DIMS];
    int nd = reduced_shape(x, dim, keepdim, shape);
    tensor *xc = view_contiguous(x);
    tensor *out = tensor_empty_on(x->device, x->dtype, nd, shape);
    backend_of(out)->reduce(kind, out, xc, dim);
    tensor_free(xc);
    return out;
}

// The gradient of a reduced result, broadcast back over the reduced dim (a stride-0 view).
static tensor *expand_back(tensor *g, const ag_node *n) {
    int dim = (int)n->attr_i[0];
    bool keepdim = n->attr_i[1];
    tensor *gk = keepdim ? tensor_detach(g) : view_unsqueeze(g, dim);
    tensor *e = view_expand(gk, n->in[0].ndim, n->in[0].shape);
    tensor_free(gk);
    return e;
}

static ag_node *record_reduce(const char *name, ag_backward_fn rule, tensor *out, tensor *x,
                              int dim, bool keepdim) {
    ag_node *n = ag_record(name, rule, out, 1, &x);
    if (n) {
        n->attr_i[0] = dim;
        n->attr_i[1] = keepdim;
    }
    return n;
}

static void sum_backward(ag_node *n, tensor *g, tensor **gin) {
    gin[0] = expand_back(g, n);
}

static void mean_backward(ag_node *n, tensor *g, tensor **gin) {
    tensor *scaled = tensor_div_scalar(g, (double)n->in[0].shape[n->attr_i[0]]);
    gin[0] = expand_back(scaled, n);
}

static tensor *sum_or_mean(reduce_op kind, tensor *x, int dim, bool keepdim) {
    const char *op = kind == REDUCE_SUM ? "tensor_sum" : "tensor_mean";
    ops_check_float(op, x);
    int d = tensor_dim_index(x, dim, op);
    tensor *out = reduce_data(kind, x, d, keepdim);
    if (kind == REDUCE_SUM)
        record_reduce("sum", sum_backward, out, x, d, keepdim);
    else
        record_reduce("mean", mean_backward, out, x, d, keepdim);
    return out;
}

tensor *tensor_sum(tensor *x, int dim, bool keepdim) {
    return sum_or_mean(REDUCE_SUM, x, dim, keepdim);
}

tensor *tensor_mean(tensor *x, int dim, bool keepdim) {
    return sum_or_mean(REDUCE_MEAN, x, dim, keepdim);
}

// max / min: the whole gradient goes to the first extreme element (as torch.max(dim) does).
static void extreme_backward(ag_node *n, tensor *g, tensor **gin) {
    (void)gin;
    int dim = (int)n->attr_i[0];
    tensor *gk = n->attr_i[1] ? tensor_detach(g) : view_unsqueeze(g, dim);
    tensor *gc = view_contiguous(gk);
    tensor *buf = ag_grad_buffer(n, 0);
    backend_of(buf)->scatter_add(buf, dim, ag_saved(n, 0), gc); // saved: keepdim-shaped indices
    tensor_free(gk);
    tensor_free(gc);
}

static tensor *extreme(const char *op, const char *name, reduce_op kind, tensor *x, int dim,
                       bool keepdim, tensor **indices) {
    ops_check_float(op, x);
    int d = tensor_dim_index(x, dim, op);
    PETAL_CHECK(x->shape[d] > 0, "%s: dim %d is empty", op, d);
    int64_t shape[PETAL_MAX_DIMS];
    int nd = reduced_shape(x, d, true, shape);
    tensor *xc = view_contiguous(x);
    tensor *values = tensor_empty_on(x->device, x->dtype, nd, shape);
    tensor *idx = tensor_empty_on(x->device, PETAL_I64, nd, shape);
    backend_of(xc)->arg_reduce(kind, values, idx, xc, d);
    tensor_free(xc);
    if (!keepdim) {
        tensor *v = view_squeeze(values, d), *i = view_squeeze(idx, d);
        tensor_free(values);
        tensor_free(idx);
        values = v;
        idx = i;
    }
    ag_node *n = indices ? NULL : record_reduce(name, extreme_backward, values, x, d, keepdim);
    if (n) {
        tensor *ik = keepdim ? tensor_detach(idx) : view_unsqueeze(idx, d);
        ag_save(n, 0, ik);
        tensor_free(ik);
    }
    if (indices) {
        *indices = idx;
        tensor_free(values);
        return NULL;
    }
    tensor_free(idx);
    return values;
}

tensor *tensor_max(tensor *x, int dim, bool keepdim) {
    return extreme("tensor_max", "max", REDUCE_MAX, x, dim, keepdim, NULL);
}

tensor *tensor_min(tensor *x, int dim, bool keepdim) {
    return extreme("tensor_min", "min", REDUCE_MIN, x, dim, keepdim, NULL);
}

tensor *tensor_argmax(tensor *x, int dim, bool keepdim) {
    tensor *idx;
    extreme("tensor_argmax", "argmax", REDUCE_MAX, x, dim, keepdim, &idx);
    return idx;
}

tensor *tensor_argmin(tensor *x, int dim, bool keepdim) {
    tensor *idx;
    extreme("tensor_argmin", "argmin", REDUCE_MIN, x, dim, keepdim, &idx);
    return idx;
}

// d lse / dx = softmax(x) = exp(x - lse)
static void logsumexp_backward(ag_node *n, tensor *g, tensor **gin) {
    tensor *lse = expand_back(ag_saved(n, 1), n);
    tensor *p = tensor_exp(tensor_sub(ag_saved(n, 0), lse));
    tensor *ge = expand_back(g, n);
    gin[0] = tensor_mul(ge, p);
}

tensor *tensor_logsumexp(tensor *x, int dim, bool keepdim) {
    ops_check_float("tensor_logsumexp", x);
    int d = tensor_dim_index(x, dim, "tensor_logsumexp");
    PETAL_CHECK(x->shape[d] > 0, "tensor_logsumexp: dim %d is empty", d);
    tensor *out = reduce_data(REDUCE_LOGSUMEXP, x, d, keepdim);
    ag_node *n = record_reduce("logsumexp", logsumexp_backward, out, x, d, keepdim);
    if (n) {
        ag_save(n, 0, x);
        ag_save(n, 1, out);
    }
    return out;
}

// Whole-tensor reductions: a 1-D view of every element, reduced over dim 0.
static tensor *reduce_all(tensor *x, tensor *(*reduce)(tensor *, int, bool)) {
    tensor *flat = tensor_reshape(x, SHAPE(-1));
    tensor *out = reduce(flat, 0, false);
    tensor_free(flat);
    return out;
}

tensor *tensor_sum_all(tensor *x) {
    return reduce_all(x, tensor_sum);
}
tensor *tensor_mean_all(tensor *x) {
    return reduce_all(x, tensor_mean);
}

static void topk_backward(ag_node *n, tensor *g, tensor **gin) {
    (void)gin;
    tensor *gc = view_contiguous(g);
    tensor *buf = ag_grad_buffer(n, 0);
    backend_of(buf)->scatter_add(buf, n->in[0].ndim - 1, ag_saved(n, 0), gc);
    tensor_free(gc);
}

tensor *tensor_topk(tensor *x, int64_t k, bool largest, tensor **indices) {
    ops_check_float("tensor_topk", x);
    PETAL_CHECK(x->ndim >= 1, "tensor_topk: needs at least one dim");
    int64_t n_last = x->shape[x->ndim - 1];
    PETAL_CHECK(k >= 0 && k <= n_last, "tensor_topk: k = %lld but the last dim has %lld entries",
                (long long)k, (long long)n_last);
    int64_t shape[PETAL_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = k;
    tensor *xc = view_contiguous(x);
    tensor *values = tensor_empty_on(x->device, x->dtype, x->ndim, shape);
    tensor *idx = tensor_empty_on(x->device, PETAL_I64, x->ndim, shape);
    backend_of(xc)->topk(values, idx, xc, k, largest);
    tensor_free(xc);
    ag_node *n = ag_record("topk", topk_backward, values, 1, &x);
    if (n) ag_save(n, 0, idx);
    if (indices)
        *indices = idx;
    else
        tensor_free(idx);
    return values;
}
