#include "ops/internal.h"

#include "ops/ops.h"

void ops_check_pair(const char *op, const tensor *a, const tensor *b) {
    char da[16], db[16];
    PETAL_CHECK(device_equal(a->device, b->device), "%s: operands on different devices (%s and %s)",
                op, device_name(a->device, da), device_name(b->device, db));
    PETAL_CHECK(a->dtype == b->dtype,
                "%s: operands have dtypes %s and %s (petal does not promote; cast one with "
                "tensor_cast)",
                op, dtype_name(a->dtype), dtype_name(b->dtype));
}

void ops_check_float(const char *op, const tensor *x) {
    PETAL_CHECK(dtype_is_float(x->dtype), "%s: dtype %s is not supported (expects f32 or f64)", op,
                dtype_name(x->dtype));
}

void ops_check_index(const char *op, const tensor *x, const tensor *idx) {
    char dx[16], di[16];
    PETAL_CHECK(dtype_is_int(idx->dtype), "%s: indices must be i32 or i64, got %s", op,
                dtype_name(idx->dtype));
    PETAL_CHECK(device_equal(x->device, idx->device), "%s: indices on %s but the tensor on %s", op,
                device_name(idx->device, di), device_name(x->device, dx));
}

tensor *ops_sum_to(tensor *g, const ag_node *n, int i) {
    const ag_edge *e = &n->in[i];
    tensor *r = g;
    // Dims broadcast in front of the input's own: sum them away.
    while (r->ndim > e->ndim) {
        tensor *s = tensor_sum(r, 0, false);
        if (r != g) tensor_free(r);
        r = s;
    }
    // Size-1 dims of the input that were repeated: sum, keeping the dim.
    for (int d = 0; d < e->ndim; d++) {
        if (e->shape[d] != 1 || r->shape[d] == 1) continue;
        tensor *s = tensor_sum(r, d, true);
        if (r != g) tensor_free(r);
        r = s;
    }
    return r;
}

static void alias_backward(ag_node *n, tensor *g, tensor **gin) {
    (void)n;
    gin[0] = g;
}

tensor *ops_alias(tensor *x, const char *op) {
    tensor *out = tensor_detach(x);
    ag_record(op, alias_backward, out, 1, &x);
    return out;
}
