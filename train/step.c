#include "train/step.h"

#include "models/blip/retrieval.h"
#include "models/blip/tasks.h"
#include "models/blip/video.h"
#include "ops/ops.h"

static void part(step_parts *p, const char *name, tensor *value) {
    p->names[p->n] = name;
    p->values[p->n++] = tensor_item(value);
}

blip_video_itc step_video_itc(const train_config *c) {
    return c->video_itc == TRAIN_VIDEO_ITC_BLIP ? BLIP_VIDEO_ITC_PROJ_MEAN
                                                : BLIP_VIDEO_ITC_MEAN_PROJ;
}

static tensor *gather(void *comm, tensor *x) {
    tensor *all;
    if (dist_all_gather(comm, x, &all)) dist_abort(comm, "concat_all_gather");
    return all;
}

static tensor *gather_grad(void *comm, tensor *x) {
    return dist_gather_grad(comm, x);
}

// ITC with momentum distillation and ITM with hard negatives; pretraining adds the decoder's LM
// loss on the same image embeddings (blip_pretrain.py).
static tensor *itc_itm_loss(const train_model *tm, const train_config *c, const train_batch *b,
                            double alpha, bool with_lm, dist_comm *comm, const nn_ctx *ctx,
                            step_parts *p) {
    blip_collectives dist = {comm, gather, gather_grad};
    retrieval_options o = {.alpha = alpha,
                           .rng = ctx->rng,
                           .keep_image_embeds = with_lm,
                           .dist = comm ? &dist : NULL,
                           .negatives_all_ranks = c->negative_all_rank};
    blip_video_options v = {step_video_itc(c), c->frame_aware_attention};
    retrieval_losses l = c->media == TRAIN_MEDIA_VIDEO
                             ? blip_video_retrieval_losses(tm->m, b->images, b->text_ids,
                                                           b->text_mask, b->image_ids, &o, &v, ctx)
                             : blip_retrieval_losses(tm->m, b->images, b->text_ids, b->text_mask,
                                                     b->image_ids, &o, ctx);
    tensor *loss = tensor_add(l.ita, l.itm);
    part(p, "loss_ita", l.ita);
    part(p, "loss_itm", l.itm);
    if (with_lm) {
        tensor *lm =
            blip_caption_loss_embeds(tm->m, l.image_embeds, b->text_ids, b->text_mask, 0, ctx);
        part(p, "loss_lm", lm);
        loss = tensor_add(loss, lm);
    }
    return loss;
}

tensor *step_loss(const train_model *tm, const train_config *c, const train_batch *b, double alpha,
                  rng_generator *g, dist_comm *comm, step_parts *parts) {
    const nn_ctx ctx = {true, g};
    *parts = (step_parts){0};
    switch (c->task) {
    case TRAIN_TASK_RETRIEVAL:
        return itc_itm_loss(tm, c, b, alpha, false, comm, &ctx, parts);
    case TRAIN_TASK_PRETRAIN:
        return itc_itm_loss(tm, c, b, alpha, true, comm, &ctx, parts);
    case TRAIN_TASK_VQA: {
        tensor *(*vqa_loss)(const blip_model *, tensor *, tensor *, tensor *, tensor *, tensor *,
                            const int64_t *, tensor *, const nn_ctx *) =
            c->media == TRAIN_MEDIA_VIDEO ? blip_video_vqa_loss : blip_vqa_loss;
        tensor *loss = vqa_loss(tm->m, b->images, b->text_ids, b->text_mask, b->answer_ids,
                                b->answer_mask, b->answer_counts, b->answer_weights, &ctx);
        part(parts, "loss_vqa", loss);
        return loss;
    }
    case TRAIN_TASK_CAPTION: {
        tensor *loss =
            blip_caption_loss(tm->m, b->images, b->text_ids, b->text_mask, tm->prompt_len, &ctx);
        part(parts, "loss_lm", loss);
        return loss;
    }
    }
    return NULL;
}
