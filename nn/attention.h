// Multi-head attention built on tensor_attention: head splitting and merging, a KV cache for
// decoding, and the BERT-style module with separate query / key / value projections (self- or
// cross-attention), and self-attention over a fused qkv projection (the ViT's).
#pragma once

#include "nn/linear.h"

// (B, T, H * D) -> (B, H, T, D), a view.
tensor *nn_heads_split(tensor *x, int64_t heads);
// (B, H, T, D) -> (B, T, H * D); a view (no copy) for tensor_attention's outputs.
tensor *nn_heads_merge(tensor *o);
// Self-attention over a fused projection qkv (B, T, 3 D), q, k and v side by side, each split
// into `heads`: returns the heads merged, (B, T, D). Scale 1 / sqrt(D / heads), no mask.
tensor *nn_fused_qkv_attention(tensor *qkv, int64_t heads);

// Keys and values of earlier decoding steps, (B, H, S, D) each, owned by the cache.
typedef struct {
    tensor *k, *v;
} nn_kv_cache;

void nn_kv_cache_free(nn_kv_cache *c);
int64_t nn_kv_cache_length(const nn_kv_cache *c); // S (0 when empty)
// Keeps batch rows `rows` (i64, any length) in that order: beam search's reordering.
void nn_kv_cache_select(nn_kv_cache *c, tensor *rows);

typedef struct {
    nn_linear query, key, value;
    int64_t heads;
    double dropout; // on the attention probabilities, when training
} nn_attention;

// dim: the query side's width; kv_dim: the width of what keys and values read (dim for
// self-attention, the image features' width for cross-attention).
void nn_attention_init(nn_attention *a, nn_builder *b, const char *name, int64_t dim,
                       int64_t kv_dim, int64_t heads, double dropout, modality tag, nn_init init);
void nn_attention_free(nn_attention *a);
// x (B, T, dim); kv (B, S, kv_dim) for cross-attention or NULL for self-attention; mask additive,
// broadcastable to (B, H, T, S), or NULL. With a cache (self-attention only) the step's keys and
// values are appended and the queries attend to all of them. Returns (B, T, dim).
tensor *nn_attention_forward(const nn_attention *a, tensor *x, tensor *kv, tensor *mask,
                             nn_kv_cache *cache, const nn_ctx *ctx);
// The same with each key scaled after its projection (bias and PETL deltas included): k_s *=
// key_scale[b, s] for key_scale (B, S), read without gradient; values are not scaled. Aurora's
// frame-aware attention (CP/med.py) weights each video frame's keys this way. key_scale NULL:
// nn_attention_forward.
tensor *nn_attention_forward_scaled(const nn_attention *a, tensor *x, tensor *kv, tensor *key_scale,
                                    tensor *mask, nn_kv_cache *cache, const nn_ctx *ctx);

// Cross-attention of rows that share their sources (ITM's positive and hard-negative pairs read
// one batch of images): row b of x attends to sources[index[b]], index (B) i64 into the U
// distinct sources (U, S, kv_dim), and kv (B, S, kv_dim) holds those sources gathered. The key
// and value projections' products sources W^T + b are made for the U sources and gathered; the
// PETL deltas run on kv with the same random draws as nn_attention_forward_scaled(a, x, kv, ...),
// whose result this is.
tensor *nn_attention_forward_gathered(const nn_attention *a, tensor *x, tensor *sources,
                                      tensor *index, tensor *kv, tensor *key_scale, tensor *mask,
                                      const nn_ctx *ctx);
