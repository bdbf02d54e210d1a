#include "models/blip/video.h"

#include <stdlib.h>

#include "models/blip/retrieval.h"
#include "models/blip/tasks.h"
#include "nn/nn.h"
#include "ops/ops.h"
#include "tensor/error.h"

// frames (F, 3, S, S) -> (F, N + 1, D), chunk frames a ViT pass; nothing is saved for backward,
// so only one chunk's activations are alive at a time.
static tensor *embed_chunks(const vit_model *vit, tensor *frames, int64_t chunk,
                            const nn_ctx *ctx) {
    int64_t n = frames->shape[0], parts = (n + chunk - 1) / chunk;
    tensor **embeds = malloc((size_t)parts * sizeof *embeds);
    PETAL_CHECK(embeds != NULL, "blip_video_embeds: out of host memory");
    bool grad = grad_mode_set(false);
    for (int64_t i = 0; i < parts; i++) {
        int64_t end = (i + 1) * chunk < n ? (i + 1) * chunk : n;
        tensor *part = tensor_slice(frames, 0, i * chunk, end, 1);
        embeds[i] = nn_consume(part, vit_forward(vit, part, ctx));
    }
    tensor *out = tensor_concat(embeds, (int)parts, 0);
    grad_mode_set(grad);
    for (int64_t i = 0; i < parts; i++) tensor_free(embeds[i]);
    free(embeds);
    return out;
}

// frames (B, T, 3, S, S) through vit -> (B, T, N + 1, D)
static tensor *frame_embeds(const vit_model *vit, tensor *frames, int64_t chunk,
                            const nn_ctx *ctx) {
    PETAL_CHECK(frames->ndim == 5 && frames->shape[2] == 3,
                "blip_video_embeds: frames must be (B, T, 3, S, S), got %d dims", frames->ndim);
    PETAL_CHECK(chunk >= 0, "blip_video_embeds: chunk %lld < 0", (long long)chunk);
    int64_t b = frames->shape[0], t = frames->shape[1];
    tensor *flat = tensor_reshape(frames, SHAPE(b * t, 3, frames->shape[3], frames->shape[4]));
    tensor *e = chunk > 0 ? embed_chunks(vit, flat, chunk, ctx) : vit_forward(vit, flat, ctx);
    tensor_free(flat);
    return nn_consume(e, tensor_reshape(e, SHAPE(b, t, e->shape[1], e->shape[2])));
}

tensor *blip_video_embeds(const blip_model *m, tensor *frames, int64_t chunk, const nn_ctx *ctx) {
    return frame_embeds(&m->vit, frames, chunk, ctx);
}

// proj(cls_t) of every frame: embeds (B, T, N + 1, D) -> (B, T, E). The projection has no
// dropout, as in blip_image_feat.
static tensor *project_cls(const nn_linear *proj, tensor *embeds) {
    const nn_ctx eval = NN_EVAL;
    tensor *cls = tensor_select(embeds, 2, 0); // (B, T, D)
    return nn_consume(cls, nn_linear_forward(proj, cls, &eval));
}

// blip_video_feat through any projection (the momentum encoder's too)
static tensor *video_feat(const nn_linear *proj, tensor *embeds, blip_video_itc how) {
    const nn_ctx eval = NN_EVAL;
    tensor *pooled; // (B, E)
    if (how == BLIP_VIDEO_ITC_PROJ_MEAN) {
        tensor *p = project_cls(proj, embeds);
        pooled = nn_consume(p, tensor_mean(p, 1, false));
    } else {
        tensor *cls = tensor_select(embeds, 2, 0); // (B, T, D)
        tensor *mean = nn_consume(cls, tensor_mean(cls, 1, false));
        pooled = nn_consume(mean, nn_linear_forward(proj, mean, &eval));
    }
    return nn_consume(pooled, tensor_normalize(pooled, -1, 1e-12));
}

tensor *blip_video_feat(const blip_model *m, tensor *embeds, blip_video_itc how) {
    return video_feat(&m->vision_proj, embeds, how);
}

tensor *blip_video_frame_feat(const blip_model *m, tensor *embeds) {
    tensor *p = project_cls(&m->vision_proj, embeds);
    return nn_consume(p, tensor_normalize(p, -1, 1e-12));
}

tensor *blip_video_states(tensor *embeds) {
    return tensor_reshape(embeds, SHAPE(embeds->shape[0], -1, embeds->shape[3]));
}

