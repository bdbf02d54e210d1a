// BERT / MED (Salesforce models/med.py): word + position (+ token-type) embeddings with
// LayerNorm; post-LN layers of self-attention, cross-attention to image (or question) states in
// multimodal mode, and a GELU feed-forward; and, for decoders, BertLMHeadModel's prediction head
// whose output matrix is the word embedding table (tied).
//
// Masks follow med.py exactly: 0/1 masks become additive (1 - m) * -10000; a decoder combines the
// causal mask with the padding mask (and with a KV cache, every cached position is visible).
// Parameter names are the checkpoint's under a prefix ("text_encoder", "text_decoder.bert"; the
// head lives at "<head prefix>.cls.predictions").
#pragma once

#include "models/blip/config.h"
#include "models/blip/hooks.h"
#include "nn/attention.h"
#include "nn/embedding.h"
#include "nn/layer_norm.h"

typedef struct {
    nn_attention self;     // attention.self.{query,key,value}
    nn_linear self_dense;  // attention.output.dense
    nn_layer_norm self_ln; // attention.output.LayerNorm
    bool has_cross;
    nn_attention cross;     // crossattention.self.*
    nn_linear cross_dense;  // crossattention.output.dense
    nn_layer_norm cross_ln; // crossattention.output.LayerNorm
    nn_linear inter;        // intermediate.dense
    nn_linear out;          // output.dense
    nn_layer_norm out_ln;   // output.LayerNorm
} bert_layer;

typedef struct {
    bert_config cfg;
    nn_embedding word, position, token_type; // token_type only when cfg.type_vocab > 0
    nn_layer_norm emb_ln;
    bert_layer *layers;
    // Prediction head (cfg.lm_head): transform dense -> GELU -> LayerNorm -> word embeddings^T +
    // bias.
    nn_linear head_dense;
    nn_layer_norm head_ln;
    tensor *head_bias; // (V)
    layer_hooks hooks; // PETL extension points (models/blip/hooks.h), empty by default
} bert_model;

typedef enum { BERT_TEXT, BERT_MULTIMODAL } bert_mode;

typedef struct {
    tensor *ids;            // (B, T) i64
    tensor *mask;           // (B, P + T) 0/1 in the model's dtype (P: cached steps), or NULL: ones
    bert_mode mode;         // MULTIMODAL: cross-attention to encoder_states in every layer
    tensor *encoder_states; // (B, N, W), or (U, N, W) with encoder_index
    tensor *encoder_mask;   // (B, N) 0/1, or NULL: ones
    // (B, N) multiplies the cross-attention keys of encoder_states (no gradient), or NULL: Aurora's
    // frame-aware attention (nn_attention_forward_scaled).
    tensor *key_scale;
    bool causal;        // a decoder: position i sees positions <= i
    nn_kv_cache *cache; // one per layer (self-attention), or NULL
    // i64 (B), or NULL: row b attends to encoder_states[encoder_index[b]], encoder_states then
    // holding the U distinct states (U, N, W) that rows share (ITM's pairs share images). The
    // result is that of the states gathered, with each layer's key and value products
    // made once per distinct state (nn_attention_forward_gathered).
    tensor *encoder_index;
} bert_input;

// prefix: the encoder's parameters ("text_encoder", "text_decoder.bert"); head_prefix: where the
// prediction head lives ("text_decoder"), used only when cfg->lm_head.
void bert_init(bert_model *m, nn_builder *b, const char *prefix, const char *head_prefix,
               const bert_config *cfg, modality tag);
void bert_free(bert_model *m);
// The hidden and attention-probability dropout rates used while training (med_config.json's
// hidden_dropout_prob and attention_probs_dropout_prob).
void bert_set_dropout(bert_model *m, double hidden, double attention);

tensor *bert_embed(const bert_model *m, tensor *ids, int64_t past, const nn_ctx *ctx);
// (B, T, H): the last hidden states.
tensor *bert_forward(const bert_model *m, const bert_input *in, const nn_ctx *ctx);
// One layer: x (B, T, H) with an additive self-attention mask; cross-attention to states
// (B, N, W) with an additive cross_mask when states is not NULL (multimodal mode).
// hooks (may be NULL) see it as layer `index`.
tensor *bert_layer_forward(const bert_layer *l, const bert_config *cfg, tensor *x,
                           tensor *self_mask, tensor *states, tensor *cross_mask,
                           nn_kv_cache *cache, const layer_hooks *hooks, int index,
                           const nn_ctx *ctx);
// hidden (B, T, H) -> logits (B, T, V) through the prediction head.
tensor *bert_lm_logits(const bert_model *m, tensor *hidden);
// BertLMHeadModel's loss: next-token cross-entropy of logits[:, :-1] against labels[:, 1:] with
// label smoothing 0.1 and -100 ignored; per_sequence: (B) sums over each sequence's tokens
// (reduction 'none'), else the mean over every counted token.
tensor *bert_lm_loss(tensor *logits, tensor *labels, bool per_sequence);

// The additive mask (B, 1, 1, S) = (1 - m) * -10000 of a 0/1 mask (B, S).
tensor *bert_extended_mask(tensor *mask);
// The decoder's additive mask (B, 1, T, P + T): causal within the last T positions, every
// earlier (cached) position visible, times the 0/1 padding mask (B, P + T).
tensor *bert_causal_mask(tensor *mask, int64_t t);
