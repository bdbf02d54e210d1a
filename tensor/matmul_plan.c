#include "tensor/matmul_plan.h"

#include "tensor/backend.h"
#include "tensor/error.h"
#include "tensor/storage.h"

// How a GEMM sees the last two dims of an operand; false if it cannot.
static bool layout_of(const tensor *t, bool *trans, int64_t *ld) {
    int64_t rows = t->shape[t->ndim - 2], cols = t->shape[t->ndim - 1];
    int64_t rs = t->strides[t->ndim - 2], cs = t->strides[t->ndim - 1];
    if ((cs == 1 || cols == 1) && (rs >= (cols > 1 ? cols : 1) || rows == 1)) {
        *trans = false;
        *ld = rows == 1 ? (cols > 1 ? cols : 1) : rs;
        return true;
    }
    if ((rs == 1 || rows == 1) && (cs >= (rows > 1 ? rows : 1) || cols == 1)) {
        *trans = true;
        *ld = cols == 1 ? (rows > 1 ? rows : 1) : cs;
        return true;
    }
    return false;
}

static bool readable(const tensor *t) {
    bool trans;
    int64_t ld;
    return layout_of(t, &trans, &ld);
}

int64_t matmul_batch_offset(const tensor *t, const tensor *c, int64_t i) {
    int nb_c = c->ndim - 2, nb_t = t->ndim - 2;
    int64_t off = t->offset;
    for (int d = nb_c - 1; d >= 0; d--) {
        int64_t idx = i % c->shape[d];
        i /= c->shape[d];
        int td = d - (nb_c - nb_t);
        if (td >= 0 && t->shape[td] != 1) off += idx * t->strides[td];
    }
    return off;
}

// True when the batch dims of a and c fold into their row dim (one tall GEMM) because b is the
// same matrix for every batch entry.
static bool folds_into_rows(const tensor *a, const tensor *b, const tensor *c) {
    for (int d = 0; d < b->ndim - 2; d++)
        if (b->shape[d] != 1) return false;
    if (a->ndim != c->ndim || a->strides[a->ndim - 1] != 1) return false;
    for (const tensor *t = a;; t = c) {
        for (int d = 0; d < t->ndim - 2; d++)
            if (t->shape[d] != 1 && t->strides[d] != t->shape[d + 1] * t->strides[d + 1])
                return false;
        if (t == c) break;
    }
    return true;
}

static matmul_plan plan_for(const tensor *c, const tensor *a, const tensor *b) {
    matmul_plan p = {
        .m = c->shape[c->ndim - 2], .n = c->shape[c->ndim - 1], .k = a->shape[a->ndim - 1]};
    bool trans_c;
    PETAL_CHECK(layout_of(a, &p.trans_a, &p.lda) && layout_of(b, &p.trans_b, &p.ldb),
                "matmul: unexpected strides");
    PETAL_CHECK(layout_of(c, &trans_c, &p.ldc) && !trans_c,
                "matmul: the output must be row-major in its last two dims");
    p.batch = tensor_numel(c) / (p.m * p.n);
    if (p.batch > 1 && !p.trans_a && folds_into_rows(a, b, c)) {
        p.m *= p.batch;
        p.batch = 1;
    }
    return p;
}

void matmul_run(matmul_gemm_fn gemm, tensor *c, const tensor *a, const tensor *b, double alpha,
                double beta, petal_precision precision) {
    if (tensor_numel(c) == 0) return;
    if (a->shape[a->ndim - 1] == 0) { // an empty sum: c = beta * c
        if (beta == 0)
            backend_of(c)->fill(c, 0.0);
        else
            backend_of(c)->unary(UNARY_MUL_SCALAR, c, c, beta, 0);
        return;
    }
    tensor *ac = readable(a) ? NULL : tensor_clone_data(a);
    tensor *bc = readable(b) ? NULL : tensor_clone_data(b);
    const tensor *ra = ac ? ac : a, *rb = bc ? bc : b;
    matmul_plan plan = plan_for(c, ra, rb);
    gemm(&plan, ra, rb, c, alpha, beta, precision);
    tensor_free(ac);
    tensor_free(bc);
}

bool matmul_plan_make(const tensor *c, const tensor *a, const tensor *b, matmul_plan *plan) {
    if (tensor_numel(c) == 0 || a->shape[a->ndim - 1] == 0 || !readable(a) || !readable(b))
        return false;
    *plan = plan_for(c, a, b);
    return true;
}

tensor *matmul_operand_span(const tensor *t, petal_dtype dtype, int64_t *first, int64_t *count) {
    PETAL_CHECK(tensor_numel(t) > 0, "matmul: an empty operand has no span");
    int64_t lo = 0, hi = 0; // of t's elements, relative to t->offset
    for (int d = 0; d < t->ndim; d++) {
        int64_t reach = (t->shape[d] - 1) * t->strides[d];
        if (reach < 0)
            lo += reach;
        else
            hi += reach;
    }
    *first = t->offset + lo;
    *count = hi - lo + 1;
    tensor_storage *s = storage_new(t->device, (size_t)*count * dtype_size(dtype));
    tensor *copy = tensor_make_view(s, dtype, t->ndim, t->shape, t->strides, -lo);
    storage_release(s); // the view holds the only reference
    return copy;
}