tensor *blip_video_frame_scale(tensor *text_feat, tensor *frame_feat, int64_t tokens) {
    int64_t p = frame_feat->shape[0], t = frame_feat->shape[1];
    PETAL_CHECK(tokens >= 1 && text_feat->shape[0] == p,
                "blip_video_frame_scale: %lld texts for %lld videos",
                (long long)text_feat->shape[0], (long long)p);
    bool grad = grad_mode_set(false); // CP/med.py computes the weights under torch.no_grad()
    tensor *txt = tensor_unsqueeze(text_feat, 2);                // (P, E, 1)
    tensor *w = nn_consume(txt, tensor_matmul(frame_feat, txt)); // (P, T, 1) text . frame_t
    w = nn_consume(w, tensor_div_scalar(w, 4.0));
    tensor *soft = nn_consume(w, tensor_softmax(w, 1));
    tensor *s = nn_consume(soft, tensor_mul_scalar(soft, (double)t));   // T softmax_t(w / 4)
    tensor *cls = tensor_empty_on(s->device, s->dtype, SHAPE(p, t, 1)); // [CLS] keys unscaled
    tensor_fill_(cls, 1.0);
    tensor *patches = tensor_expand(s, SHAPE(p, t, tokens - 1));
    tensor *both = tensor_concat((tensor *[]){cls, patches}, 2, 2); // (P, T, tokens)
    tensor_free(cls);
    tensor_free(patches);
    tensor_free(s);
    grad_mode_set(grad);
    return nn_consume(both, tensor_reshape(both, SHAPE(p, t * tokens)));
}

tensor *blip_video_itm_logits(const blip_model *m, tensor *ids, tensor *mask, tensor *embeds,
                              const nn_ctx *ctx) {
    tensor *states = blip_video_states(embeds);
    return nn_consume(states, blip_itm_logits(m, ids, mask, states, ctx));
}

void blip_video_retrieval_scores(const blip_model *m, tensor *embeds, tensor *video_feat,
                                 tensor *text_ids, tensor *text_mask, tensor *text_feat,
                                 int64_t k_test, double beta, tensor **v2t, tensor **t2v) {
    tensor *states = blip_video_states(embeds);
    blip_retrieval_scores(m, states, video_feat, text_ids, text_mask, text_feat, k_test, beta, v2t,
                          t2v);
    tensor_free(states);
}

// The retrieval losses' view of frames (B, T, 3, S, S) through one vision tower.
static blip_visual encode_video(const vit_model *vit, const nn_linear *proj, tensor *frames,
                                bool with_frames, const void *opts, const nn_ctx *ctx) {
    const blip_video_options *o = opts;
    tensor *embeds = frame_embeds(vit, frames, 0, ctx);
    blip_visual v = {blip_video_states(embeds), video_feat(proj, embeds, o->itc), NULL};
    if (with_frames) {
        tensor *p = project_cls(proj, embeds);
        v.frame_feat = nn_consume(p, tensor_normalize(p, -1, 1e-12));
    }
    tensor_free(embeds);
    return v;
}

retrieval_losses blip_video_retrieval_losses(blip_model *m, tensor *frames, tensor *ids,
                                             tensor *mask, tensor *video_ids,
                                             const retrieval_options *opt,
                                             const blip_video_options *video, const nn_ctx *ctx) {
    blip_visual_encoder enc = {encode_video, video, video->frame_aware};
    return blip_retrieval_losses_with(m, &enc, frames, ids, mask, video_ids, opt, ctx);
}

tensor *blip_video_vqa_loss(const blip_model *m, tensor *frames, tensor *q_ids, tensor *q_mask,
                            tensor *a_ids, tensor *a_mask, const int64_t *n_per_question,
                            tensor *weights, const nn_ctx *ctx) {
    tensor *embeds = blip_video_embeds(m, frames, 0, ctx);
    tensor *states = nn_consume(embeds, blip_video_states(embeds));
    tensor *loss =
        blip_vqa_loss_embeds(m, states, q_ids, q_mask, a_ids, a_mask, n_per_question, weights, ctx);
    tensor_free(states);
    return loss;
}

// Evaluation's states (B, T (N + 1), D), chunk frames a ViT pass, without gradients.
static tensor *eval_states(const blip_model *m, tensor *frames, int64_t chunk) {
    const nn_ctx eval = NN_EVAL;
    bool grad = grad_mode_set(false);
    tensor *embeds = blip_video_embeds(m, frames, chunk, &eval);
    grad_mode_set(grad);
    return nn_consume(embeds, blip_video_states(embeds));
}

tensor *blip_video_vqa_rank(const blip_model *m, tensor *frames, int64_t chunk, tensor *q_ids,
                            tensor *q_mask, tensor *a_ids, tensor *a_mask, int64_t k) {
    tensor *states = eval_states(m, frames, chunk);
    tensor *best = blip_vqa_rank_embeds(m, states, q_ids, q_mask, a_ids, a_mask, k);
    tensor_free(states);
    return best;
}

generate_result blip_video_vqa_generate(const blip_model *m, tensor *frames, int64_t chunk,
                                        tensor *q_ids, tensor *q_mask,
                                        const generate_options *opt) {
    tensor *states = eval_states(m, frames, chunk);
    generate_result r = blip_vqa_generate_embeds(m, states, q_ids, q_mask, opt);
    tensor_free(states);
    return r;
}
