// Matrix products: matmul with broadcast batch dims, and linear (x W^T + b).
#include "ops/internal.h"
#include "ops/ops.h"

// c = a @ b into a new tensor of the broadcast batch shape.
static tensor *matmul_data(const char *op, tensor *a, tensor *b) {
    ops_check_pair(op, a, b);
    ops_check_float(op, a);
    char sa[SHAPE_STR_MAX], sb[SHAPE_STR_MAX];
    PETAL_CHECK(a->ndim >= 2 && b->ndim >= 2, "%s: operands must have at least 2 dims, got %s @ %s",
                op, shape_str(a->ndim, a->shape, sa, sizeof sa),
                shape_str(b->ndim, b->shape, sb, sizeof sb));
    int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1], n = b->shape[b->ndim - 1];
    PETAL_CHECK(b->shape[b->ndim - 2] == k, "%s: inner dimensions differ: %s @ %s", op,
                shape_str(a->ndim, a->shape, sa, sizeof sa),
                shape_str(b->ndim, b->shape, sb, sizeof sb));
    int64_t shape[PETAL_MAX_DIMS];
    int nb = shape_broadcast(op, a->ndim - 2, a->shape, b->ndim - 2, b->shape, shape);
    shape[nb] = m;
    shape[nb + 1] = n;
    tensor *c = tensor_empty_on(a->device, a->dtype, nb + 2, shape);
    backend_matmul(c, a, b, 1.0, 0.0);
    return c;
}

// Rows of a tensor as a 2-D (rows, last) matrix; a view when the strides allow it.
static tensor *as_rows(tensor *t) {
    return tensor_reshape(t, SHAPE(-1, t->shape[t->ndim - 1]));
}

// acc (seen as rows of m's width) += g_rows @ m: an input gradient added in place, in one GEMM
// with beta = 1, into what the input has accumulated (ag_grad_accumulated).
static void add_product_into(tensor *acc, tensor *g_rows, tensor *m) {
    tensor *acc_rows = tensor_reshape(acc, SHAPE(-1, m->shape[1])); // a view: acc is contiguous
    backend_matmul(acc_rows, g_rows, m, 1.0, 1.0);
    tensor_free(acc_rows);
}

// da = g b^T; with one shared matrix b (x V of a PETL projection) it has a's shape and is added
// in place into what a has accumulated when there is something (NULL returned then).
static tensor *matmul_input_grad(ag_node *n, tensor *g, tensor *b) {
    tensor *bt = tensor_transpose(b, -1, -2), *acc = NULL;
    if (n->in[1].ndim == 2 && (acc = ag_grad_accumulated(n, 0))) {
        tensor *g_rows = as_rows(g);
        add_product_into(acc, g_rows, bt);
        tensor_free(g_rows);
        return NULL;
    }
    return ops_sum_to(tensor_matmul(g, bt), n, 0);
}

static void matmul_backward(ag_node *n, tensor *g, tensor **gin) {
    tensor *a = ag_saved(n, 0), *b = ag_saved(n, 1);
    if (ag_needs(n, 0)) gin[0] = matmul_input_grad(n, g, b);
    if (!ag_needs(n, 1)) return;
    if (n->in[1].ndim == 2 && n->in[0].ndim > 2) // one shared matrix: one GEMM over all rows
        gin[1] = tensor_matmul(tensor_transpose(as_rows(a), 0, 1), as_rows(g));
    else
        gin[1] = ops_sum_to(tensor_matmul(tensor_transpose(a, -1, -2), g), n, 1);
}

tensor *tensor_matmul(tensor *a, tensor *b) {
    tensor *c = matmul_data("tensor_matmul", a, b);
    ag_node *n = ag_record("matmul", matmul_backward, c, 2, (tensor *[]){a, b});
    if (n && ag_needs(n, 1)) ag_save(n, 0, a); // da needs b, db needs a
    if (n && ag_needs(n, 0)) ag_save(n, 1, b);
    return c;
}

// dx = g W, added in place to what x has accumulated (another layer reading the same x, such as a
// PETL projection) when that can be done, else a new tensor x's slot can adopt. Returns NULL when
// added in place.
static tensor *linear_input_grad(ag_node *n, tensor *g_rows) {
    tensor *w = ag_saved(n, 1), *acc = ag_grad_accumulated(n, 0);
    if (acc) {
        add_product_into(acc, g_rows, w);
        return NULL;
    }
    tensor *dx = tensor_matmul(g_rows, w);
    tensor *shaped = tensor_reshape(dx, n->in[0].ndim, n->in[0].shape);
    tensor_free(dx); // the view alone holds the storage, so x's slot can adopt it
    return shaped;
}

