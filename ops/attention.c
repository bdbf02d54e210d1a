// Scaled dot-product attention with one node and a fused backward rule.
//
//   S = scale * q k^T + mask (+ causal -inf above the shifted diagonal),  P = softmax(S),
//   P' = dropout(P),  o = P' v
//   dv = P'^T do,  dP = dropout(do v^T),  dS = P (dP - rowsum(dP P)),  dq = scale dS k,
//   dk = scale dS^T q,  dmask = dS summed to the mask's shape
// Only P (B, H, T, S) is kept besides the inputs the requested gradients need; the dropout mask is
// regenerated from its Philox state (as tensor_dropout does). With recomputing on (the default,
// autograd.h ag_recompute_set) not even P: the rule rebuilds it from q, k and the mask by the
// forward's GEMM and softmax, the same bits for one more q k^T product.
//
// A backend with fused attention entries runs both passes in one kernel each instead, never
// storing P: CUDA (tensor/cuda/cuda_attention.cu, the algorithm of tensor/attention_tile.h) keeps
// q, k, v, o and the rows' log-sum-exp (B, H, T); the CPU (tensor/cpu/cpu_attention.c, a head's
// scores in L2) keeps q, k, v and rebuilds P whole. That path is taken when the mask needs no
// gradient, both head dims are at most ATTN_HEAD_MAX and the backend takes the dtype (CUDA: f32
// and f64; the CPU: f32 at f32 precision, T S at most 2^22); PETAL_ATTENTION=unfused forces the
// GEMM path (comparisons, tests). tensor_attention_packed takes q, k and v as views of one qkv
// projection and, fused, writes their gradients into one tensor.
//
// Mixed precision (tensor/precision.h): the GEMM path's products take the thread's precision as
// every GEMM does. The fused kernels follow bf16 (attention_params.round_bf16 rounds the operands
// of each of their products, where the GEMM path's products round theirs); they have no TF32
// form, so under TF32 an f32 attention takes the GEMM path.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/internal.h"
#include "ops/ops.h"
#include "tensor/attention_tile.h"

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

