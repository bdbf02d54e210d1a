// Text-video retrieval with the image BLIP (docs/video-models.md): every frame through the ViT,
// the ITC feature from the frames' [CLS] embeddings, and the multimodal encoder cross-attending to
// all frames' tokens concatenated frame by frame (Salesforce eval_retrieval_video.py; WillDreamer
// Aurora CP/blip_retrieval.py and train_video_retrieval.py).
#pragma once

#include "models/blip/blip.h"
#include "models/blip/generate.h"
#include "models/blip/retrieval.h"

// How the frames' [CLS] embeddings cls_t (t < T) become the video's ITC feature. vision_proj is
// affine, so both are the same function; they differ in rounding and in where the mean sits
// (before the projection, Aurora's training, or after it, every evaluation).
typedef enum {
    BLIP_VIDEO_ITC_PROJ_MEAN, // normalize(mean_t(vision_proj(cls_t))): BLIP's and Aurora's eval
    BLIP_VIDEO_ITC_MEAN_PROJ, // normalize(vision_proj(mean_t(cls_t))): Aurora's training forward
} blip_video_itc;

// frames (B, T, 3, S, S) -> frame embeddings (B, T, N + 1, D), [CLS] first in each frame.
// chunk 0: one ViT pass over the B T frames, recording gradients when grad mode is on; chunk > 0:
// at most chunk frames a pass with gradients off, which bounds evaluation's memory by the chunk.
tensor *blip_video_embeds(const blip_model *m, tensor *frames, int64_t chunk, const nn_ctx *ctx);
// frame embeddings (B, T, N + 1, D) -> the normalised ITC feature (B, E)
tensor *blip_video_feat(const blip_model *m, tensor *embeds, blip_video_itc how);
// frame embeddings (B, T, N + 1, D) -> each frame's normalize(vision_proj(cls_t)) (B, T, E):
// Aurora's frame_feat (CP/blip_retrieval.py 106), what frame-aware attention weighs frames by.
tensor *blip_video_frame_feat(const blip_model *m, tensor *embeds);
// frame embeddings (B, T, N + 1, D) -> what cross-attention reads (B, T (N + 1), D): frame 0's
// tokens, then frame 1's, as video_feat.view(B, -1, D) orders them.
tensor *blip_video_states(tensor *embeds);
// itm_head of the video-grounded [CLS] of ids (B, L) (first token [ENC]) and mask (B, L) against
// frame embeddings (B, T, N + 1, D), paired row by row: (B, 2) logits, index 1 = match.
tensor *blip_video_itm_logits(const blip_model *m, tensor *ids, tensor *mask, tensor *embeds,
                              const nn_ctx *ctx);
// eval_retrieval_video.py's score matrices: blip_retrieval_scores over frame embeddings
// (V, T, N + 1, D) and video features (V, E); v2t (V, T_txt), t2v (T_txt, V). BLIP's and
// Aurora's video evaluations both add the cosine (beta 1).
void blip_video_retrieval_scores(const blip_model *m, tensor *embeds, tensor *video_feat,
                                 tensor *text_ids, tensor *text_mask, tensor *text_feat,
                                 int64_t k_test, double beta, tensor **v2t, tensor **t2v);

// Aurora's frame-aware attention (CP/med.py 205-214): for P (text, video) pairs with normalised
// text ITC features text_feat (P, E) and frame features frame_feat (P, T, E), the cross-attention
// key scale (P, T tokens) over states laid out as blip_video_states does (tokens = N + 1 a frame):
// T softmax_t(text . frame_t / 4) on each frame's tokens 1..N, 1 on its [CLS]. No gradient.
tensor *blip_video_frame_scale(tensor *text_feat, tensor *frame_feat, int64_t tokens);

typedef struct {
    blip_video_itc itc; // the ITC feature: Aurora trains with BLIP_VIDEO_ITC_MEAN_PROJ
    bool frame_aware;   // frame-aware attention in every ITM pass (Aurora's MSR-VTT and DiDeMo)
} blip_video_options;

// Aurora's video training step (CP/blip_retrieval.py forward): blip_retrieval_losses with frames
// (B, T, 3, S, S) for images and video ids (B, i64). Both towers encode every frame; the ITC
// features follow video->itc, ITM cross-attends to all frames' tokens (B, T (N + 1), D), hard
// negatives included; out.image_embeds (keep_image_embeds) are those states. opt's collectives
// gather the states when negatives_all_ranks.
retrieval_losses blip_video_retrieval_losses(blip_model *m, tensor *frames, tensor *ids,
                                             tensor *mask, tensor *video_ids,
                                             const retrieval_options *opt,
                                             const blip_video_options *video, const nn_ctx *ctx);

// VideoQA: blip_vqa_loss, blip_vqa_rank and blip_vqa_generate with the question encoder
// cross-attending to every frame's tokens (blip_video_states). rank and generate encode the frames
// without gradients, chunk frames a ViT pass (0: all at once; see blip_video_embeds).
tensor *blip_video_vqa_loss(const blip_model *m, tensor *frames, tensor *q_ids, tensor *q_mask,
                            tensor *a_ids, tensor *a_mask, const int64_t *n_per_question,
                            tensor *weights, const nn_ctx *ctx);
tensor *blip_video_vqa_rank(const blip_model *m, tensor *frames, int64_t chunk, tensor *q_ids,
                            tensor *q_mask, tensor *a_ids, tensor *a_mask, int64_t k);
generate_result blip_video_vqa_generate(const blip_model *m, tensor *frames, int64_t chunk,
                                        tensor *q_ids, tensor *q_mask, const generate_options *opt);
