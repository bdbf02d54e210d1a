// Scaled dot-product attention with one node and a fused backward rule.
//
//   S = scale * q k^T + mask (+ causal -inf above the shifted diagonal),  P = softmax(S),
//   P' = dropout(P),  o = P' v
//   dv = P'^T do,  dP = dropout(do v^T),  dS = P (dP - rowsum(dP P)),  dq = scale dS k,
//   dk = scale dS^T q,  dmask = dS summed to the mask's shape
// Only P (B, H, T, S) is kept besides the inputs the requested gradients need; the dropout mask is
// regenerated from its Philox state (as tensor_dropout does).
#include <math.h>

#include "ops/internal.h"
#include "ops/ops.h"

// Additive causal mask (T, S): query i may see key j when j <= i + (S - T).
static tensor *causal_mask(petal_dtype dtype, petal_device device, int64_t t, int64_t s) {
    tensor *m = tensor_empty(dtype, SHAPE(t, s));
    for (int64_t i = 0; i < t; i++)
        for (int64_t j = 0; j < s; j++) {
            double v = j <= i + (s - t) ? 0.0 : -INFINITY;
            if (dtype == PETAL_F32)
                tensor_data_f32(m)[i * s + j] = (float)v;
            else
                tensor_data_f64(m)[i * s + j] = v;
        }
    if (device.type == PETAL_CPU) return m;
    tensor *moved = tensor_to(m, device);
    tensor_free(m);
    return moved;
}

// P' = dropout(P) with the node's saved Philox state, or P itself without dropout.
static tensor *dropped(const ag_node *n, tensor *p) {
    if (n->attr_f[1] == 0) return p;
    rng_state rng = {(uint64_t)n->attr_i[0], (uint64_t)n->attr_i[1]};
    tensor *out = tensor_empty_like(p);
    backend_of(p)->dropout(out, p, n->attr_f[1], rng);
    return out;
}

static void attention_backward(ag_node *n, tensor *g, tensor **gin) {
    tensor *q = ag_saved(n, 0), *k = ag_saved(n, 1), *v = ag_saved(n, 2), *p = ag_saved(n, 3);
    double scale = n->attr_f[0];
    if (ag_needs(n, 2)) gin[2] = tensor_matmul(tensor_transpose(dropped(n, p), -1, -2), g);
    if (!ag_needs(n, 0) && !ag_needs(n, 1) && !ag_needs(n, 3)) return;
    tensor *dp = dropped(n, view_contiguous(tensor_matmul(g, tensor_transpose(v, -1, -2))));
    tensor *ds = tensor_empty_like(p);
    backend_of(ds)->softmax_backward(ds, dp, p, p->ndim - 1, false);
    if (ag_needs(n, 0)) gin[0] = tensor_mul_scalar(tensor_matmul(ds, k), scale);
    if (ag_needs(n, 1))
        gin[1] = tensor_mul_scalar(tensor_matmul(tensor_transpose(ds, -1, -2), q), scale);
    if (ag_needs(n, 3)) gin[3] = ops_sum_to(ds, n, 3);
}

static void check_qkv(const tensor *q, const tensor *k, const tensor *v) {
    const char *op = "tensor_attention";
    ops_check_pair(op, q, k);
    ops_check_pair(op, q, v);
    ops_check_float(op, q);
    char sq[SHAPE_STR_MAX], sk[SHAPE_STR_MAX], sv[SHAPE_STR_MAX];
    bool ok = q->ndim == 4 && k->ndim == 4 && v->ndim == 4 && q->shape[0] == k->shape[0] &&
              q->shape[1] == k->shape[1] && q->shape[3] == k->shape[3] &&
              v->shape[0] == k->shape[0] && v->shape[1] == k->shape[1] &&
              v->shape[2] == k->shape[2];
    PETAL_CHECK(ok, "%s: expects q (B, H, T, D), k (B, H, S, D), v (B, H, S, Dv); got %s, %s, %s",
                op, shape_str(q->ndim, q->shape, sq, sizeof sq),
                shape_str(k->ndim, k->shape, sk, sizeof sk),
                shape_str(v->ndim, v->shape, sv, sizeof sv));
}

// Scores S = mask + scale q k^T (the GEMM accumulates onto the broadcast mask), causal -inf
// added, softmax in place: P (B, H, T, S).
static tensor *attention_probs(tensor *q, tensor *k, tensor *mask, bool causal, double scale) {
    int64_t b = q->shape[0], h = q->shape[1], t = q->shape[2], s = k->shape[2];
    tensor *p = tensor_empty_on(q->device, q->dtype, SHAPE(b, h, t, s));
    if (mask) {
        ops_check_pair("tensor_attention", q, mask);
        int64_t ms[PETAL_MAX_DIMS];
        shape_broadcast("tensor_attention (mask)", mask->ndim, mask->shape, 4, p->shape, ms);
        backend_of(p)->copy(p, mask);
    }
    tensor *kt = view_transpose(k, -1, -2);
    backend_matmul(p, q, kt, scale, mask ? 1.0 : 0.0);
    tensor_free(kt);
    if (causal) {
        tensor *cm = causal_mask(q->dtype, q->device, t, s);
        backend_of(p)->binary(BINARY_ADD, p, p, cm, 0, 0);
        tensor_free(cm);
    }
    backend_of(p)->softmax(p, p, 3, false);
    return p;
}

tensor *tensor_attention(tensor *q, tensor *k, tensor *v, const attention_options *opt) {
    attention_options o = opt ? *opt : ATTENTION_DEFAULTS;
    check_qkv(q, k, v);
    PETAL_CHECK(o.dropout >= 0 && o.dropout < 1, "tensor_attention: dropout %g outside [0, 1)",
                o.dropout);
    int64_t b = q->shape[0], h = q->shape[1], t = q->shape[2], dv = v->shape[3];
    double scale = o.scale > 0 ? o.scale : 1.0 / sqrt((double)q->shape[3]);
    double p_drop = o.training ? o.dropout : 0.0;
    tensor *p = attention_probs(q, k, o.mask, o.causal, scale);
    rng_state rng = {0, 0};
    tensor *pd = p;
    if (p_drop > 0) {
        rng = rng_reserve(o.rng, tensor_numel(p));
        pd = tensor_empty_like(p);
        backend_of(p)->dropout(pd, p, p_drop, rng);
    }
    // The output is stored as (B, T, H, Dv) and returned as its (B, H, T, Dv) view, so merging
    // the heads afterwards needs no copy.
    tensor *store = tensor_empty_on(q->device, q->dtype, SHAPE(b, t, h, dv));
    tensor *out = view_transpose(store, 1, 2);
    tensor_free(store);
    backend_matmul(out, pd, v, 1.0, 0.0);
    ag_node *n = ag_record("attention", attention_backward, out, 4, (tensor *[]){q, k, v, o.mask});
    if (n) {
        bool scores_grad = ag_needs(n, 0) || ag_needs(n, 1) || ag_needs(n, 3);
        if (ag_needs(n, 1)) ag_save(n, 0, q);
        if (ag_needs(n, 0)) ag_save(n, 1, k);
        if (scores_grad) ag_save(n, 2, v);
        ag_save(n, 3, p);
        n->attr_f[0] = scale;
        n->attr_f[1] = p_drop;
        n->attr_i[0] = (int64_t)rng.seed;
        n->attr_i[1] = (int64_t)rng.offset;
    }
    if (pd != p) tensor_free(pd);
    tensor_free(p);
    return out;
}
