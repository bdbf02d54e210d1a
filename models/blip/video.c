#include "models/blip/video.h"

#include <stdlib.h>

#include "models/blip/retrieval.h"
#include "nn/nn.h"
#include "ops/ops.h"
#include "tensor/error.h"

// frames (F, 3, S, S) -> (F, N + 1, D), chunk frames a ViT pass; nothing is saved for backward,
// so only one chunk's activations are alive at a time.
static tensor *embed_chunks(const blip_model *m, tensor *frames, int64_t chunk, const nn_ctx *ctx) {
    int64_t n = frames->shape[0], parts = (n + chunk - 1) / chunk;
    tensor **embeds = malloc((size_t)parts * sizeof *embeds);
    PETAL_CHECK(embeds != NULL, "blip_video_embeds: out of host memory");
    bool grad = grad_mode_set(false);
    for (int64_t i = 0; i < parts; i++) {
        int64_t end = (i + 1) * chunk < n ? (i + 1) * chunk : n;
        tensor *part = tensor_slice(frames, 0, i * chunk, end, 1);
        embeds[i] = nn_consume(part, blip_image_embeds(m, part, ctx));
    }
    tensor *out = tensor_concat(embeds, (int)parts, 0);
    grad_mode_set(grad);
    for (int64_t i = 0; i < parts; i++) tensor_free(embeds[i]);
    free(embeds);
    return out;
}

tensor *blip_video_embeds(const blip_model *m, tensor *frames, int64_t chunk, const nn_ctx *ctx) {
    PETAL_CHECK(frames->ndim == 5 && frames->shape[2] == 3,
                "blip_video_embeds: frames must be (B, T, 3, S, S), got %d dims", frames->ndim);
    PETAL_CHECK(chunk >= 0, "blip_video_embeds: chunk %lld < 0", (long long)chunk);
    int64_t b = frames->shape[0], t = frames->shape[1];
    tensor *flat = tensor_reshape(frames, SHAPE(b * t, 3, frames->shape[3], frames->shape[4]));
    tensor *e = chunk > 0 ? embed_chunks(m, flat, chunk, ctx) : blip_image_embeds(m, flat, ctx);
    tensor_free(flat);
    return nn_consume(e, tensor_reshape(e, SHAPE(b, t, e->shape[1], e->shape[2])));
}

tensor *blip_video_feat(const blip_model *m, tensor *embeds, blip_video_itc how) {
    const nn_ctx eval = NN_EVAL; // as in blip_image_feat: the projection has no dropout
    tensor *cls = tensor_select(embeds, 2, 0); // (B, T, D)
    tensor *pooled;                            // (B, E)
    if (how == BLIP_VIDEO_ITC_PROJ_MEAN) {
        tensor *proj = nn_consume(cls, nn_linear_forward(&m->vision_proj, cls, &eval));
        pooled = nn_consume(proj, tensor_mean(proj, 1, false));
    } else {
        tensor *mean = nn_consume(cls, tensor_mean(cls, 1, false));
        pooled = nn_consume(mean, nn_linear_forward(&m->vision_proj, mean, &eval));
    }
    return nn_consume(pooled, tensor_normalize(pooled, -1, 1e-12));
}

tensor *blip_video_states(tensor *embeds) {
    return tensor_reshape(embeds, SHAPE(embeds->shape[0], -1, embeds->shape[3]));
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