// The low-rank terms' gradients: z_k and v_k are inputs first_in + 2 k and + 1, saved at
// first_saved + 2 k and + 1; g_rows (N, out) is the output's gradient.
static void lowrank_terms_backward(ag_node *n, tensor *g_rows, tensor **gin, int first_in,
                                   int first_saved) {
    for (int k = 0; first_in + 2 * k < n->n_in; k++) {
        int iz = first_in + 2 * k, iv = iz + 1;
        tensor *z = ag_saved(n, first_saved + 2 * k), *v = ag_saved(n, first_saved + 2 * k + 1);
        const ag_edge *ze = &n->in[iz];
        // (N, out) seen as (N m, out / m): row j of each output row belongs to z[..., j, :]
        tensor *gk = tensor_reshape(g_rows, SHAPE(-1, n->in[iv].shape[0])); // (N m, out / m)
        if (ag_needs(n, iz)) gin[iz] = tensor_reshape(tensor_matmul(gk, v), ze->ndim, ze->shape);
        if (ag_needs(n, iv)) gin[iv] = tensor_matmul(tensor_transpose(gk, 0, 1), as_rows(z));
    }
}

// Inputs: x, w, b, then z_k and v_k for each term. Saved: x, w, then z_k and v_k.
static void linear_backward(ag_node *n, tensor *g, tensor **gin) {
    tensor *g_rows = as_rows(g); // (N, out)
    if (ag_needs(n, 0)) gin[0] = linear_input_grad(n, g_rows);
    if (ag_needs(n, 1))
        gin[1] = tensor_matmul(tensor_transpose(g_rows, 0, 1), as_rows(ag_saved(n, 0)));
    if (ag_needs(n, 2)) gin[2] = tensor_sum(g_rows, 0, false);
    lowrank_terms_backward(n, g_rows, gin, 3, 2);
}

static void check_term(const char *op, const tensor *x, int64_t n_out, const tensor *z,
                       const tensor *v) {
    ops_check_pair(op, x, z);
    ops_check_pair(op, x, v);
    char sz[SHAPE_STR_MAX], sv[SHAPE_STR_MAX], sx[SHAPE_STR_MAX];
    bool ok = z->ndim == x->ndim + 1 && v->ndim == 2 && z->shape[z->ndim - 1] == v->shape[1] &&
              z->shape[z->ndim - 2] * v->shape[0] == n_out;
    for (int d = 0; ok && d < x->ndim - 1; d++) ok = z->shape[d] == x->shape[d];
    PETAL_CHECK(ok,
                "%s: low-rank term z %s, v %s does not fit input %s and %lld outputs (expects "
                "(..., m, R) and (out / m, R))",
                op, shape_str(z->ndim, z->shape, sz, sizeof sz),
                shape_str(v->ndim, v->shape, sv, sizeof sv),
                shape_str(x->ndim, x->shape, sx, sizeof sx), (long long)n_out);
}

// Saves what the terms' backward reads: z_k for dv_k, v_k for dz_k (inputs first_in + 2 k, + 1).
static void lowrank_terms_save(ag_node *n, int n_terms, tensor *const *z, tensor *const *v,
                               int first_in, int first_saved) {
    for (int k = 0; k < n_terms; k++) {
        if (ag_needs(n, first_in + 2 * k + 1)) ag_save(n, first_saved + 2 * k, z[k]);
        if (ag_needs(n, first_in + 2 * k)) ag_save(n, first_saved + 2 * k + 1, v[k]);
    }
}

// y (..., out) += z (..., m, R) @ v^T, written as (N m, out / m) += (N m, R) @ (R, out / m).
static void accumulate_term(tensor *y, tensor *z, tensor *v) {
    tensor *zc = tensor_contiguous(tensor_detach(z));
    tensor *z2 = view_reshape(zc, SHAPE(-1, z->shape[z->ndim - 1]));
    tensor *y2 = view_reshape(y, SHAPE(-1, v->shape[0]));
    tensor *vt = view_transpose(v, 0, 1);
    backend_matmul(y2, z2, vt, 1.0, 1.0);
    tensor *temps[] = {zc, z2, y2, vt};
    for (int i = 0; i < 4; i++) tensor_free(temps[i]);
}

