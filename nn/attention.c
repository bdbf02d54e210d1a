#include "nn/attention.h"

#include <math.h>

#include "ops/ops.h"
#include "tensor/error.h"

tensor *nn_heads_split(tensor *x, int64_t heads) {
    int64_t b = x->shape[0], t = x->shape[1], d = x->shape[2];
    PETAL_CHECK(d % heads == 0, "nn_heads_split: width %lld is not a multiple of %lld heads",
                (long long)d, (long long)heads);
    tensor *r = tensor_reshape(x, SHAPE(b, t, heads, d / heads));
    return nn_consume(r, tensor_transpose(r, 1, 2));
}

tensor *nn_heads_merge(tensor *o) {
    int64_t b = o->shape[0], h = o->shape[1], t = o->shape[2], d = o->shape[3];
    tensor *r = tensor_transpose(o, 1, 2);
    return nn_consume(r, tensor_reshape(r, SHAPE(b, t, h * d)));
}

tensor *nn_fused_qkv_attention(tensor *qkv, int64_t heads) {
    return tensor_attention_packed(qkv, heads, NULL);
}

void nn_kv_cache_free(nn_kv_cache *c) {
    tensor_free(c->k);
    tensor_free(c->v);
    c->k = c->v = NULL;
}

int64_t nn_kv_cache_length(const nn_kv_cache *c) {
    return c->k ? c->k->shape[2] : 0;
}

void nn_kv_cache_select(nn_kv_cache *c, tensor *rows) {
    if (!c->k) return;
    tensor *k = tensor_keep(tensor_index_select(c->k, 0, rows));
    tensor *v = tensor_keep(tensor_index_select(c->v, 0, rows));
    nn_kv_cache_free(c);
    c->k = k;
    c->v = v;
}

// Appends the step's keys or values (B, H, T, D) to a cached (B, H, S, D) tensor.
static tensor *extend(tensor **cached, tensor *step) {
    tensor *all =
        *cached ? tensor_concat((tensor *[]){*cached, step}, 2, 2) : tensor_contiguous(step);
    tensor_free(*cached);
    *cached = tensor_keep(all);
    return all;
}

void nn_attention_init(nn_attention *a, nn_builder *b, const char *name, int64_t dim,
                       int64_t kv_dim, int64_t heads, double dropout, modality tag, nn_init init) {
    char buf[NN_NAME_MAX];
    nn_linear_init(&a->query, b, nn_name(buf, "%s.query", name), dim, dim, true, tag, init);
    nn_linear_init(&a->key, b, nn_name(buf, "%s.key", name), kv_dim, dim, true, tag, init);
    nn_linear_init(&a->value, b, nn_name(buf, "%s.value", name), kv_dim, dim, true, tag, init);
    a->heads = heads;
    a->dropout = dropout;
}

void nn_attention_free(nn_attention *a) {
    nn_linear_free(&a->query);
    nn_linear_free(&a->key);
    nn_linear_free(&a->value);
}

// The projection of x split into heads: (B, T, H * D) -> (B, H, T, D).
static tensor *project_heads(const nn_linear *l, tensor *x, int64_t heads, const nn_ctx *ctx) {
    tensor *y = nn_linear_forward(l, x, ctx);
    return nn_consume(y, nn_heads_split(y, heads));
}

// k (B, H, S, D) times key_scale (B, S) as (B, 1, S, 1), the scale detached.
static tensor *scale_keys(tensor *k, tensor *key_scale) {
    int64_t b = k->shape[0], s = k->shape[2];
    PETAL_CHECK(key_scale->ndim == 2 && key_scale->shape[0] == b && key_scale->shape[1] == s,
                "nn_attention_forward_scaled: key_scale must be (%lld, %lld)", (long long)b,
                (long long)s);
    tensor *d = tensor_detach(key_scale);
    tensor *col = nn_consume(d, tensor_reshape(d, SHAPE(b, 1, s, 1)));
    return nn_consume(col, tensor_mul(k, col));
}

// What keys and values project: kv (B, S, kv_dim), which is sources[index] when index is set
// (sources (U, S, kv_dim) the distinct rows, index (B) i64).
typedef struct {
    tensor *kv, *sources, *index;
} kv_input;

// The key or value heads (B, H, S, D). With an index, the product sources W^T + b is made once per
// distinct source and gathered, and the deltas run on kv (row by row, as they would without).
static tensor *kv_heads(const nn_linear *l, const kv_input *in, int64_t heads, const nn_ctx *ctx) {
    if (!in->index) return project_heads(l, in->kv, heads, ctx);
    tensor *product = tensor_linear(in->sources, l->weight, l->bias); // (U, S, out)
    tensor *base = nn_consume(product, tensor_index_select(product, 0, in->index));
    tensor *y = nn_consume(base, nn_linear_forward_on(l, base, in->kv, ctx));
    return nn_consume(y, nn_heads_split(y, heads));
}

static tensor *attend(const nn_attention *a, tensor *x, const kv_input *in, tensor *key_scale,
                      tensor *mask, nn_kv_cache *cache, const nn_ctx *ctx) {
    tensor *q = project_heads(&a->query, x, a->heads, ctx);
    tensor *k = kv_heads(&a->key, in, a->heads, ctx);
    if (key_scale) k = nn_consume(k, scale_keys(k, key_scale));
    tensor *v = kv_heads(&a->value, in, a->heads, ctx);
    if (cache) { // attend to every cached step; the cache owns the extended tensors
        k = nn_consume(k, extend(&cache->k, k));
        v = nn_consume(v, extend(&cache->v, v));
    }
    attention_options o = {mask, false, 0.0, a->dropout, ctx->training, ctx->rng};
    tensor *out = tensor_attention(q, k, v, &o);
    tensor_free(q);
    if (!cache) {
        tensor_free(k);
        tensor_free(v);
    }
    return nn_consume(out, nn_heads_merge(out));
}

tensor *nn_attention_forward_gathered(const nn_attention *a, tensor *x, tensor *sources,
                                      tensor *index, tensor *kv, tensor *key_scale, tensor *mask,
                                      const nn_ctx *ctx) {
    return attend(a, x, &(kv_input){kv, sources, index}, key_scale, mask, NULL, ctx);
}

tensor *nn_attention_forward(const nn_attention *a, tensor *x, tensor *kv, tensor *mask,
                             nn_kv_cache *cache, const nn_ctx *ctx) {
    return nn_attention_forward_scaled(a, x, kv, NULL, mask, cache, ctx);
}

tensor *nn_attention_forward_scaled(const nn_attention *a, tensor *x, tensor *kv, tensor *key_scale,
                                    tensor *mask, nn_kv_cache *cache, const nn_ctx *ctx) {
    PETAL_CHECK(!(kv && cache), "nn_attention_forward: a KV cache is for self-attention only");
    PETAL_CHECK(!(key_scale && cache), "nn_attention_forward: key_scale is not for a KV cache");
    return attend(a, x, &(kv_input){kv ? kv : x, NULL, NULL}, key_scale, mask, cache, ctx);
}
