// softmax and log_softmax along a dim, with fused backward kernels.
#include "ops/internal.h"
#include "ops/ops.h"

static void softmax_backward(ag_node *n, tensor *g, tensor **gin) {
    tensor *gc = view_contiguous(g);
    tensor *gx = tensor_empty_like(gc);
    backend_of(gx)->softmax_backward(gx, gc, ag_saved(n, 0), (int)n->attr_i[0], n->attr_i[1]);
    tensor_free(gc);
    gin[0] = gx;
}

static tensor *softmax_op(const char *op, tensor *x, int dim, bool as_log) {
    ops_check_float(op, x);
    int d = tensor_dim_index(x, dim, op);
    tensor *xc = view_contiguous(x);
    tensor *y = tensor_empty_like(xc);
    backend_of(y)->softmax(y, xc, d, as_log);
    tensor_free(xc);
    ag_node *n = ag_record(as_log ? "log_softmax" : "softmax", softmax_backward, y, 1, &x);
    if (n) {
        ag_save(n, 0, y);
        n->attr_i[0] = d;
        n->attr_i[1] = as_log;
    }
    return y;
}

tensor *tensor_softmax(tensor *x, int dim) {
    return softmax_op("tensor_softmax", x, dim, false);
}

tensor *tensor_log_softmax(tensor *x, int dim) {
    return softmax_op("tensor_log_softmax", x, dim, true);
}
