// Captioning and VQA (Salesforce blip.py BLIP_Decoder and blip_vqa.py BLIP_VQA): training losses
// and inference. Token ids come from the tokenizer with [CLS] first; these functions put [DEC] or
// [ENC] in its place, as BLIP does.
#pragma once

#include "models/blip/blip.h"
#include "models/blip/generate.h"

// Captioning loss: the decoder reads ids (B, L) (first token -> [DEC]) with mask (B, L), cross-
// attending to the image; padding and the first prompt_len tokens are not predicted. Label
// smoothing 0.1, mean over the predicted tokens.
tensor *blip_caption_loss(const blip_model *m, tensor *images, tensor *ids, tensor *mask,
                          int64_t prompt_len, const nn_ctx *ctx);
// The same on image embeddings already computed (B, N + 1, D): the LM loss of BLIP's
// pretraining, which shares one ViT pass with ITC and ITM (caption and pretrain models).
tensor *blip_caption_loss_embeds(const blip_model *m, tensor *image_embeds, tensor *ids,
                                 tensor *mask, int64_t prompt_len, const nn_ctx *ctx);
// Captions for images (B, 3, S, S) from a prompt (1, P) whose first token is [DEC] (BLIP's
// "a picture of " is [DEC] a picture of). The image embeddings are replicated once per beam.
generate_result blip_caption_generate(const blip_model *m, tensor *images, tensor *prompt,
                                      const generate_options *opt);

// Question states: the image-grounded encoder on questions (B, Lq) (first token -> [ENC]).
tensor *blip_vqa_encode(const blip_model *m, tensor *images, tensor *q_ids, tensor *q_mask,
                        const nn_ctx *ctx);
// VQA training loss: answers (A, La) (first token -> [DEC]) for questions, n_per_question[b] of
// them for question b (A = sum), weights (A): sum(weights * per-answer smoothed CE) / B.
tensor *blip_vqa_loss(const blip_model *m, tensor *images, tensor *q_ids, tensor *q_mask,
                      tensor *a_ids, tensor *a_mask, const int64_t *n_per_question, tensor *weights,
                      const nn_ctx *ctx);
// Rank inference over an answer list (A, La): the k answers whose first token is likeliest are
// scored by their full (smoothed) loss; returns the chosen answer index per question, (B) i64.
tensor *blip_vqa_rank(const blip_model *m, tensor *images, tensor *q_ids, tensor *q_mask,
                      tensor *a_ids, tensor *a_mask, int64_t k);
// Generate inference: answers decoded from [DEC] (beam 3, max 10, min 1 in BLIP).
generate_result blip_vqa_generate(const blip_model *m, tensor *images, tensor *q_ids,
                                  tensor *q_mask, const generate_options *opt);

// The three on visual states computed already, image_embeds (B, S, D): an image's embeddings
// (B, N + 1, D), or a video's frames' tokens (B, T (N + 1), D) (models/blip/video.h). The image
// functions above are these after blip_image_embeds.
tensor *blip_vqa_loss_embeds(const blip_model *m, tensor *image_embeds, tensor *q_ids,
                             tensor *q_mask, tensor *a_ids, tensor *a_mask,
                             const int64_t *n_per_question, tensor *weights, const nn_ctx *ctx);
tensor *blip_vqa_rank_embeds(const blip_model *m, tensor *image_embeds, tensor *q_ids,
                             tensor *q_mask, tensor *a_ids, tensor *a_mask, int64_t k);
generate_result blip_vqa_generate_embeds(const blip_model *m, tensor *image_embeds, tensor *q_ids,
                                         tensor *q_mask, const generate_options *opt);
