// Linear layer, and the hook through which PETL deltas join the backbone:
//     y = x W^T + b + sum_k delta_k(x)
// nn_linear_forward is the only place where that sum happens (docs/architecture.md "nn/").
// Low-rank deltas (LoRA, CP, ...) are added by GEMMs accumulating onto y, never as a separate
// (..., out) tensor.
#pragma once

#include "nn/nn.h"

typedef struct nn_delta nn_delta;
struct nn_delta {
    const char *kind; // "lora", "cp", ... (for messages and listings)
    // The delta's contribution (..., out) for input x (..., in).
    tensor *(*forward)(nn_delta *d, tensor *x, const nn_ctx *ctx);
    // Optional: the same contribution as z v^T without making it, for the fused GEMMs of
    // tensor_linear_lowrank: returns z (..., m, R) and sets *v (out / m, R); the caller frees
    // both (a parameter is handed out as a view). NULL: forward only.
    tensor *(*lowrank)(nn_delta *d, tensor *x, const nn_ctx *ctx, tensor **v);
    void (*free)(nn_delta *d); // may be NULL
    nn_delta *next;
    bool linear; // delta(x) is linear in x (with dropout off), so it can be merged into W
    bool merged; // folded into W (petl_merge): the forward pass skips it
};

typedef struct nn_linear {
    char *name;     // registry prefix: "<name>.weight", "<name>.bias"
    tensor *weight; // (out, in), owned by the registry
    tensor *bias;   // (out) or NULL, owned by the registry
    int64_t in, out;
    nn_delta *deltas;
} nn_linear;

void nn_linear_init(nn_linear *l, nn_builder *b, const char *name, int64_t in, int64_t out,
                    bool bias, modality tag, nn_init init);
void nn_linear_free(nn_linear *l); // frees the attached deltas (the registry owns the tensors)
tensor *nn_linear_forward(const nn_linear *l, tensor *x, const nn_ctx *ctx);
// nn_linear_forward(l, x) when the product x W^T + b is already known: base (..., out), computed
// once for rows that several inputs share (cross-attention keys of an image that several texts
// attend to) and gathered. Only the deltas not merged into W run, on x, as nn_linear_forward runs
// them (the same random draws).
tensor *nn_linear_forward_on(const nn_linear *l, tensor *base, tensor *x, const nn_ctx *ctx);
void nn_linear_attach(nn_linear *l, nn_delta *d); // appended; the layer frees it
// gelu(nn_linear_forward(l, x)), exact GELU. With a bias and no delta to add (none attached, or
// all merged into W), the bias goes in with the GELU (tensor_add_gelu): one pass over the output,
// instead of the bias written for the GEMM to accumulate onto and then a GELU pass.
tensor *nn_linear_gelu_forward(const nn_linear *l, tensor *x, const nn_ctx *ctx);
