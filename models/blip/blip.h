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
    bool has_vision, has_text, has_decoder, has_heads;
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
    cls_hook *itm_positive; // the fused [CLS] of ITM's positive pairs (ICE as released)
    cls_hook *itm_all;      // the fused [CLS] of every ITM pair: positives, then negatives (ICE)
    loss_hook *itc_extra;   // terms added to the ITC loss (MCAM)
    void *petl;
    void (*petl_free)(void *petl);
} blip_model;

// Builds a model with freshly initialised parameters (the reference modules' inits), all frozen.
blip_model *blip_new(const blip_config *cfg, petal_dtype dtype, uint64_t seed);
// Builds a model whose parameters are zeros, to be filled by a checkpoint (no random draws).
blip_model *blip_new_for_loading(const blip_config *cfg, petal_dtype dtype);
void blip_free(blip_model *m);

// Calls fn on each parameter of the main encoders and projections that has a momentum twin
// ("visual_encoder.x" and "visual_encoder_m.x"); parameters without one (PETL methods attached
// to the main encoders only) are skipped: the momentum encoders run without them.
void blip_momentum_pairs(blip_model *m, void (*fn)(tensor *main, tensor *copy, void *ctx),
                         void *ctx);
// Copies the main encoders' parameters into the momentum copies (copy_params).
void blip_momentum_copy(blip_model *m);
// bert_set_dropout on every text encoder and decoder the model has, momentum copy included.
void blip_set_text_dropout(blip_model *m, double hidden, double attention);
// Momentum copies from the main encoders and fresh queues (random unit columns drawn from seed,
// ids -100, pointer 0): the state blip_retrieval.py starts training from. No-op without them.
void blip_momentum_reset(blip_model *m, uint64_t seed);

// images (B, 3, S, S) -> image embeddings (B, N + 1, D)
tensor *blip_image_embeds(const blip_model *m, tensor *images, const nn_ctx *ctx);
// normalize(vision_proj(embeds[:, 0])) (B, E)
tensor *blip_image_feat(const blip_model *m, tensor *image_embeds);
// The unimodal text encoder's [CLS] features: normalize(text_proj(text(ids)[:, 0])) (B, E)
tensor *blip_text_feat(const blip_model *m, tensor *ids, tensor *mask, const nn_ctx *ctx);
// Image-grounded text encoding (ids start with [ENC]) -> last hidden states (B, T, H)
tensor *blip_multimodal(const blip_model *m, tensor *ids, tensor *mask, tensor *image_embeds,
                        const nn_ctx *ctx);
// The same with text b against image rows[b] of image_embeds (U, N, W), rows (B) i64 (NULL:
// image b), each image's cross-attention key and value products made once however many texts
// read it (bert_input.encoder_index); the keys scaled by key_scale (B, N) (NULL: not; Aurora's
// frame-aware attention).
tensor *blip_multimodal_rows(const blip_model *m, tensor *ids, tensor *mask, tensor *image_embeds,
                             tensor *rows, tensor *key_scale, const nn_ctx *ctx);
// itm_head of the image-grounded [CLS]: (B, 2) logits, index 1 = match
tensor *blip_itm_logits(const blip_model *m, tensor *ids, tensor *mask, tensor *image_embeds,
                        const nn_ctx *ctx);
// The same through blip_multimodal_rows: text b scored against image rows[b].
tensor *blip_itm_logits_rows(const blip_model *m, tensor *ids, tensor *mask, tensor *image_embeds,
                             tensor *rows, const nn_ctx *ctx);

// A copy of ids (B, T) with column 0 replaced by `token` ([ENC] or [DEC]).
tensor *blip_with_first_token(tensor *ids, int64_t token);
