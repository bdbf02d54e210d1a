// The vision transformer of BLIP (Salesforce models/vit.py, timm layout): patch embedding as a
// matmul over 16x16x3 patches, [CLS] + position embeddings, pre-norm blocks
// (x += attn(norm1(x)); x += mlp(norm2(x))), a final LayerNorm. Parameter names follow the
// checkpoint under a prefix ("visual_encoder").
#pragma once

#include "models/blip/config.h"
#include "models/blip/hooks.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"

typedef struct {
    nn_layer_norm norm1, norm2;
    nn_linear qkv, proj, fc1, fc2; // attn.qkv (3D, D), attn.proj, mlp.fc1, mlp.fc2
    int64_t heads;
    double drop_path;
} vit_block;

typedef struct {
    vit_config cfg;
    tensor *patch_weight; // (D, 3, P, P)
    tensor *patch_bias;   // (D)
    tensor *cls_token;    // (1, 1, D)
    tensor *pos_embed;    // (1, N + 1, D), N = (S / P)^2
    vit_block *blocks;
    nn_layer_norm norm;
    layer_hooks hooks; // PETL extension points (models/blip/hooks.h), empty by default
} vit_model;

void vit_init(vit_model *m, nn_builder *b, const char *prefix, const vit_config *cfg);
void vit_free(vit_model *m);
// The stochastic-depth rate of the last block (the others' ramp linearly from 0), after init.
void vit_set_drop_path(vit_model *m, double drop_path);

// images (B, 3, S, S) -> patch embeddings (B, N, D)
tensor *vit_patch_embed(const vit_model *m, tensor *images);
// One block; hooks (may be NULL) see it as layer `index`.
tensor *vit_block_forward(const vit_block *blk, tensor *x, const layer_hooks *hooks, int index,
                          const nn_ctx *ctx);
// images (B, 3, S, S) -> every token (B, N + 1, D), [CLS] first, after the final norm
tensor *vit_forward(const vit_model *m, tensor *images, const nn_ctx *ctx);
