// Image-text retrieval (Salesforce blip_retrieval.py and train_retrieval.py): the training losses
// (ITC with momentum distillation and queues, ITM with hard negatives) and the k_test rerank
// evaluation with recall@1/5/10.
#pragma once

#include "models/blip/blip.h"

// Data parallelism, as hooks so that models/ needs nothing from train/ (train/dist.c fills them):
// what blip_retrieval.py does across GPUs.
typedef struct {
    void *ctx;
    // Every rank's x (B, ...) stacked in rank order: concat_all_gather, no gradient.
    tensor *(*gather)(void *ctx, tensor *x);
    // The same with all_gather_with_grad's backward (this rank's rows of the summed gradient).
    tensor *(*gather_grad)(void *ctx, tensor *x);
} blip_collectives;

typedef struct {
    double alpha;       // distillation weight (0.4, ramped over the first epoch by the trainer)
    rng_generator *rng; // hard-negative sampling (NULL: the default generator)
    // Replay these negatives instead of sampling (B each; tests use torch's choices), or NULL.
    const int64_t *neg_image_for_text;
    const int64_t *neg_text_for_image;
    bool keep_image_embeds; // hand the image embeddings back (pretraining's LM loss reads them)
    // Several processes (NULL: one): the queues take every rank's momentum features and image
    // ids, and with negatives_all_ranks the hard negatives are drawn from every rank's batch
    // (negative_all_rank), the chosen images' embeddings with gradients.
    const blip_collectives *dist;
    bool negatives_all_ranks;
} retrieval_options;

// A visual batch as the losses read it, from one vision tower (the model's or its momentum copy).
typedef struct {
    tensor *states;     // (B, S, D) what the multimodal encoder cross-attends to
    tensor *feat;       // (B, E) the normalised ITC feature
    tensor *frame_feat; // (B, T, E) each frame's normalised feature (frame-aware ITM), or NULL
} blip_visual;

// How pixels (images, or videos' frames) become a blip_visual through a vision tower vit and its
// projection proj, with frame features when with_frames; opts belongs to the encoder. Images and
// videos share every loss through it.
typedef struct {
    blip_visual (*encode)(const vit_model *vit, const nn_linear *proj, tensor *pixels,
                          bool with_frames, const void *opts, const nn_ctx *ctx);
    const void *opts;
    bool frame_aware; // the main tower's encoding has frame_feat: frame-aware ITM
} blip_visual_encoder;

// images (B, 3, S, S): states the image embeddings (B, N + 1, D), feat normalize(proj(cls)).
extern const blip_visual_encoder blip_image_encoder;

typedef struct {
    tensor *ita;       // () (i2t + t2i) / 2, plus itc_extra
    tensor *itc_extra; // () the model's extra ITC terms (m->itc_extra: MCAM), or NULL if none
    tensor *itm;       // () cross-entropy over [B positives, B text negatives, B image negatives]
    tensor *image_feat, *text_feat; // (B, E) the normalised ITC features (extra losses read them)
    tensor *image_embeds; // (B, S, D) the states (B, N + 1, D for images) with keep_image_embeds
} retrieval_losses;

// One training step's losses for images (B, 3, S, S), texts ids/mask (B, L) ([CLS] first) and
// image ids (B, i64; equal ids are positives of each other). With cfg.momentum it also updates
// the momentum encoders and the queues, as blip_retrieval.py does inside forward. The ITC
// temperature is clamped to [0.001, 0.5] first.
retrieval_losses blip_retrieval_losses(blip_model *m, tensor *images, tensor *ids, tensor *mask,
                                       tensor *image_ids, const retrieval_options *opt,
                                       const nn_ctx *ctx);
// The same for any visual input: pixels go through enc with the main and the momentum towers.
// With frame_feat in the encoding, every ITM pass (positives and both hard-negative halves)
// scales its cross-attention keys by blip_video_frame_scale of its (text, video) pairs.
retrieval_losses blip_retrieval_losses_with(blip_model *m, const blip_visual_encoder *enc,
                                            tensor *pixels, tensor *ids, tensor *mask,
                                            tensor *image_ids, const retrieval_options *opt,
                                            const nn_ctx *ctx);

// Draws one index per row of weights (R, C) with probability proportional to the weights (rows
// must have a positive sum): torch.multinomial(w, 1) with petal's generator.
void blip_sample_rows(tensor *weights, rng_generator *g, int64_t *out);

// Score matrices of the k_test rerank: for each image, its k_test most similar texts by ITC
// cosine get itm_head(...)[1] + beta * cosine, all others -100; likewise for each text. BLIP's
// train_retrieval.py adds the cosine (beta 1); the released Aurora configs rank by ITM alone
// (beta 0). image_embeds
// (I, N, D), image_feat (I, E), text_ids (T, L) with [CLS] (replaced by [ENC] here), text_mask,
// text_feat (T, E). Outputs (I, T) and (T, I), f32 on the CPU.
void blip_retrieval_scores(const blip_model *m, tensor *image_embeds, tensor *image_feat,
                           tensor *text_ids, tensor *text_mask, tensor *text_feat, int64_t k_test,
                           double beta, tensor **i2t, tensor **t2i);

// The share of one of `parts` processes: the rows of part `part` in train_retrieval.py's split
// (rows / parts + 1 each, in order) as above, every other row 0, so that the sum of the parts'
// matrices is blip_retrieval_scores' (the ITC similarities, cheap, are computed whole).
void blip_retrieval_scores_part(const blip_model *m, tensor *image_embeds, tensor *image_feat,
                                tensor *text_ids, tensor *text_mask, tensor *text_feat,
                                int64_t k_test, double beta, int part, int parts, tensor **i2t,
                                tensor **t2i);

typedef struct {
    double txt_r1, txt_r5, txt_r10; // image -> text: best rank among the image's captions
    double img_r1, img_r5, img_r10; // text -> image
    double r_mean;
} retrieval_recall;

// itm_eval of train_retrieval.py: img2txt[i] lists the texts of image i (n_per_image[i] of them,
// concatenated in img2txt), txt2img[t] the image of text t.
retrieval_recall blip_retrieval_recall(tensor *i2t, tensor *t2i, const int64_t *img2txt,
                                       const int64_t *n_per_image, const int64_t *txt2img);
