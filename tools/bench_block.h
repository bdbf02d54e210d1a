// The pre-norm ViT block that `petal bench block` times, written with ops/ only (the nn/ layer
// builds the same block from its modules). Weights are frozen; only the input requires grad.
#pragma once

#include "tensor/tensor.h"

typedef struct {
    int64_t batch, tokens, dim, heads;
} bench_block_shape;

typedef struct {
    bench_block_shape shape;
    tensor *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
    tensor *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} bench_block_weights;

// Weights on `device`, drawn from the default generator.
bench_block_weights *bench_block_weights_new(bench_block_shape s, petal_device device);
void bench_block_weights_free(bench_block_weights *w);
// x (B, T, D) -> (B, T, D). Intermediates are freed as soon as they are used (what autograd
// saved stays alive), so peak memory is what training would need.
tensor *bench_block_forward(const bench_block_weights *w, tensor *x);
