// The BLIP task models (Salesforce blip_retrieval.py, blip_itm.py, blip_vqa.py, blip.py): one
// struct holding the modules a task needs, every parameter in one registry under the checkpoint's
// names.
#pragma once

#include "models/blip/bert.h"
#include "models/blip/vit.h"
#include "nn/linear.h"

typedef struct {
    blip_config cfg;
    param_registry *registry;
    vit_model vit;      // visual_encoder
    bert_model text;    // text_encoder (retrieval, itm, vqa)
    bert_model decoder; // text_decoder (caption, vqa)
    bool has_text, has_decoder, has_heads;
    nn_linear vision_proj, text_proj, itm_head; // retrieval, itm
    tensor *temp;                               // () ITC temperature (retrieval, itm)
    // Momentum distillation (retrieval with cfg.momentum): frozen copies and feature queues.
    vit_model vit_m;
    bert_model text_m;
    nn_linear vision_proj_m, text_proj_m;
    tensor *image_queue, *text_queue; // (E, Q) normalised features
    tensor *idx_queue;                // (1, Q) i64 image ids, -100 when empty
    tensor *ptr_queue;                // (1) i64 next slot
    // PETL extension points (models/blip/hooks.h) and what attached them: the model frees it.
    cls_hook *itm_positive; // the fused [CLS] of ITM's positive pairs (ICE)
    loss_hook *itc_extra;   // terms added to the ITC loss (MCAM)
    void *petl;
    void (*petl_free)(void *petl);
} blip_model;

// Builds a model with freshly initialised parameters (the reference modules' inits), all frozen.
blip_model *blip_new(const blip_config *cfg, petal_dtype dtype, uint64_t seed);
// Builds a model whose parameters are zeros, to be filled by a checkpoint (no random draws).
blip_model *blip_new_for_loading(const blip_config *cfg, petal_dtype dtype);
void blip_free(blip_model *m);

// Copies the main encoders' parameters into the momentum copies (copy_params).
void blip_momentum_copy(blip_model *m);

// images (B, 3, S, S) -> image embeddings (B, N + 1, D)
tensor *blip_image_embeds(const blip_model *m, tensor *images, const nn_ctx *ctx);
// normalize(vision_proj(embeds[:, 0])) (B, E)
tensor *blip_image_feat(const blip_model *m, tensor *image_embeds);
// The unimodal text encoder's [CLS] features: normalize(text_proj(text(ids)[:, 0])) (B, E)
tensor *blip_text_feat(const blip_model *m, tensor *ids, tensor *mask, const nn_ctx *ctx);
// Image-grounded text encoding (ids start with [ENC]) -> last hidden states (B, T, H)
tensor *blip_multimodal(const blip_model *m, tensor *ids, tensor *mask, tensor *image_embeds,
                        const nn_ctx *ctx);
// itm_head of the image-grounded [CLS]: (B, 2) logits, index 1 = match
tensor *blip_itm_logits(const blip_model *m, tensor *ids, tensor *mask, tensor *image_embeds,
                        const nn_ctx *ctx);

// A copy of ids (B, T) with column 0 replaced by `token` ([ENC] or [DEC]).
tensor *blip_with_first_token(tensor *ids, int64_t token);