tensor *tensor_linear_lowrank(tensor *x, tensor *w, tensor *b, int n_terms, tensor *const *z,
                              tensor *const *v) {
    const char *op = "tensor_linear";
    ops_check_pair(op, x, w);
    ops_check_float(op, x);
    char sx[SHAPE_STR_MAX], sw[SHAPE_STR_MAX];
    PETAL_CHECK(w->ndim == 2 && x->ndim >= 1 && x->shape[x->ndim - 1] == w->shape[1],
                "%s: input %s does not match weight %s (expects (..., in) and (out, in))", op,
                shape_str(x->ndim, x->shape, sx, sizeof sx),
                shape_str(w->ndim, w->shape, sw, sizeof sw));
    PETAL_CHECK(n_terms >= 0 && n_terms <= LINEAR_MAX_TERMS, "%s: %d low-rank terms (at most %d)",
                op, n_terms, LINEAR_MAX_TERMS);
    int64_t n_out = w->shape[0];
    if (b) {
        ops_check_pair(op, x, b);
        PETAL_CHECK(b->ndim == 1 && b->shape[0] == n_out, "%s: bias %s, expected [%lld]", op,
                    shape_str(b->ndim, b->shape, sx, sizeof sx), (long long)n_out);
    }
    for (int k = 0; k < n_terms; k++) check_term(op, x, n_out, z[k], v[k]);
    int64_t shape[PETAL_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = n_out;
    tensor *y = tensor_empty_on(x->device, x->dtype, x->ndim, shape);
    tensor *x2 = x->ndim == 1 ? view_unsqueeze(x, 0) : tensor_detach(x);
    tensor *y2 = x->ndim == 1 ? view_unsqueeze(y, 0) : tensor_detach(y);
    tensor *wt = view_transpose(w, 0, 1);
    // The bias inside the GEMM where the backend can (cuBLASLt's epilogue); else it goes in first
    // and the GEMM accumulates onto it (beta = 1). No separate add pass either way.
    if (!b || !backend_linear_bias(y2, x2, wt, b)) {
        if (b) backend_of(y)->copy(y, b);
        backend_matmul(y2, x2, wt, 1.0, b ? 1.0 : 0.0);
    }
    for (int k = 0; k < n_terms; k++) accumulate_term(y, z[k], v[k]);
    tensor_free(x2);
    tensor_free(y2);
    tensor_free(wt);
    tensor *in[3 + 2 * LINEAR_MAX_TERMS] = {x, w, b};
    for (int k = 0; k < n_terms; k++) in[3 + 2 * k] = z[k], in[4 + 2 * k] = v[k];
    ag_node *n = ag_record("linear", linear_backward, y, 3 + 2 * n_terms, in);
    if (!n) return y;
    if (ag_needs(n, 1)) ag_save(n, 0, x); // dW = g^T x: only a trainable W keeps x alive
    if (ag_needs(n, 0)) ag_save(n, 1, w); // dx = g W
    lowrank_terms_save(n, n_terms, z, v, 3, 2);
    return y;
}

// Inputs: base, then z_k and v_k for each term. Saved: z_k and v_k.
static void add_lowrank_backward(ag_node *n, tensor *g, tensor **gin) {
    if (ag_needs(n, 0)) gin[0] = g;
    lowrank_terms_backward(n, as_rows(g), gin, 1, 0);
}

tensor *tensor_add_lowrank(tensor *base, int n_terms, tensor *const *z, tensor *const *v) {
    const char *op = "tensor_add_lowrank";
    ops_check_float(op, base);
    PETAL_CHECK(n_terms >= 0 && n_terms <= LINEAR_MAX_TERMS, "%s: %d low-rank terms (at most %d)",
                op, n_terms, LINEAR_MAX_TERMS);
    int64_t n_out = base->shape[base->ndim - 1];
    for (int k = 0; k < n_terms; k++) check_term(op, base, n_out, z[k], v[k]);
    tensor *y = tensor_empty_on(base->device, base->dtype, base->ndim, base->shape);
    backend_of(y)->copy(y, base);
    for (int k = 0; k < n_terms; k++) accumulate_term(y, z[k], v[k]);
    tensor *in[1 + 2 * LINEAR_MAX_TERMS] = {base};
    for (int k = 0; k < n_terms; k++) in[1 + 2 * k] = z[k], in[2 + 2 * k] = v[k];
    ag_node *n = ag_record("add_lowrank", add_lowrank_backward, y, 1 + 2 * n_terms, in);
    if (n) lowrank_terms_save(n, n_terms, z, v, 1, 0);
    return y;
}

tensor *tensor_linear(tensor *x, tensor *w, tensor *b) {
    return tensor_linear_lowrank(x, w, b, 0, NULL, NULL);
}