// Scores S = mask + scale q k^T (the GEMM accumulates onto the broadcast mask), causal -inf
// added, softmax in place: P (B, H, T, S).
static tensor *attention_probs(tensor *q, tensor *k, tensor *mask, bool causal, double scale) {
    int64_t b = q->shape[0], h = q->shape[1], t = q->shape[2], s = k->shape[2];
    tensor *p = tensor_empty_on(q->device, q->dtype, SHAPE(b, h, t, s));
    if (mask) backend_of(p)->copy(p, mask);
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
    if (!p) p = attention_probs(q, k, ag_saved(n, 4), n->attr_i[2] != 0, scale);
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

// ---- the fused path ----

enum { SAVED_Q, SAVED_K, SAVED_V, SAVED_O, SAVED_LSE, SAVED_MASK };

// Whether the fused kernels round their products' operands to bf16: f32 under BF16.
static bool rounds_bf16(petal_dtype dtype, petal_precision precision) {
    return dtype == PETAL_F32 && precision == PETAL_PRECISION_BF16;
}

static attention_params fused_params(ag_node *n) {
    return (attention_params){.scale = n->attr_f[0],
                              .causal = n->attr_i[2] != 0,
                              .dropout = n->attr_f[1],
                              .rng = {(uint64_t)n->attr_i[0], (uint64_t)n->attr_i[1]},
                              .round_bf16 = rounds_bf16(ag_saved(n, SAVED_Q)->dtype, n->precision)};
}

// The kernels' parameters for q (B, H, T, D) and k (B, H, S, D), the dropout's counters reserved.
static attention_params params_of(const char *op, const tensor *q, const tensor *k,
                                  const attention_options *o) {
    PETAL_CHECK(o->dropout >= 0 && o->dropout < 1, "%s: dropout %g outside [0, 1)", op, o->dropout);
    attention_params ap = {.scale = o->scale > 0 ? o->scale : 1.0 / sqrt((double)q->shape[3]),
                           .causal = o->causal,
                           .dropout = o->training ? o->dropout : 0.0,
                           .round_bf16 = rounds_bf16(q->dtype, precision_get())};
    if (ap.dropout > 0)
        ap.rng = rng_reserve(o->rng, q->shape[0] * q->shape[1] * q->shape[2] * k->shape[2]);
    return ap;
}

static void record_params(ag_node *n, const attention_params *ap) {
    n->attr_f[0] = ap->scale;
    n->attr_f[1] = ap->dropout;
    n->attr_i[0] = (int64_t)ap->rng.seed;
    n->attr_i[1] = (int64_t)ap->rng.offset;
    n->attr_i[2] = ap->causal;
}

static int64_t forward_flops(const tensor *q, const tensor *k, const tensor *v) { // q k^T, P v
    return 2 * q->shape[0] * q->shape[1] * q->shape[2] * k->shape[2] * (q->shape[3] + v->shape[3]);
}

static int64_t backward_flops(const tensor *q, const tensor *k, const tensor *v) {
    // P rebuilt (T S D), dP and dv (T S Dv each), dq and dk (T S D each)
    return 2 * q->shape[0] * q->shape[1] * q->shape[2] * k->shape[2] *
           (3 * q->shape[3] + 2 * v->shape[3]);
}

// The fused kernels take any strides but the last.
static bool rows_contiguous(const tensor *t) {
    return t->strides[t->ndim - 1] == 1 || t->shape[t->ndim - 1] == 1;
}

// t itself (a new struct) when its last dim is contiguous, else a contiguous copy.
static tensor *rows_dense(const tensor *t) {
    if (!rows_contiguous(t)) return view_contiguous(t);
    return tensor_make_view(t->storage, t->dtype, t->ndim, t->shape, t->strides, t->offset);
}

static void attention_backward_fused(ag_node *n, tensor *g, tensor **gin) {
    tensor *q = ag_saved(n, SAVED_Q), *k = ag_saved(n, SAVED_K), *v = ag_saved(n, SAVED_V);
    tensor *go = rows_dense(g);
    tensor *gq = tensor_empty_on(q->device, q->dtype, q->ndim, q->shape);
    tensor *gk = tensor_empty_on(k->device, k->dtype, k->ndim, k->shape);
    tensor *gv = tensor_empty_on(v->device, v->dtype, v->ndim, v->shape);
    attention_params p = fused_params(n);
    backend_matmul_flops_add(backward_flops(q, k, v));
    backend_of(q)->attention_backward(gq, gk, gv, go, q, k, v, ag_saved(n, SAVED_O),
                                      ag_saved(n, SAVED_LSE), ag_saved(n, SAVED_MASK), &p);
    tensor_free(go);
    tensor *grads[3] = {gq, gk, gv};
    for (int i = 0; i < 3; i++) {
        if (ag_needs(n, i))
            gin[i] = grads[i];
        else
            tensor_free(grads[i]);
    }
}

// PETAL_ATTENTION: unset, empty or "fused" lets a backend with fused entries use them.
static bool unfused_forced(void) {
    const char *env = getenv("PETAL_ATTENTION");
    if (!env || !*env || strcmp(env, "fused") == 0) return false;
    PETAL_CHECK(strcmp(env, "unfused") == 0,
                "PETAL_ATTENTION=%s: expected fused (the default) or unfused", env);
    return true;
}

// Read on every call, whatever the backend, so that a misspelt value is refused everywhere.
static bool fused_usable(const tensor *q, const tensor *k, const tensor *v, const tensor *mask) {
    if (unfused_forced()) return false;
    const backend *be = backend_of(q);
    int64_t d = q->shape[3], dv = v->shape[3];
    bool typed = be->attention_f32_only
                     ? q->dtype == PETAL_F32 && precision_get() == PETAL_PRECISION_F32
                     : q->dtype == PETAL_F64 ||
                           (q->dtype == PETAL_F32 && precision_get() != PETAL_PRECISION_TF32);
    bool fits = !be->attention_max_scores || q->shape[2] * k->shape[2] <= be->attention_max_scores;
    return be->attention && be->attention_backward && typed && fits &&
           !(mask && mask->requires_grad) && q->shape[2] > 0 && k->shape[2] > 0 && d > 0 &&
           dv > 0 && d <= ATTN_HEAD_MAX && dv <= ATTN_HEAD_MAX;
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

// The mask must broadcast to (B, H, T, S).
static void check_mask(const tensor *q, const tensor *k, const tensor *mask) {
    if (!mask) return;
    ops_check_pair("tensor_attention", q, mask);
    int64_t ps[4] = {q->shape[0], q->shape[1], q->shape[2], k->shape[2]}, ms[PETAL_MAX_DIMS];
    int nd = shape_broadcast("tensor_attention (mask)", mask->ndim, mask->shape, 4, ps, ms);
    char sm[SHAPE_STR_MAX], sp[SHAPE_STR_MAX];
    PETAL_CHECK(nd == 4 && memcmp(ms, ps, sizeof ps) == 0,
                "tensor_attention: the mask %s does not broadcast to the scores' shape %s",
                shape_str(mask->ndim, mask->shape, sm, sizeof sm), shape_str(4, ps, sp, sizeof sp));
}

// o = P' v through the backend's GEMMs and softmax; returns P (saved for backward).
static tensor *attention_unfused(tensor *out, tensor *q, tensor *k, tensor *v,
                                 const attention_options *o, const attention_params *ap) {
    tensor *p = attention_probs(q, k, o->mask, o->causal, ap->scale);
    tensor *pd = p;
    if (ap->dropout > 0) {
        pd = tensor_empty_like(p);
        backend_of(p)->dropout(pd, p, ap->dropout, ap->rng);
    }
    backend_matmul(out, pd, v, 1.0, 0.0);
    if (pd != p) tensor_free(pd);
    return p;
}

tensor *tensor_attention(tensor *q, tensor *k, tensor *v, const attention_options *opt) {
    attention_options o = opt ? *opt : ATTENTION_DEFAULTS;
    check_qkv(q, k, v);
    check_mask(q, k, o.mask);
    int64_t b = q->shape[0], h = q->shape[1], t = q->shape[2], dv = v->shape[3];
    attention_params ap = params_of("tensor_attention", q, k, &o);
    // The output is stored as (B, T, H, Dv) and returned as its (B, H, T, Dv) view, so merging
    // the heads afterwards needs no copy.
    tensor *store = tensor_empty_on(q->device, q->dtype, SHAPE(b, t, h, dv));
    tensor *out = view_transpose(store, 1, 2);
    tensor_free(store);
    bool fused = fused_usable(q, k, v, o.mask);
    tensor *p = NULL, *lse = NULL, *qd = NULL, *kd = NULL, *vd = NULL;
    if (fused) {
        qd = rows_dense(q), kd = rows_dense(k), vd = rows_dense(v);
        lse = tensor_empty_on(q->device, q->dtype, SHAPE(b, h, t));
        backend_of(q)->attention(out, lse, qd, kd, vd, o.mask, &ap);
        backend_matmul_flops_add(forward_flops(q, k, v));
    } else {
        p = attention_unfused(out, q, k, v, &o, &ap);
    }
    ag_node *n = ag_record("attention", fused ? attention_backward_fused : attention_backward, out,
                           4, (tensor *[]){q, k, v, o.mask});
    if (n && fused) {
        ag_save(n, SAVED_Q, qd);
        ag_save(n, SAVED_K, kd);
        ag_save(n, SAVED_V, vd);
        if (backend_of(q)->attention_backward_reads_o) ag_save(n, SAVED_O, out);
        ag_save(n, SAVED_LSE, lse);
        if (o.mask) ag_save(n, SAVED_MASK, o.mask);
    } else if (n) { // P (B, H, T, S) is rebuilt from q, k and the mask when recomputing is on
        bool scores_grad = ag_needs(n, 0) || ag_needs(n, 1) || ag_needs(n, 3);
        bool rebuild = ag_recompute_enabled();
        if (ag_needs(n, 1) || rebuild) ag_save(n, 0, q);
        if (ag_needs(n, 0) || rebuild) ag_save(n, 1, k);
        if (scores_grad) ag_save(n, 2, v);
        if (!rebuild) ag_save(n, 3, p);
        if (rebuild && o.mask) ag_save(n, 4, o.mask);
    }
    if (n) record_params(n, &ap);
    tensor_free(qd);
    tensor_free(kd);
    tensor_free(vd);
    tensor_free(lse);
    tensor_free(p);
    return out;
}

// ---- over a packed projection ----

enum { PACKED_QKV, PACKED_O, PACKED_LSE, PACKED_MASK };

// Heads of hd columns starting at column `first` of x (B, T, >= first + H hd), rows contiguous,
// as (B, H, T, hd): a view without autograd. Part p of qkv (0: q, 1: k, 2: v) starts at p H hd.
static tensor *heads_view(const tensor *x, int64_t heads, int64_t hd, int64_t first) {
    int64_t shape[4] = {x->shape[0], heads, x->shape[1], hd};
    int64_t strides[4] = {x->strides[0], hd, x->strides[1], 1};
    return tensor_make_view(x->storage, x->dtype, 4, shape, strides, x->offset + first);
}

static tensor *packed_part(const tensor *qkv, int64_t heads, int part) {
    int64_t hd = qkv->shape[2] / 3 / heads;
    return heads_view(qkv, heads, hd, part * heads * hd);
}

// (B, T, H Dv) as (B, H, T, Dv).
static tensor *merged_heads(const tensor *x, int64_t heads) {
    return heads_view(x, heads, x->shape[2] / heads, 0);
}

static void attention_packed_backward(ag_node *n, tensor *g, tensor **gin) {
    tensor *qkv = ag_saved(n, PACKED_QKV);
    int64_t heads = n->attr_i[3];
    tensor *gc = rows_dense(g);
    tensor *dqkv = tensor_empty_on(qkv->device, qkv->dtype, qkv->ndim, qkv->shape);
    tensor *parts[3], *grads[3];
    for (int i = 0; i < 3; i++) {
        parts[i] = packed_part(qkv, heads, i);
        grads[i] = packed_part(dqkv, heads, i);
    }
    tensor *y = ag_saved(n, PACKED_O), *go = merged_heads(gc, heads);
    tensor *o = y ? merged_heads(y, heads) : NULL;
    attention_params p = fused_params(n);
    backend_matmul_flops_add(backward_flops(parts[0], parts[1], parts[2]));
    backend_of(qkv)->attention_backward(grads[0], grads[1], grads[2], go, parts[0], parts[1],
                                        parts[2], o, ag_saved(n, PACKED_LSE),
                                        ag_saved(n, PACKED_MASK), &p);
    gin[0] = dqkv;
    tensor *temps[] = {gc, go, o, parts[0], parts[1], parts[2], grads[0], grads[1], grads[2]};
    for (size_t i = 0; i < sizeof temps / sizeof *temps; i++) tensor_free(temps[i]);
}

// The same through tensor_attention on views of qkv (autograd through the views).
static tensor *attention_packed_unfused(tensor *qkv, int64_t heads, const attention_options *o) {
    int64_t b = qkv->shape[0], t = qkv->shape[1], hd = qkv->shape[2] / 3 / heads;
    tensor *split = tensor_reshape(qkv, SHAPE(b, t, 3, heads, hd));
    tensor *parts = tensor_permute(split, (const int[]){2, 0, 3, 1, 4});
    tensor *q = tensor_select(parts, 0, 0), *k = tensor_select(parts, 0, 1);
    tensor *v = tensor_select(parts, 0, 2);
    tensor *out = tensor_attention(q, k, v, o);
    tensor *merged = tensor_transpose(out, 1, 2);
    tensor *r = tensor_reshape(merged, SHAPE(b, t, heads * hd));
    tensor *temps[] = {split, parts, q, k, v, out, merged};
    for (size_t i = 0; i < sizeof temps / sizeof *temps; i++) tensor_free(temps[i]);
    return r;
}

tensor *tensor_attention_packed(tensor *qkv, int64_t heads, const attention_options *opt) {
    attention_options o = opt ? *opt : ATTENTION_DEFAULTS;
    char sq[SHAPE_STR_MAX];
    PETAL_CHECK(qkv->ndim == 3 && heads > 0 && qkv->shape[2] % (3 * heads) == 0,
                "tensor_attention_packed: qkv %s is not (B, T, 3 H D) for %lld heads",
                shape_str(qkv->ndim, qkv->shape, sq, sizeof sq), (long long)heads);
    if (!rows_contiguous(qkv)) return attention_packed_unfused(qkv, heads, &o);
    tensor *q = packed_part(qkv, heads, 0), *k = packed_part(qkv, heads, 1);
    tensor *v = packed_part(qkv, heads, 2);
    check_mask(q, k, o.mask);
    if (!fused_usable(q, k, v, o.mask)) {
        tensor_free(q);
        tensor_free(k);
        tensor_free(v);
        return attention_packed_unfused(qkv, heads, &o);
    }
    int64_t b = q->shape[0], h = q->shape[1], t = q->shape[2], dv = v->shape[3];
    attention_params ap = params_of("tensor_attention_packed", q, k, &o);
    tensor *y = tensor_empty_on(qkv->device, qkv->dtype, SHAPE(b, t, h * dv)); // (B, T, H Dv)
    tensor *out = merged_heads(y, heads);
    tensor *lse = tensor_empty_on(qkv->device, qkv->dtype, SHAPE(b, h, t));
    backend_of(qkv)->attention(out, lse, q, k, v, o.mask, &ap);
    backend_matmul_flops_add(forward_flops(q, k, v));
    ag_node *n =
        ag_record("attention_packed", attention_packed_backward, y, 2, (tensor *[]){qkv, o.mask});
    if (n) {
        ag_save(n, PACKED_QKV, qkv);
        if (backend_of(qkv)->attention_backward_reads_o) ag_save(n, PACKED_O, y);
        ag_save(n, PACKED_LSE, lse);
        if (o.mask) ag_save(n, PACKED_MASK, o.mask);
        record_params(n, &ap);
        n->attr_i[3] = heads;
    }
    tensor *temps[] = {q, k, v, out, lse};
    for (size_t i = 0; i < sizeof temps / sizeof *temps; i++) tensor_free(temps[i]);
    return y;
}
