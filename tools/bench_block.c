#include "tools/bench_block.h"

#include <math.h>
#include <stdlib.h>

#include "petal.h"

static tensor *weight(petal_device device, int ndim, const int64_t *shape, double std) {
    tensor *t = tensor_keep(tensor_empty_on(device, PETAL_F32, ndim, shape));
    tensor_normal_(t, 0.0, std, NULL);
    return t;
}

static tensor *constant(petal_device device, int64_t d, double value) {
    tensor *t = tensor_keep(tensor_empty_on(device, PETAL_F32, SHAPE(d)));
    tensor_fill_(t, value);
    return t;
}

bench_block_weights *bench_block_weights_new(bench_block_shape s, petal_device device) {
    bench_block_weights *w = calloc(1, sizeof *w);
    int64_t d = s.dim;
    double std = 0.02;
    w->shape = s;
    w->ln1_w = constant(device, d, 1.0);
    w->ln1_b = constant(device, d, 0.0);
    w->qkv_w = weight(device, SHAPE(3 * d, d), std);
    w->qkv_b = weight(device, SHAPE(3 * d), std);
    w->proj_w = weight(device, SHAPE(d, d), std);
    w->proj_b = weight(device, SHAPE(d), std);
    w->ln2_w = constant(device, d, 1.0);
    w->ln2_b = constant(device, d, 0.0);
    w->fc1_w = weight(device, SHAPE(4 * d, d), std);
    w->fc1_b = weight(device, SHAPE(4 * d), std);
    w->fc2_w = weight(device, SHAPE(d, 4 * d), std);
    w->fc2_b = weight(device, SHAPE(d), std);
    return w;
}

void bench_block_weights_free(bench_block_weights *w) {
    tensor *all[] = {w->ln1_w, w->ln1_b, w->qkv_w, w->qkv_b, w->proj_w, w->proj_b,
                     w->ln2_w, w->ln2_b, w->fc1_w, w->fc1_b, w->fc2_w,  w->fc2_b};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tensor_free(all[i]);
    free(w);
}

// Frees its argument and returns r: lets the forward pass read as a chain of steps.
static tensor *drop(tensor *used, tensor *r) {
    tensor_free(used);
    return r;
}

tensor *bench_block_forward(const bench_block_weights *w, tensor *x) {
    bench_block_shape s = w->shape;
    int64_t hd = s.dim / s.heads;
    // attention branch: (B, T, D) -> qkv (B, T, 3, H, hd) -> q, k, v (B, H, T, hd)
    tensor *h = tensor_layer_norm(x, w->ln1_w, w->ln1_b, 1e-6);
    tensor *qkv = drop(h, tensor_linear(h, w->qkv_w, w->qkv_b));
    tensor *split = drop(qkv, tensor_reshape(qkv, SHAPE(s.batch, s.tokens, 3, s.heads, hd)));
    tensor *heads = drop(split, tensor_permute(split, (const int[]){2, 0, 3, 1, 4}));
    tensor *q = tensor_select(heads, 0, 0), *k = tensor_select(heads, 0, 1);
    tensor *v = tensor_select(heads, 0, 2);
    tensor_free(heads);
    tensor *o = tensor_attention(q, k, v, &(attention_options){.scale = 1.0 / sqrt((double)hd)});
    tensor_free(q);
    tensor_free(k);
    tensor_free(v);
    tensor *merged =
        drop(o, tensor_reshape(tensor_transpose(o, 1, 2), SHAPE(s.batch, s.tokens, s.dim)));
    tensor *proj = drop(merged, tensor_linear(merged, w->proj_w, w->proj_b));
    tensor *x1 = drop(proj, tensor_add(x, proj));
    // MLP branch
    tensor *h2 = tensor_layer_norm(x1, w->ln2_w, w->ln2_b, 1e-6);
    tensor *f1 = drop(h2, tensor_linear(h2, w->fc1_w, w->fc1_b));
    tensor *act = drop(f1, tensor_gelu(f1));
    tensor *f2 = drop(act, tensor_linear(act, w->fc2_w, w->fc2_b));
    return drop(x1, drop(f2, tensor_add(x1, f2)));
}
