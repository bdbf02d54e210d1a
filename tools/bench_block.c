#include "tools/bench_block.h"

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

tensor *bench_block_forward(const bench_block_weights *w, tensor *x) {
    // attention branch: (B, T, D) -> qkv (B, T, 3D) -> (B, T, D)
    tensor *h = tensor_layer_norm(x, w->ln1_w, w->ln1_b, 1e-6);
    tensor *qkv = nn_consume(h, tensor_linear(h, w->qkv_w, w->qkv_b));
    tensor *merged = nn_consume(qkv, nn_fused_qkv_attention(qkv, w->shape.heads));
    tensor *proj = nn_consume(merged, tensor_linear(merged, w->proj_w, w->proj_b));
    tensor *x1 = nn_consume(proj, tensor_add(x, proj));
    // MLP branch
    tensor *h2 = tensor_layer_norm(x1, w->ln2_w, w->ln2_b, 1e-6);
    tensor *f1 = nn_consume(h2, tensor_linear(h2, w->fc1_w, w->fc1_b));
    tensor *act = nn_consume(f1, tensor_gelu(f1));
    tensor *f2 = nn_consume(act, tensor_linear(act, w->fc2_w, w->fc2_b));
    return nn_consume(x1, nn_consume(f2, tensor_add(x1, f2)));
}
