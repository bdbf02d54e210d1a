#include "models/blip/vit.h"

#include <stdlib.h>

#include "autograd/checkpoint.h"
#include "nn/attention.h"
#include "nn/dropout.h"
#include "ops/ops.h"
#include "tensor/error.h"

static void block_init(vit_block *blk, nn_builder *b, const char *name, const vit_config *cfg) {
    char buf[NN_NAME_MAX];
    int64_t d = cfg->width;
    nn_layer_norm_init(&blk->norm1, b, nn_name(buf, "%s.norm1", name), d, cfg->eps,
                       MODALITY_VISION);
    nn_linear_init(&blk->qkv, b, nn_name(buf, "%s.attn.qkv", name), d, 3 * d, true, MODALITY_VISION,
                   NN_INIT_TRUNC_NORMAL);
    nn_linear_init(&blk->proj, b, nn_name(buf, "%s.attn.proj", name), d, d, true, MODALITY_VISION,
                   NN_INIT_TRUNC_NORMAL);
    nn_layer_norm_init(&blk->norm2, b, nn_name(buf, "%s.norm2", name), d, cfg->eps,
                       MODALITY_VISION);
    nn_linear_init(&blk->fc1, b, nn_name(buf, "%s.mlp.fc1", name), d, cfg->mlp, true,
                   MODALITY_VISION, NN_INIT_TRUNC_NORMAL);
    nn_linear_init(&blk->fc2, b, nn_name(buf, "%s.mlp.fc2", name), cfg->mlp, d, true,
                   MODALITY_VISION, NN_INIT_TRUNC_NORMAL);
    blk->heads = cfg->heads;
}

void vit_init(vit_model *m, nn_builder *b, const char *prefix, const vit_config *cfg) {
    char buf[NN_NAME_MAX];
    int64_t d = cfg->width, p = cfg->patch, grid = cfg->image_size / cfg->patch;
    *m = (vit_model){.cfg = *cfg};
    m->patch_weight = nn_param(b, nn_name(buf, "%s.patch_embed.proj.weight", prefix),
                               SHAPE(d, 3, p, p), MODALITY_VISION, true);
    nn_init_weight(b, m->patch_weight, NN_INIT_TORCH); // Conv2d's default init
    m->patch_bias = nn_param(b, nn_name(buf, "%s.patch_embed.proj.bias", prefix), SHAPE(d),
                             MODALITY_VISION, false);
    // timm excludes cls_token and pos_embed from weight decay (no_weight_decay).
    m->cls_token =
        nn_param(b, nn_name(buf, "%s.cls_token", prefix), SHAPE(1, 1, d), MODALITY_VISION, false);
    m->pos_embed = nn_param(b, nn_name(buf, "%s.pos_embed", prefix), SHAPE(1, grid * grid + 1, d),
                            MODALITY_VISION, false);
    nn_init_weight(b, m->cls_token, NN_INIT_TRUNC_NORMAL);
    nn_init_weight(b, m->pos_embed, NN_INIT_TRUNC_NORMAL);
    m->blocks = calloc((size_t)cfg->depth, sizeof *m->blocks);
    PETAL_CHECK(m->blocks != NULL, "vit_init: out of host memory");
    for (int64_t i = 0; i < cfg->depth; i++)
        block_init(&m->blocks[i], b, nn_name(buf, "%s.blocks.%lld", prefix, (long long)i), cfg);
    vit_set_drop_path(m, cfg->drop_path);
    nn_layer_norm_init(&m->norm, b, nn_name(buf, "%s.norm", prefix), d, cfg->eps, MODALITY_VISION);
}

void vit_set_drop_path(vit_model *m, double drop_path) {
    m->cfg.drop_path = drop_path;
    // timm's stochastic-depth decay rule: rates linear from 0 to drop_path over the blocks.
    for (int64_t i = 0; i < m->cfg.depth; i++)
        m->blocks[i].drop_path =
            m->cfg.depth > 1 ? drop_path * (double)i / (double)(m->cfg.depth - 1) : 0;
}

void vit_free(vit_model *m) {
    for (int64_t i = 0; i < m->cfg.depth; i++) {
        vit_block *blk = &m->blocks[i];
        nn_linear_free(&blk->qkv);
        nn_linear_free(&blk->proj);
        nn_linear_free(&blk->fc1);
        nn_linear_free(&blk->fc2);
    }
    free(m->blocks);
    m->blocks = NULL;
    layer_hooks_free(&m->hooks);
}

