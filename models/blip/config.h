// BLIP configurations: the vision transformer, the BERT/MED text models, the task, and the token
// ids the models put in place of [CLS] (docs/reference.md section 1).
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tensor/error.h"

typedef struct {
    int64_t image_size, patch, width, depth, heads, mlp;
    double eps;       // LayerNorm, 1e-6
    double drop_path; // stochastic depth at the last block (linear from 0); 0.1 for VQA training
    // Activation checkpointing (BLIP's vit_grad_ckpt / vit_ckpt_layer): the first ckpt_layers
    // blocks keep only their inputs while training and recompute the rest in backward. 0: off.
    int64_t ckpt_layers;
} vit_config;

typedef struct {
    int64_t hidden, layers, heads, intermediate, vocab, max_positions;
    int64_t type_vocab;    // token-type embeddings: 0 for BLIP's MED, 2 for plain BERT checkpoints
    int64_t encoder_width; // width of what cross-attention reads; 0: no cross-attention layers
    double eps;            // LayerNorm, 1e-12
    double dropout;        // hidden dropout (0.1 in med_config.json), when training
    double attn_dropout;   // attention-probability dropout (0.1), when training
    bool lm_head;          // a decoder with BertLMHeadModel's prediction head
} bert_config;

typedef enum {
    BLIP_RETRIEVAL, // ITC + ITM (blip_retrieval.py)
    BLIP_ITM,       // ITM and ITC scores only (blip_itm.py)
    BLIP_VQA,       // question encoder + answer decoder (blip_vqa.py)
    BLIP_CAPTION,   // image-grounded decoder (blip.py BLIP_Decoder)
    BLIP_TEXT,      // a BERT text encoder alone (plain BERT checkpoints such as all-MiniLM-L6-v2)
    BLIP_PRETRAIN,  // every module: ITC + ITM + the image-grounded decoder (blip_pretrain.py)
} blip_task;

typedef struct {
    int64_t pad, unk, cls, sep, dec, enc; // bert-base-uncased + BLIP's [DEC] (bos) and [ENC]
} blip_tokens;

typedef struct {
    blip_task task;
    vit_config vision;
    bert_config text;    // text_encoder (retrieval, itm, vqa)
    bert_config decoder; // text_decoder (caption, vqa)
    int64_t embed_dim;   // ITC projection width (256)
    blip_tokens tokens;
    // Retrieval training (blip_retrieval.py)
    bool momentum;        // momentum encoders, queues and distillation
    int64_t queue_size;   // 57600
    double momentum_coef; // 0.995
    double temp;          // initial ITC temperature, 0.07 (clamped to [0.001, 0.5])
} blip_config;

const char *blip_task_name(blip_task task);
petal_status blip_task_parse(const char *name, blip_task *out);
// Which modules a task's model has.
bool blip_task_has_vision(blip_task task);  // visual_encoder
bool blip_task_has_text(blip_task task);    // text_encoder
bool blip_task_has_decoder(blip_task task); // text_decoder
bool blip_task_has_heads(blip_task task);   // vision_proj, text_proj, itm_head
// Trained with ITC + ITM: the temperature, and the momentum encoders and queues when enabled.
bool blip_task_trains_itc(blip_task task);

// BLIP-base: ViT-B/16 (768, 12 layers) and BERT-base MED at the task's BLIP image size
// (retrieval and captioning 384, VQA 480).
blip_config blip_config_base(blip_task task);
// BLIP-large: ViT-L/16 (1024, 24 layers, 16 heads) with the same text models.
blip_config blip_config_large(blip_task task);
// A tiny model for tests and the demo: widths 32, 2 layers, 2 heads, image 32, patch 16, and a
// 128-token vocabulary whose last two ids are [DEC] and [ENC].
blip_config blip_config_tiny(blip_task task);

// "blip-<size>-<task>" with size tiny, base or large and a task name ("blip-base-retrieval").
petal_status blip_config_named(const char *name, blip_config *out);

// Checks a configuration; the message names the field and the value. A configuration whose
// weights (momentum copies included) and one sample's attention scores need more memory than
// the machine has (memory_host_limit) is refused, naming the largest part and its fields.
petal_status blip_config_check(const blip_config *cfg);
