// Joining and indexing: concat, stack, index_select, gather, embedding.
#include <inttypes.h>
#include <stdlib.h>

#include "ops/internal.h"
#include "ops/ops.h"

// Each input's gradient is its window of g along the concat dim.
static void concat_backward(ag_node *n, tensor *g, tensor **gin) {
    int dim = (int)n->attr_i[0];
    int64_t start = 0;
    for (int i = 0; i < n->n_in; i++) {
        int64_t len = n->in[i].shape[dim];
        if (ag_needs(n, i)) gin[i] = view_slice(g, dim, start, start + len, 1);
        start += len;
    }
}

tensor *tensor_concat(tensor *const *ts, int n, int dim) {
    const char *op = "tensor_concat";
    PETAL_CHECK(n >= 1, "%s: no tensors", op);
    const tensor *t0 = ts[0];
    int d = tensor_dim_index(t0, dim, op);
    int64_t shape[PETAL_MAX_DIMS];
    for (int k = 0; k < t0->ndim; k++) shape[k] = t0->shape[k];
    shape[d] = 0;
    for (int i = 0; i < n; i++) {
        ops_check_pair(op, t0, ts[i]);
        char s0[SHAPE_STR_MAX], si[SHAPE_STR_MAX];
        bool ok = ts[i]->ndim == t0->ndim;
        for (int k = 0; ok && k < t0->ndim; k++) ok = k == d || ts[i]->shape[k] == t0->shape[k];
        PETAL_CHECK(ok, "%s: tensor %d has shape %s, incompatible with %s outside dim %d", op, i,
                    shape_str(ts[i]->ndim, ts[i]->shape, si, sizeof si),
                    shape_str(t0->ndim, t0->shape, s0, sizeof s0), d);
        shape[d] += ts[i]->shape[d];
    }
    tensor *out = tensor_empty_on(t0->device, t0->dtype, t0->ndim, shape);
    int64_t start = 0;
    for (int i = 0; i < n; i++) {
        tensor *window = view_slice(out, d, start, start + ts[i]->shape[d], 1);
        backend_of(out)->copy(window, ts[i]);
        tensor_free(window);
        start += ts[i]->shape[d];
    }
    ag_node *node = ag_record("concat", concat_backward, out, n, ts);
    if (node) node->attr_i[0] = d;
    return out;
}

tensor *tensor_stack(tensor *const *ts, int n, int dim) {
    PETAL_CHECK(n >= 1, "tensor_stack: no tensors");
    tensor **u = malloc((size_t)n * sizeof *u);
    PETAL_CHECK(u != NULL, "tensor_stack: out of host memory");
    for (int i = 0; i < n; i++) u[i] = tensor_unsqueeze(ts[i], dim);
    tensor *out = tensor_concat(u, n, dim < 0 ? dim + ts[0]->ndim + 1 : dim);
    for (int i = 0; i < n; i++) tensor_free(u[i]);
    free(u);
    return out;
}

// index_select and gather share their shape: pick along `dim` of a contiguous x by a contiguous
// index, and scatter-add the gradient back into the input's buffer by the same index.
typedef enum { PICK_INDEX_SELECT, PICK_GATHER } pick_kind;

static void pick_backward(ag_node *n, tensor *g, tensor **gin) {
    (void)gin;
    tensor *gc = view_contiguous(g);
    tensor *buf = ag_grad_buffer(n, 0);
    int dim = (int)n->attr_i[0];
    if (n->attr_i[1] == PICK_INDEX_SELECT)
        backend_of(buf)->index_add(buf, dim, ag_saved(n, 0), gc);
    else
        backend_of(buf)->scatter_add(buf, dim, ag_saved(n, 0), gc);
    tensor_free(gc);
}

static tensor *pick(pick_kind kind, tensor *x, int dim, tensor *index, int ndim,
                    const int64_t *shape) {
    tensor *xc = view_contiguous(x), *ic = view_contiguous(index);
    tensor *out = tensor_empty_on(x->device, x->dtype, ndim, shape);
    if (kind == PICK_INDEX_SELECT)
        backend_of(out)->index_select(out, xc, dim, ic);
    else
        backend_of(out)->gather(out, xc, dim, ic);
    const char *name = kind == PICK_INDEX_SELECT ? "index_select" : "gather";
    ag_node *n = ag_record(name, pick_backward, out, 1, &x);
    if (n) {
        ag_save(n, 0, ic);
        n->attr_i[0] = dim;
        n->attr_i[1] = kind;
    }
    tensor_free(xc);
    tensor_free(ic);
    return out;
}

tensor *tensor_index_select(tensor *x, int dim, tensor *index) {
    const char *op = "tensor_index_select";
    ops_check_index(op, x, index);
    PETAL_CHECK(index->ndim == 1, "%s: the index must be 1-D, got %d dims", op, index->ndim);
    int d = tensor_dim_index(x, dim, op);
    int64_t shape[PETAL_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) shape[k] = x->shape[k];
    shape[d] = index->shape[0];
    return pick(PICK_INDEX_SELECT, x, d, index, x->ndim, shape);
}

tensor *tensor_gather(tensor *x, int dim, tensor *index) {
    const char *op = "tensor_gather";
    ops_check_index(op, x, index);
    int d = tensor_dim_index(x, dim, op);
    char sx[SHAPE_STR_MAX], si[SHAPE_STR_MAX];
    bool ok = index->ndim == x->ndim;
    for (int k = 0; ok && k < x->ndim; k++) ok = k == d || index->shape[k] == x->shape[k];
    PETAL_CHECK(ok, "%s: index %s must match the input %s in every dim but %d", op,
                shape_str(index->ndim, index->shape, si, sizeof si),
                shape_str(x->ndim, x->shape, sx, sizeof sx), d);
    return pick(PICK_GATHER, x, d, index, index->ndim, index->shape);
}

tensor *tensor_embedding(tensor *weight, tensor *ids) {
    char sw[SHAPE_STR_MAX];
    PETAL_CHECK(weight->ndim == 2, "tensor_embedding: weight must be (num, dim), got %s",
                shape_str(weight->ndim, weight->shape, sw, sizeof sw));
    PETAL_CHECK(ids->ndim < PETAL_MAX_DIMS, "tensor_embedding: ids have too many dims");
    tensor *flat = tensor_reshape(ids, SHAPE(-1));
    tensor *rows = tensor_index_select(weight, 0, flat);
    int64_t shape[PETAL_MAX_DIMS];
    for (int k = 0; k < ids->ndim; k++) shape[k] = ids->shape[k];
    shape[ids->ndim] = weight->shape[1];
    tensor *out = tensor_reshape(rows, ids->ndim + 1, shape);
    tensor_free(flat);
    tensor_free(rows);
    return out;
}