tensor *vit_patch_embed(const vit_model *m, tensor *images) {
    int64_t b = images->shape[0], p = m->cfg.patch, s = m->cfg.image_size, g = s / p;
    char si[SHAPE_STR_MAX];
    PETAL_CHECK(images->ndim == 4 && images->shape[1] == 3 && images->shape[2] == s &&
                    images->shape[3] == s,
                "vit_patch_embed: images %s, expected (B, 3, %lld, %lld)",
                shape_str(images->ndim, images->shape, si, sizeof si), (long long)s, (long long)s);
    // (B, 3, g, P, g, P) -> (B, g, g, 3, P, P) -> (B, g*g, 3*P*P): each row is one patch in the
    // (channel, y, x) order of the conv weight, so the conv is one matmul.
    tensor *split = tensor_reshape(images, SHAPE(b, 3, g, p, g, p));
    tensor *moved = nn_consume(split, tensor_permute(split, (const int[]){0, 2, 4, 1, 3, 5}));
    tensor *patches = nn_consume(moved, tensor_reshape(moved, SHAPE(b, g * g, 3 * p * p)));
    tensor *w = tensor_reshape(m->patch_weight, SHAPE(m->cfg.width, 3 * p * p));
    tensor *x = tensor_linear(patches, w, m->patch_bias);
    tensor_free(w);
    return nn_consume(patches, x);
}

// Fused-qkv self-attention: (B, T, D) -> qkv (B, T, 3D) -> (B, T, D).
static tensor *block_attention(const vit_block *blk, tensor *h, const nn_ctx *ctx) {
    tensor *qkv = nn_linear_forward(&blk->qkv, h, ctx);
    tensor *merged = nn_consume(qkv, nn_fused_qkv_attention(qkv, blk->heads));
    return nn_consume(merged, nn_linear_forward(&blk->proj, merged, ctx));
}

// x + drop_path(branch), freeing the branch.
static tensor *residual(tensor *x, tensor *branch, double drop_path, const nn_ctx *ctx) {
    tensor *dropped = nn_consume(branch, nn_drop_path(branch, drop_path, ctx));
    return nn_consume(dropped, tensor_add(x, dropped));
}

tensor *vit_block_forward(const vit_block *blk, tensor *x, const layer_hooks *hooks, int index,
                          const nn_ctx *ctx) {
    tensor *h = nn_layer_norm_forward(&blk->norm1, x);
    tensor *a = nn_consume(h, block_attention(blk, h, ctx));
    tensor *x1 = residual(x, a, blk->drop_path, ctx);
    tensor *h2 = nn_layer_norm_forward(&blk->norm2, x1);
    tensor *act = nn_linear_gelu_forward(&blk->fc1, h2, ctx);
    tensor *f2 = nn_consume(act, nn_linear_forward(&blk->fc2, act, ctx));
    layer_io io = {index, x, x1, NULL, h2};
    if (hooks) f2 = layer_hooks_run(hooks->ffn, &io, f2, ctx);
    tensor *y = residual(x1, f2, blk->drop_path, ctx);
    if (hooks) y = layer_hooks_run(hooks->output, &io, y, ctx);
    tensor_free(h2);
    return nn_consume(x1, y);
}

// What a checkpointed block needs to run again in backward (ag_checkpoint copies it).
typedef struct {
    const vit_block *blk;
    const layer_hooks *hooks;
    int index;
} block_call;

static tensor *block_call_run(const void *call, tensor *x, rng_generator *rng) {
    const block_call *c = call;
    nn_ctx train = {true, rng};
    return vit_block_forward(c->blk, x, c->hooks, c->index, &train);
}

// Block i, checkpointed when it is one of the first ckpt_layers and the pass is training
// (ag_checkpoint itself falls back to a plain call when no gradient is wanted). BLIP's vit.py
// wraps the attention and the MLP of the *last* vit_ckpt_layer blocks instead; whole blocks keep
// only x rather than norm1(x) and norm2(x1) too, and the first blocks are recomputed at the end of
// the backward, when the other blocks' activations are already freed, so the recompute never adds
// to the peak. Which blocks changes no gradient.
static tensor *block_forward(const vit_model *m, int64_t i, tensor *x, const nn_ctx *ctx) {
    if (!ctx->training || i >= m->cfg.ckpt_layers)
        return vit_block_forward(&m->blocks[i], x, &m->hooks, (int)i, ctx);
    block_call call = {&m->blocks[i], &m->hooks, (int)i};
    return ag_checkpoint(block_call_run, &call, sizeof call, x, ctx->rng);
}

tensor *vit_forward(const vit_model *m, tensor *images, const nn_ctx *ctx) {
    int64_t b = images->shape[0], d = m->cfg.width;
    tensor *patches = vit_patch_embed(m, images);
    tensor *cls = tensor_expand(m->cls_token, SHAPE(b, 1, d));
    tensor *x = tensor_concat((tensor *[]){cls, patches}, 2, 1);
    tensor_free(cls);
    tensor_free(patches);
    tensor *pos = tensor_slice(m->pos_embed, 1, 0, x->shape[1], 1); // pos_embed[:, :T]
    x = nn_consume(x, nn_consume(pos, tensor_add(x, pos)));
    for (int64_t i = 0; i < m->cfg.depth; i++) x = nn_consume(x, block_forward(m, i, x, ctx));
    return nn_consume(x, nn_layer_norm_forward(&m->norm, x));
}
