// Shared by the petl suites: the tiny BLIP they attach methods to, its outputs, and gradchecks of
// a model's trainable tensors.
#pragma once

#include <stdbool.h>

#include "models/blip/blip.h"
#include "petl/petl.h"

typedef struct {
    blip_model *m;
    tensor *images, *ids, *mask; // a batch of 2
} tiny;

// A tiny retrieval model (dropout off, no momentum) with random weights and inputs.
tiny tiny_new(petal_dtype dtype);

// A tiny VQA model (question encoder and answer decoder, dropout and drop-path off) with random
// weights (seed 3) and a batch: 2 questions, 2 and 1 weighted answers.
typedef struct {
    blip_model *m;
    tensor *images, *q_ids, *q_mask, *a_ids, *a_mask, *weights;
} tiny_vqa;
tiny_vqa tiny_vqa_new(petal_dtype dtype);
// Its VQA loss (blip_vqa_loss, eval mode: the same number on every call).
tensor *tiny_vqa_loss(const tiny_vqa *t);
// ITM logits of the image-grounded [CLS] and the ITC features of a batch, concatenated (B, 2 + 2E).
tensor *petl_test_outputs(const blip_model *m, tensor *images, tensor *ids, tensor *mask);
tensor *tiny_outputs(const tiny *t);
// ITC + ITM of the tiny batch in training mode (fixed hard negatives), plus the MCAM term if the
// model has one; *extra (may be NULL) receives retrieval_losses.itc_extra.
tensor *tiny_losses(const tiny *t, tensor **extra);

// BLIP-base for `task` (queues of 16, parameters left zero) with cfg attached.
petl_handle *attach_base(blip_task task, petl_config cfg, blip_model **out);
// Fills every registry entry whose name matches one of the comma-separated globs with N(0, 0.3):
// zero-initialised factors made random, so gradients reach every other parameter.
void randomise(blip_model *m, const char *patterns);

// Each config attached to a fresh tiny model (f32) leaves its outputs bit-for-bit unchanged.
void check_unchanged_at_step0(const petl_config *configs, int n);
// cfg on the tiny model with the factors matching `random` made random: petl_merge changes the
// ViT's qkv weight and keeps the outputs (1e-6); petl_unmerge restores weights and outputs.
void check_merge(petl_config cfg, const char *random, const char *what);
// f64 gradcheck of cfg on the tiny model, the factors matching `random` made random first, over
// the tensors matching `checked` (comma-separated globs; NULL: every trainable tensor), of one
// number: the tiny outputs projected on a fixed random direction, or (losses) tiny_losses.
void gradcheck_config(petl_config cfg, const char *random, const char *checked, bool losses,
                      const char *what);
