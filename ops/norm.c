// Normalisations: layer_norm (fused kernels) and L2 normalize.
#include <math.h>

#include "ops/internal.h"
#include "ops/ops.h"

static void layer_norm_backward(ag_node *n, tensor *g, tensor **gin) {
    tensor *x = ag_saved(n, 0), *mean = ag_saved(n, 1), *rstd = ag_saved(n, 2), *w = ag_saved(n, 3);
    int64_t d = x->shape[x->ndim - 1];
    tensor *gc = view_contiguous(g);
    tensor *gx = ag_needs(n, 0) ? tensor_empty_like(x) : NULL;
    tensor *gw = ag_needs(n, 1) ? tensor_empty_on(x->device, x->dtype, SHAPE(d)) : NULL;
    tensor *gb = ag_needs(n, 2) ? tensor_empty_on(x->device, x->dtype, SHAPE(d)) : NULL;
    backend_of(x)->layer_norm_backward(gx, gw, gb, gc, x, mean, rstd, w);
    tensor_free(gc);
    gin[0] = gx;
    gin[1] = gw;
    gin[2] = gb;
}

static void check_affine(const tensor *x, const tensor *p, const char *name) {
    if (!p) return;
    ops_check_pair("tensor_layer_norm", x, p);
    char sp[SHAPE_STR_MAX];
    PETAL_CHECK(p->ndim == 1 && p->shape[0] == x->shape[x->ndim - 1],
                "tensor_layer_norm: %s has shape %s, expected [%lld] (the last dim of the input)",
                name, shape_str(p->ndim, p->shape, sp, sizeof sp),
                (long long)x->shape[x->ndim - 1]);
}

tensor *tensor_layer_norm(tensor *x, tensor *w, tensor *b, double eps) {
    ops_check_float("tensor_layer_norm", x);
    PETAL_CHECK(x->ndim >= 1, "tensor_layer_norm: needs at least one dim");
    check_affine(x, w, "weight");
    check_affine(x, b, "bias");
    tensor *xc = view_contiguous(x);
    tensor *wc = w ? view_contiguous(w) : NULL, *bc = b ? view_contiguous(b) : NULL;
    int64_t rows = tensor_numel(x) / (x->shape[x->ndim - 1] ? x->shape[x->ndim - 1] : 1);
    tensor *y = tensor_empty_like(xc);
    tensor *mean = tensor_empty_on(x->device, x->dtype, SHAPE(rows));
    tensor *rstd = tensor_empty_on(x->device, x->dtype, SHAPE(rows));
    backend_of(y)->layer_norm(y, mean, rstd, xc, wc, bc, eps);
    ag_node *n = ag_record("layer_norm", layer_norm_backward, y, 3, (tensor *[]){x, w, b});
    if (n) {
        ag_save(n, 0, xc);
        ag_save(n, 1, mean);
        ag_save(n, 2, rstd);
        if (wc) ag_save(n, 3, wc);
    }
    tensor_free(xc);
    tensor_free(wc);
    tensor_free(bc);
    tensor_free(mean);
    tensor_free(rstd);
    return y;
}

// y = x / max(|x|, eps):  gx = (g - y sum(g y) [|x| > eps]) / max(|x|, eps)
static void normalize_backward(ag_node *n, tensor *g, tensor **gin) {
    int dim = (int)n->attr_i[0];
    tensor *y = ag_saved(n, 0), *denom = ag_saved(n, 1), *active = ag_saved(n, 2);
    tensor *dot = tensor_mul(tensor_sum(tensor_mul(g, y), dim, true), active);
    gin[0] = tensor_div(tensor_sub(g, tensor_mul(y, dot)), denom);
}

tensor *tensor_normalize(tensor *x, int dim, double eps) {
    ops_check_float("tensor_normalize", x);
    int d = tensor_dim_index(x, dim, "tensor_normalize");
    bool prev = grad_mode_set(false); // one node for the whole op, recorded below
    tensor *sq = tensor_mul(x, x);
    tensor *sum = tensor_sum(sq, d, true);
    tensor *norm = tensor_sqrt(sum);
    tensor *denom = tensor_clamp(norm, eps, INFINITY);
    tensor *y = tensor_div(x, denom);
    grad_mode_set(prev);
    ag_node *n = ag_record("normalize", normalize_backward, y, 1, &x);
    if (n) {
        tensor *eps_t = tensor_full(x->dtype, 0, NULL, eps);
        tensor *eps_dev = tensor_to(eps_t, x->device);
        tensor *active = tensor_gt(norm, eps_dev);
        ag_save(n, 0, y);
        ag_save(n, 1, denom);
        ag_save(n, 2, active);
        n->attr_i[0] = d;
        tensor_free(eps_t);
        tensor_free(eps_dev);
        tensor_free(active);
    }
    tensor_free(sq);
    tensor_free(sum);
    tensor_free(norm);
    tensor_free(denom);
    return y;
}
