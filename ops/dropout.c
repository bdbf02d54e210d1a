// Inverted dropout. The mask is a pure function of the Philox state and the element index, so the
// backward pass regenerates it from the saved state: no mask is stored.
#include "ops/internal.h"
#include "ops/ops.h"

static void dropout_backward(ag_node *n, tensor *g, tensor **gin) {
    rng_state rng = {(uint64_t)n->attr_i[0], (uint64_t)n->attr_i[1]};
    tensor *gc = view_contiguous(g);
    tensor *gx = tensor_empty_like(gc);
    backend_of(gx)->dropout(gx, gc, n->attr_f[0], rng);
    tensor_free(gc);
    gin[0] = gx;
}

tensor *tensor_dropout(tensor *x, double p, bool training, rng_generator *g) {
    ops_check_float("tensor_dropout", x);
    PETAL_CHECK(p >= 0 && p <= 1, "tensor_dropout: p = %g outside [0, 1]", p);
    if (!training || p == 0) return ops_alias(x, "dropout");
    if (p == 1) return tensor_mul_scalar(x, 0.0);
    rng_state rng = rng_reserve(g, tensor_numel(x));
    tensor *xc = view_contiguous(x);
    tensor *y = tensor_empty_like(xc);
    backend_of(y)->dropout(y, xc, p, rng);
    tensor_free(xc);
    ag_node *n = ag_record("dropout", dropout_backward, y, 1, &x);
    if (n) {
        n->attr_i[0] = (int64_t)rng.seed;
        n->attr_i[1] = (int64_t)rng.offset;
        n->attr_f[0] = p;
    }
    return y;
}
