// Extension points for PETL methods that are more than a Linear delta (nn/linear.h has those):
// GQT, QASN and adapters change what a ViT block or BERT layer outputs, ICE enriches the fused
// [CLS] of ITM's positive pairs, MCAM adds a term to the ITC loss. Each point holds a list of hooks
// that run in the order they were attached; models/ only calls them, petl/ attaches them.
#pragma once

#include "nn/nn.h"

// What a ViT block or BERT layer computed on its way to the output.
typedef struct {
    int layer;         // block / layer index
    tensor *input;     // the block's input x
    tensor *self_out;  // BERT: the self-attention block's output a_s (after its LayerNorm)
    tensor *cross_out; // BERT multimodal mode: the cross-attention block's output a_c, else NULL
    tensor *ffn_in;    // what the feed-forward branch read (ViT: norm2(x1); BERT: a)
} layer_io;

typedef struct layer_hook layer_hook;
struct layer_hook {
    // Returns the new value of `y` (the feed-forward branch output for ffn hooks, the layer output
    // for output hooks); may return y itself. The caller frees y if a new tensor comes back.
    tensor *(*fn)(layer_hook *h, const layer_io *io, tensor *y, const nn_ctx *ctx);
    void (*free)(layer_hook *h); // may be NULL
    layer_hook *next;
};

typedef struct {
    layer_hook *ffn;    // on the feed-forward branch, before its residual add
    layer_hook *output; // on the block's output
} layer_hooks;

// Runs a list over y (freeing the intermediate values), returning the final value.
tensor *layer_hooks_run(layer_hook *list, const layer_io *io, tensor *y, const nn_ctx *ctx);
void layer_hooks_append(layer_hook **list, layer_hook *h);
void layer_hooks_free(layer_hooks *hooks);

// ITM's positive pairs: cls (B, H) the fused [CLS], text_cls (B, H) the unimodal text [CLS].
typedef struct cls_hook cls_hook;
struct cls_hook {
    tensor *(*fn)(cls_hook *h, tensor *cls, tensor *text_cls, const nn_ctx *ctx);
    void (*free)(cls_hook *h);
    cls_hook *next;
};

// Runs a list over cls (freeing the intermediate values), returning the final value.
tensor *cls_hooks_run(cls_hook *list, tensor *cls, tensor *text_cls, const nn_ctx *ctx);
void cls_hooks_append(cls_hook **list, cls_hook *h);
void cls_hooks_free(cls_hook **list);

// Extra terms of the ITC loss (MCAM): image_feat, text_feat (B, E) the batch's normalised ITC
// features; fn returns a () loss.
typedef struct loss_hook loss_hook;
struct loss_hook {
    tensor *(*fn)(loss_hook *h, tensor *image_feat, tensor *text_feat, const nn_ctx *ctx);
    void (*free)(loss_hook *h); // may be NULL
    loss_hook *next;
};

// The sum of the list's terms, or NULL for an empty list.
tensor *loss_hooks_run(loss_hook *list, tensor *image_feat, tensor *text_feat, const nn_ctx *ctx);
void loss_hooks_free(loss_hook *list);
