#include "models/blip/retrieval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/blip/video.h"
#include "nn/nn.h"
#include "ops/ops.h"
#include "tensor/backend.h"
#include "tensor/error.h"
#include "tensor/philox.h"
#include "tensor/scope.h"

// ---- small helpers ----

// (B) ids -> (1, B) or (B, 1) views
static tensor *as_row(tensor *v) {
    return tensor_reshape(v, SHAPE(1, tensor_numel(v)));
}
static tensor *as_col(tensor *v) {
    return tensor_reshape(v, SHAPE(tensor_numel(v), 1));
}

// eq(a, b) of integer tensors as 0/1 in dtype
static tensor *equal_mask(tensor *a, tensor *b, petal_dtype dtype) {
    tensor *eq = tensor_eq(a, b);
    return nn_consume(eq, tensor_cast(eq, dtype));
}

// The ITC temperature is clamped in place, outside autograd, before every step.
static void clamp_temp(blip_model *m) {
    bool grad = grad_mode_set(false);
    tensor *c = tensor_clamp(m->temp, 0.001, 0.5);
    tensor_copy_(m->temp, c);
    tensor_free(c);
    grad_mode_set(grad);
}

// -sum(log_softmax(sim, 1) * targets, 1).mean()
static tensor *soft_cross_entropy(tensor *sim, tensor *targets) {
    tensor *lp = tensor_log_softmax(sim, 1);
    tensor *prod = nn_consume(lp, tensor_mul(lp, targets));
    tensor *rows = nn_consume(prod, tensor_sum(prod, 1, false));
    tensor *mean = nn_consume(rows, tensor_mean_all(rows));
    return nn_consume(mean, tensor_neg(mean));
}

// a @ b / temp
static tensor *scaled_sim(tensor *a, tensor *b, tensor *temp) {
    tensor *s = tensor_matmul(a, b);
    return nn_consume(s, tensor_div(s, temp));
}

// ---- momentum encoders and queues ----

// p_m = p_m * c + p * (1 - c) for every momentum copy (blip_retrieval.py's _momentum_update), in
// place in one pass (the backend's mix op rounds as the two scalar products and their sum do):
// over BLIP-base's 224M momentum parameters, temporaries and a copy cost a third of a second a
// step and left 94 MB blocks in the cache.
static void ema_pair(tensor *p, tensor *pm, void *ctx) {
    double c = *(const double *)ctx;
    backend_of(pm)->binary(BINARY_MIX, pm, pm, p, c, 1.0 - c);
}

static void momentum_update(blip_model *m) {
    blip_momentum_pairs(m, ema_pair, &m->cfg.momentum_coef);
}

// Columns [from, from + n) of source into the queue's columns [at, at + n).
static void queue_write(tensor *queue, tensor *source, int64_t at, int64_t from, int64_t n) {
    tensor *window = tensor_slice(queue, 1, at, at + n, 1);
    tensor *part = tensor_slice(source, 1, from, from + n, 1);
    tensor_copy_(window, part);
    tensor_free(window);
    tensor_free(part);
}

// Writes the batch's momentum features and ids at the queue pointer and advances it. BLIP
// asserts that the queue is a multiple of the batch, so that a batch never wraps; here a batch
// wraps around to the queue's start (the same writes when it is a multiple), so that a batch
// left short by skipped images still fits.
static void enqueue(blip_model *m, tensor *image_feat_m, tensor *text_feat_m, tensor *ids) {
    int64_t b = image_feat_m->shape[0], q = m->cfg.queue_size;
    PETAL_CHECK(b <= q, "blip retrieval: batch %lld is larger than the queue (%lld)", (long long)b,
                (long long)q);
    int64_t ptr = (int64_t)tensor_item(m->ptr_queue);
    int64_t first = b < q - ptr ? b : q - ptr; // before the wrap
    tensor *targets[] = {m->image_queue, m->text_queue, m->idx_queue};
    tensor *sources[] = {tensor_transpose(image_feat_m, 0, 1), tensor_transpose(text_feat_m, 0, 1),
                         as_row(ids)};
    for (int i = 0; i < 3; i++) {
        queue_write(targets[i], sources[i], ptr, 0, first);
        if (first < b) queue_write(targets[i], sources[i], 0, first, b - first);
        tensor_free(sources[i]);
    }
    tensor_fill_(m->ptr_queue, (double)((ptr + b) % q));
}

// ---- encoding ----

static blip_visual encode_images(const vit_model *vit, const nn_linear *proj, tensor *images,
                                 bool with_frames, const void *opts, const nn_ctx *ctx) {
    (void)with_frames; // an image is one frame: frame-aware attention would scale nothing
    (void)opts;
    const nn_ctx eval = NN_EVAL; // as in blip_image_feat: the projection has no dropout
    tensor *embeds = vit_forward(vit, images, ctx);
    tensor *cls = tensor_select(embeds, 1, 0);
    tensor *p = nn_consume(cls, nn_linear_forward(proj, cls, &eval));
    return (blip_visual){embeds, nn_consume(p, tensor_normalize(p, -1, 1e-12)), NULL};
}

const blip_visual_encoder blip_image_encoder = {encode_images, NULL, false};

static void visual_free(blip_visual *v) {
    tensor_free(v->states);
    tensor_free(v->feat);
    tensor_free(v->frame_feat);
}

// ---- ITC ----

typedef struct {
    blip_visual v;     // the main vision tower's, with gradients
    tensor *text_feat; // (B, E) with gradients
    tensor *text_cls;  // (B, H) the unimodal text encoder's [CLS] (ICE reads it)
} retrieval_features;

// Enqueues the momentum features and ids of every rank's batch (blip_retrieval.py gathers them
// in _dequeue_and_enqueue), so that the queues stay equal on every rank.
static void enqueue_all(blip_model *m, tensor *image_feat_m, tensor *text_feat_m, tensor *ids,
                        const blip_collectives *dist) {
    if (!dist) {
        enqueue(m, image_feat_m, text_feat_m, ids);
        return;
    }
    tensor *a = dist->gather(dist->ctx, image_feat_m), *b = dist->gather(dist->ctx, text_feat_m);
    tensor *c = dist->gather(dist->ctx, ids);
    enqueue(m, a, b, c);
    tensor_free(a);
    tensor_free(b);
    tensor_free(c);
}

static tensor *itc_momentum(blip_model *m, const retrieval_features *f,
                            const blip_visual_encoder *enc, tensor *pixels, tensor *ids,
                            tensor *mask, tensor *image_ids, const retrieval_options *opt,
                            const nn_ctx *ctx) {
    double alpha = opt->alpha;
    petal_dtype dt = f->v.feat->dtype;
    tensor *col = as_col(image_ids), *row = as_row(image_ids);
    tensor *idx_all = tensor_concat((tensor *[]){row, m->idx_queue}, 2, 1); // (1, B + Q)
    tensor *pos = equal_mask(col, idx_all, dt);
    tensor *pos_sum = tensor_sum(pos, 1, true);
    tensor *sim_targets = tensor_div(pos, pos_sum);
    bool grad = grad_mode_set(false);
    momentum_update(m);
    blip_visual vm = enc->encode(&m->vit_m, &m->vision_proj_m, pixels, false, enc->opts, ctx);
    tensor *image_feat_m = vm.feat;
    bert_input in = {.ids = ids, .mask = mask, .mode = BERT_TEXT};
    tensor *text_h_m = bert_forward(&m->text_m, &in, ctx);
    tensor *tcls_m = tensor_select(text_h_m, 1, 0);
    tensor *tproj_m = nn_linear_forward(&m->text_proj_m, tcls_m, ctx);
    tensor *text_feat_m = tensor_normalize(tproj_m, -1, 1e-12);
    tensor *it = tensor_transpose(image_feat_m, 0, 1), *tt = tensor_transpose(text_feat_m, 0, 1);
    tensor *image_all = tensor_concat((tensor *[]){it, m->image_queue}, 2, 1); // (E, B + Q)
    tensor *text_all = tensor_concat((tensor *[]){tt, m->text_queue}, 2, 1);
    tensor *targets[2];
    tensor *sims_m[2] = {scaled_sim(image_feat_m, text_all, m->temp),
                         scaled_sim(text_feat_m, image_all, m->temp)};
    for (int i = 0; i < 2; i++) { // alpha softmax(sim_m) + (1 - alpha) sim_targets
        tensor *sm = tensor_softmax(sims_m[i], 1);
        tensor *a = tensor_mul_scalar(sm, alpha), *b = tensor_mul_scalar(sim_targets, 1 - alpha);
        targets[i] = tensor_add(a, b);
        tensor_free(sm);
        tensor_free(a);
        tensor_free(b);
        tensor_free(sims_m[i]);
    }
    grad_mode_set(grad);
    tensor *sim_i2t = scaled_sim(f->v.feat, text_all, m->temp);
    tensor *sim_t2i = scaled_sim(f->text_feat, image_all, m->temp);
    tensor *l_i2t = soft_cross_entropy(sim_i2t, targets[0]);
    tensor *l_t2i = soft_cross_entropy(sim_t2i, targets[1]);
    tensor *sum = tensor_add(l_i2t, l_t2i);
    tensor *loss = tensor_mul_scalar(sum, 0.5);
    grad = grad_mode_set(false);
    enqueue_all(m, image_feat_m, text_feat_m, image_ids, opt->dist);
    grad_mode_set(grad);
    visual_free(&vm);
    tensor *temps[] = {col,        row,        idx_all,     pos,     pos_sum, sim_targets, text_h_m,
                       tcls_m,     tproj_m,    text_feat_m, it,      tt,      image_all,   text_all,
                       targets[0], targets[1], sim_i2t,     sim_t2i, l_i2t,   l_t2i,       sum};
    for (size_t i = 0; i < sizeof temps / sizeof temps[0]; i++) tensor_free(temps[i]);
    return loss;
}

// Without momentum encoders: in-batch contrastive loss against the image-id targets.
static tensor *itc_in_batch(blip_model *m, const retrieval_features *f, tensor *image_ids) {
    petal_dtype dt = f->v.feat->dtype;
    tensor *col = as_col(image_ids), *row = as_row(image_ids);
    tensor *pos = equal_mask(col, row, dt);
    tensor *pos_sum = tensor_sum(pos, 1, true);
    tensor *targets = tensor_div(pos, pos_sum);
    tensor *tt = tensor_transpose(f->text_feat, 0, 1), *it = tensor_transpose(f->v.feat, 0, 1);
    tensor *sim_i2t = scaled_sim(f->v.feat, tt, m->temp);
    tensor *sim_t2i = scaled_sim(f->text_feat, it, m->temp);
    tensor *l_i2t = soft_cross_entropy(sim_i2t, targets);
    tensor *l_t2i = soft_cross_entropy(sim_t2i, targets);
    tensor *sum = tensor_add(l_i2t, l_t2i);
    tensor *loss = tensor_mul_scalar(sum, 0.5);
    tensor *temps[] = {col, row,     pos,     pos_sum, targets, tt,
                       it,  sim_i2t, sim_t2i, l_i2t,   l_t2i,   sum};
    for (size_t i = 0; i < sizeof temps / sizeof temps[0]; i++) tensor_free(temps[i]);
    return loss;
}

// ---- ITM with hard negatives ----

void blip_sample_rows(tensor *weights, rng_generator *g, int64_t *out) {
    int64_t rows = weights->shape[0], cols = weights->shape[1];
    double *w = malloc((size_t)(rows * cols) * sizeof *w);
    PETAL_CHECK(w != NULL, "blip_sample_rows: out of host memory");
    tensor_to_doubles(weights, w);
    rng_state s = rng_reserve(g, rows);
    for (int64_t r = 0; r < rows; r++) {
        const double *row = w + r * cols;
        double total = 0;
        for (int64_t c = 0; c < cols; c++) total += row[c];
        out[r] = cols - 1;
        // Weights that are not finite come from similarities that overflowed; ITC's loss, made of
        // the same similarities, is not finite either, and the trainer stops on it. Any index
        // serves until then.
        if (!isfinite(total)) continue;
        PETAL_CHECK(total > 0,
                    "hard negatives: row %lld has no candidate (every item shares its id)",
                    (long long)r);
        double u = philox_uniform(s.seed, s.offset, (uint64_t)r) * total, acc = 0;
        for (int64_t c = 0; c < cols; c++) {
            acc += row[c];
            if (u < acc && row[c] > 0) {
                out[r] = c;
                break;
            }
        }
    }
    free(w);
}

// softmax(a @ b^T / temp) with same-id pairs zeroed: the hard-negative weights.
static tensor *negative_weights(tensor *a, tensor *b, tensor *temp, tensor *same) {
    tensor *bt = tensor_transpose(b, 0, 1);
    tensor *sim = nn_consume(bt, scaled_sim(a, bt, temp));
    tensor *p = nn_consume(sim, tensor_softmax(sim, 1));
    return nn_consume(p, tensor_masked_fill(p, same, 0.0));
}

static tensor *index_tensor(const int64_t *v, int64_t n, petal_device device) {
    tensor *t = tensor_from_data(PETAL_I64, SHAPE(n), v);
    return device.type == PETAL_CPU ? t : nn_consume(t, tensor_to(t, device));
}

// Where hard negatives come from: this rank's batch, or every rank's (negative_all_rank).
typedef struct {
    tensor *states;                 // (P, S, D), with gradients
    tensor *image_feat, *text_feat; // (P, E) no gradient
    tensor *frame_feat;             // (P, T, E) no gradient, or NULL (no frame-aware attention)
    tensor *enc_ids, *mask;         // (P, L)
    tensor *image_ids;              // (P)
    bool gathered;                  // the tensors are the pool's own (else the batch's)
} negative_pool;

static negative_pool pool_of(const retrieval_features *f, tensor *enc_ids, tensor *mask,
                             tensor *image_ids, const retrieval_options *opt) {
    const blip_collectives *d = opt->negatives_all_ranks ? opt->dist : NULL;
    if (!d)
        return (negative_pool){f->v.states, f->v.feat, f->text_feat, f->v.frame_feat,
                               enc_ids,     mask,      image_ids,    false};
    tensor *frames = f->v.frame_feat ? d->gather(d->ctx, f->v.frame_feat) : NULL;
    return (negative_pool){d->gather_grad(d->ctx, f->v.states), d->gather(d->ctx, f->v.feat),
                           d->gather(d->ctx, f->text_feat),     frames,
                           d->gather(d->ctx, enc_ids),          d->gather(d->ctx, mask),
                           d->gather(d->ctx, image_ids),        true};
}

static void pool_free(negative_pool *p) {
    tensor *ts[] = {p->states,  p->image_feat, p->text_feat, p->frame_feat,
                    p->enc_ids, p->mask,       p->image_ids};
    for (int i = 0; p->gathered && i < 7; i++) tensor_free(ts[i]);
}

// For each text a negative image and for each image a negative text, drawn from the pool by
// softmax similarity with same-id pairs excluded (or replayed from opt).
static void draw_negatives(blip_model *m, const retrieval_features *f, const negative_pool *p,
                           tensor *image_ids, const retrieval_options *opt, int64_t *neg_img,
                           int64_t *neg_txt) {
    int64_t b = image_ids->shape[0];
    if (opt->neg_image_for_text && opt->neg_text_for_image) {
        memcpy(neg_img, opt->neg_image_for_text, (size_t)b * sizeof *neg_img);
        memcpy(neg_txt, opt->neg_text_for_image, (size_t)b * sizeof *neg_txt);
        return;
    }
    bool grad = grad_mode_set(false);
    tensor *col = as_col(image_ids), *row = as_row(p->image_ids);
    tensor *same = equal_mask(col, row, f->v.feat->dtype);
    tensor *w_i2t = negative_weights(f->v.feat, p->text_feat, m->temp, same);
    tensor *w_t2i = negative_weights(f->text_feat, p->image_feat, m->temp, same);
    blip_sample_rows(w_t2i, opt->rng, neg_img); // a negative image for each text
    blip_sample_rows(w_i2t, opt->rng, neg_txt); // a negative text for each image
    tensor *temps[] = {col, row, same, w_i2t, w_t2i};
    for (int i = 0; i < 5; i++) tensor_free(temps[i]);
    grad_mode_set(grad);
}

// Frame-aware key scales (P, S) of (text, video) pairs: text features (P, E), frame features
// (P, T, E) of videos whose states have S tokens; NULL without frame features.
static tensor *pair_scale(tensor *text_feat, tensor *frame_feat, int64_t s) {
    if (!frame_feat) return NULL;
    int64_t t = frame_feat->shape[1];
    PETAL_CHECK(s % t == 0, "frame-aware attention: %lld states are not %lld frames' tokens",
                (long long)s, (long long)t);
    return blip_video_frame_scale(text_feat, frame_feat, s / t);
}

// The negative pass's scales, its pairs ordered as CP/blip_retrieval.py 281-283 stacks them:
// (text b, its negative video) for every b, then (video b's negative text, video b).
static tensor *negative_scale(const retrieval_features *f, const negative_pool *p, tensor *img_idx,
                              tensor *txt_idx) {
    if (!f->v.frame_feat) return NULL;
    bool grad = grad_mode_set(false);
    tensor *frames_neg = tensor_index_select(p->frame_feat, 0, img_idx);
    tensor *text_neg = tensor_index_select(p->text_feat, 0, txt_idx);
    tensor *texts = tensor_concat((tensor *[]){f->text_feat, text_neg}, 2, 0);       // (2B, E)
    tensor *frames = tensor_concat((tensor *[]){frames_neg, f->v.frame_feat}, 2, 0); // (2B, T, E)
    tensor *scale = pair_scale(texts, frames, f->v.states->shape[1]);
    tensor *temps[] = {frames_neg, text_neg, texts, frames};
    for (int i = 0; i < 4; i++) tensor_free(temps[i]);
    grad_mode_set(grad);
    return scale;
}

// The images of ITM's 3B pairs (positives, then the negative pass's pairs) as rows of distinct
// states: the batch's own (the pool is the batch), or the batch's followed by the negatives drawn
// from every rank. Each distinct image's cross-attention key and value products are then made
// once for all the pairs it is in (bert_input.encoder_index).
static tensor *pair_images(const retrieval_features *f, const negative_pool *p,
                           const int64_t *neg_img, tensor *img_idx, tensor **rows) {
    int64_t b = img_idx->shape[0];
    int64_t *r = malloc((size_t)(3 * b) * sizeof *r);
    PETAL_CHECK(r != NULL, "blip retrieval: out of host memory");
    for (int64_t i = 0; i < b; i++) {
        r[i] = r[2 * b + i] = i;
        r[b + i] = p->gathered ? b + i : neg_img[i];
    }
    *rows = index_tensor(r, 3 * b, img_idx->device);
    free(r);
    tensor *states = f->v.states;
    if (!p->gathered) return tensor_reshape(states, states->ndim, states->shape);
    tensor *neg = tensor_index_select(p->states, 0, img_idx);
    return nn_consume(neg, tensor_concat((tensor *[]){states, neg}, 2, 0)); // (2B, S, D)
}

// The frame-aware key scales of the 3B pairs, or NULL without frame features.
static tensor *pair_scales(const retrieval_features *f, const negative_pool *p, tensor *img_idx,
                           tensor *txt_idx) {
    tensor *pos = pair_scale(f->text_feat, f->v.frame_feat, f->v.states->shape[1]);
    if (!pos) return NULL;
    tensor *neg = negative_scale(f, p, img_idx, txt_idx);
    return nn_consume(pos, nn_consume(neg, tensor_concat((tensor *[]){pos, neg}, 2, 0)));
}

// BLIP's ITM: each text with its image, and the negative pass's pairs (each text with a hard
// negative image, each image with a hard negative text), in one multimodal pass.
static tensor *itm_loss(blip_model *m, const retrieval_features *f, tensor *ids, tensor *mask,
                        tensor *image_ids, const retrieval_options *opt, const nn_ctx *ctx) {
    int64_t b = ids->shape[0];
    petal_device dev = ids->device;
    tensor *enc_ids = blip_with_first_token(ids, m->cfg.tokens.enc);
    int64_t *neg_img = malloc((size_t)b * sizeof *neg_img),
            *neg_txt = malloc((size_t)b * sizeof *neg_txt);
    PETAL_CHECK(neg_img && neg_txt, "blip retrieval: out of host memory");
    negative_pool pool = pool_of(f, enc_ids, mask, image_ids, opt);
    draw_negatives(m, f, &pool, image_ids, opt, neg_img, neg_txt);
    tensor *img_idx = index_tensor(neg_img, b, dev), *txt_idx = index_tensor(neg_txt, b, dev);
    tensor *ids_neg = tensor_index_select(pool.enc_ids, 0, txt_idx);
    tensor *mask_neg = tensor_index_select(pool.mask, 0, txt_idx);
    tensor *scale = pair_scales(f, &pool, img_idx, txt_idx), *rows;
    tensor *states = pair_images(f, &pool, neg_img, img_idx, &rows);
    pool_free(&pool);
    tensor *ids_all = tensor_concat((tensor *[]){enc_ids, enc_ids, ids_neg}, 3, 0);
    tensor *mask_all = tensor_concat((tensor *[]){mask, mask, mask_neg}, 3, 0);
    tensor *h = blip_multimodal_rows(m, ids_all, mask_all, states, rows, scale, ctx);
    tensor *cls = tensor_select(h, 1, 0); // (3B, H)
    tensor *cls_pos =
        cls_hooks_run(m->itm_positive, tensor_slice(cls, 0, 0, b, 1), f->text_cls, ctx);
    tensor *cls_neg = tensor_slice(cls, 0, b, 3 * b, 1);
    tensor *vl = tensor_concat((tensor *[]){cls_pos, cls_neg}, 2, 0); // (3B, H)
    vl = cls_hooks_run(m->itm_all, vl, f->text_cls, ctx);
    tensor *logits = nn_linear_forward(&m->itm_head, vl, ctx);
    tensor *labels = tensor_zeros(PETAL_I64, SHAPE(3 * b));
    for (int64_t i = 0; i < b; i++) tensor_data_i64(labels)[i] = 1;
    if (dev.type != PETAL_CPU) labels = nn_consume(labels, tensor_to(labels, dev));
    tensor *loss = tensor_cross_entropy(logits, labels, NULL);
    tensor *temps[] = {enc_ids, img_idx, txt_idx, ids_neg,  mask_neg, scale,
                       rows,    states,  ids_all, mask_all, h,        cls,
                       cls_pos, cls_neg, vl,      logits,   labels};
    for (size_t i = 0; i < sizeof temps / sizeof temps[0]; i++) tensor_free(temps[i]);
    free(neg_img);
    free(neg_txt);
    return loss;
}

retrieval_losses blip_retrieval_losses(blip_model *m, tensor *images, tensor *ids, tensor *mask,
                                       tensor *image_ids, const retrieval_options *opt,
                                       const nn_ctx *ctx) {
    return blip_retrieval_losses_with(m, &blip_image_encoder, images, ids, mask, image_ids, opt,
                                      ctx);
}

retrieval_losses blip_retrieval_losses_with(blip_model *m, const blip_visual_encoder *enc,
                                            tensor *pixels, tensor *ids, tensor *mask,
                                            tensor *image_ids, const retrieval_options *opt,
                                            const nn_ctx *ctx) {
    PETAL_CHECK(blip_task_trains_itc(m->cfg.task), "blip_retrieval_losses: the model is for %s",
                blip_task_name(m->cfg.task));
    clamp_temp(m);
    retrieval_features f;
    f.v = enc->encode(&m->vit, &m->vision_proj, pixels, enc->frame_aware, enc->opts, ctx);
    bert_input text = {.ids = ids, .mask = mask, .mode = BERT_TEXT};
    tensor *text_h = bert_forward(&m->text, &text, ctx);
    f.text_cls = tensor_select(text_h, 1, 0);
    tensor_free(text_h);
    tensor *text_proj = nn_linear_forward(&m->text_proj, f.text_cls, ctx);
    f.text_feat = nn_consume(text_proj, tensor_normalize(text_proj, -1, 1e-12));
    retrieval_losses out;
    out.ita = m->cfg.momentum ? itc_momentum(m, &f, enc, pixels, ids, mask, image_ids, opt, ctx)
                              : itc_in_batch(m, &f, image_ids);
    out.itc_extra = loss_hooks_run(m->itc_extra, f.v.feat, f.text_feat, ctx);
    if (out.itc_extra) out.ita = nn_consume(out.ita, tensor_add(out.ita, out.itc_extra));
    out.itm = itm_loss(m, &f, ids, mask, image_ids, opt, ctx);
    out.image_embeds = opt->keep_image_embeds ? f.v.states : NULL;
    if (!opt->keep_image_embeds) tensor_free(f.v.states);
    tensor_free(f.v.frame_feat);
    tensor_free(f.text_cls);
    out.image_feat = f.v.feat;
    out.text_feat = f.text_feat;
    return out;
}

// ---- evaluation ----

// ITM match scores itm_head(...)[:, 1] for text rows ids/mask against image embeds[rows] (k rows
// each; rows NULL: embeds row by row).
static tensor *itm_scores(const blip_model *m, tensor *ids, tensor *mask, tensor *embeds,
                          tensor *rows) {
    const nn_ctx eval = NN_EVAL;
    tensor *logits = blip_itm_logits_rows(m, ids, mask, embeds, rows, &eval);
    return nn_consume(logits, tensor_select(logits, 1, 1));
}

// For each row r of sims (R, C): the top k columns get itm(r, c) + beta * sim, the rest -100.
// `pair` builds the (k) ITM inputs of row r for columns `top`: ids, mask, image embeds and the
// rows of embeds the k texts are scored against (NULL: one each).
typedef void (*pair_fn)(const blip_model *m, int64_t r, tensor *top, tensor *text_ids,
                        tensor *text_mask, tensor *image_embeds, tensor **ids, tensor **mask,
                        tensor **embeds, tensor **rows);

// Rows [from, to) of the rerank; the other rows are left 0.
static tensor *rerank(const blip_model *m, tensor *sims, int64_t k, double beta, pair_fn pair,
                      tensor *text_ids, tensor *text_mask, tensor *image_embeds, int part,
                      int parts) {
    int64_t rows = sims->shape[0], cols = sims->shape[1];
    int64_t step = rows / parts + 1; // train_retrieval.py's split of the rows over the ranks
    int64_t from = part * step < rows ? part * step : rows;
    int64_t to = from + step < rows ? from + step : rows;
    tensor *scores = tensor_keep(tensor_zeros(PETAL_F32, SHAPE(rows, cols)));
    for (int64_t i = from * cols; i < to * cols; i++) tensor_data_f32(scores)[i] = -100.0f;
    for (int64_t r = from; r < to; r++) {
        int mark = scope_begin();
        tensor *row = tensor_select(sims, 0, r), *top;
        tensor *top_sim = tensor_topk(row, k, true, &top);
        tensor *ids, *mask, *embeds, *pair_rows;
        pair(m, r, top, text_ids, text_mask, image_embeds, &ids, &mask, &embeds, &pair_rows);
        tensor *score = itm_scores(m, ids, mask, embeds, pair_rows);
        tensor *total = tensor_add(score, tensor_mul_scalar(top_sim, beta)); // x 1 is exact
        double *v = malloc((size_t)k * sizeof *v);
        tensor_to_doubles(total, v);
        tensor *topc = tensor_to(top, DEVICE_CPU);
        for (int64_t j = 0; j < k; j++)
            tensor_data_f32(scores)[r * cols + tensor_data_i64(topc)[j]] = (float)v[j];
        free(v);
        scope_end(mark);
    }
    return scores;
}

// Image r against its top texts: the texts' rows, all against the image (its key and value
// products made once, not k times).
static void image_row_pair(const blip_model *m, int64_t r, tensor *top, tensor *text_ids,
                           tensor *text_mask, tensor *image_embeds, tensor **ids, tensor **mask,
                           tensor **embeds, tensor **rows) {
    (void)m;
    int64_t k = tensor_numel(top);
    *ids = tensor_index_select(text_ids, 0, top);
    *mask = tensor_index_select(text_mask, 0, top);
    *embeds = tensor_slice(image_embeds, 0, r, r + 1, 1);
    *rows = tensor_zeros_on(top->device, PETAL_I64, SHAPE(k));
}

// Text r against its top images: the text repeated, the images' rows.
static void text_row_pair(const blip_model *m, int64_t r, tensor *top, tensor *text_ids,
                          tensor *text_mask, tensor *image_embeds, tensor **ids, tensor **mask,
                          tensor **embeds, tensor **rows) {
    (void)m;
    *rows = NULL;
    int64_t k = tensor_numel(top), l = text_ids->shape[1];
    *ids = tensor_expand(tensor_slice(text_ids, 0, r, r + 1, 1), SHAPE(k, l));
    *mask = tensor_expand(tensor_slice(text_mask, 0, r, r + 1, 1), SHAPE(k, l));
    *embeds = tensor_index_select(image_embeds, 0, top);
}

void blip_retrieval_scores(const blip_model *m, tensor *image_embeds, tensor *image_feat,
                           tensor *text_ids, tensor *text_mask, tensor *text_feat, int64_t k_test,
                           double beta, tensor **i2t, tensor **t2i) {
    blip_retrieval_scores_part(m, image_embeds, image_feat, text_ids, text_mask, text_feat, k_test,
                               beta, 0, 1, i2t, t2i);
}

void blip_retrieval_scores_part(const blip_model *m, tensor *image_embeds, tensor *image_feat,
                                tensor *text_ids, tensor *text_mask, tensor *text_feat,
                                int64_t k_test, double beta, int part, int parts, tensor **i2t,
                                tensor **t2i) {
    PETAL_CHECK(parts >= 1 && part >= 0 && part < parts, "blip_retrieval_scores: part %d of %d",
                part, parts);
    bool grad = grad_mode_set(false);
    int mark = scope_begin();
    tensor *enc_ids = blip_with_first_token(text_ids, m->cfg.tokens.enc);
    tensor *sims = tensor_matmul(image_feat, tensor_transpose(text_feat, 0, 1)); // (I, T)
    int64_t k_i = k_test < sims->shape[1] ? k_test : sims->shape[1];
    int64_t k_t = k_test < sims->shape[0] ? k_test : sims->shape[0];
    *i2t =
        rerank(m, sims, k_i, beta, image_row_pair, enc_ids, text_mask, image_embeds, part, parts);
    tensor *sims_t = tensor_contiguous(tensor_transpose(sims, 0, 1));
    *t2i =
        rerank(m, sims_t, k_t, beta, text_row_pair, enc_ids, text_mask, image_embeds, part, parts);
    scope_end(mark);
    grad_mode_set(grad);
}

// Rank of column `target` in row r: how many columns score strictly higher.
static int64_t rank_of(const float *row, int64_t cols, int64_t target) {
    int64_t rank = 0;
    for (int64_t c = 0; c < cols; c++) rank += row[c] > row[target];
    return rank;
}

static void recall_at(const int64_t *ranks, int64_t n, double *r1, double *r5, double *r10) {
    int64_t c1 = 0, c5 = 0, c10 = 0;
    for (int64_t i = 0; i < n; i++) {
        c1 += ranks[i] < 1;
        c5 += ranks[i] < 5;
        c10 += ranks[i] < 10;
    }
    *r1 = 100.0 * (double)c1 / (double)n;
    *r5 = 100.0 * (double)c5 / (double)n;
    *r10 = 100.0 * (double)c10 / (double)n;
}

retrieval_recall blip_retrieval_recall(tensor *i2t, tensor *t2i, const int64_t *img2txt,
                                       const int64_t *n_per_image, const int64_t *txt2img) {
    int64_t n_img = i2t->shape[0], n_txt = i2t->shape[1];
    tensor *a = tensor_cast(i2t, PETAL_F32), *b = tensor_cast(t2i, PETAL_F32);
    int64_t *ranks = malloc((size_t)(n_img > n_txt ? n_img : n_txt) * sizeof *ranks);
    PETAL_CHECK(ranks != NULL, "blip_retrieval_recall: out of host memory");
    retrieval_recall r;
    const int64_t *texts = img2txt;
    for (int64_t i = 0; i < n_img; i++) { // the best-ranked of the image's captions counts
        ranks[i] = n_txt;
        for (int64_t j = 0; j < n_per_image[i]; j++) {
            int64_t rk = rank_of(tensor_data_f32(a) + i * n_txt, n_txt, texts[j]);
            if (rk < ranks[i]) ranks[i] = rk;
        }
        texts += n_per_image[i];
    }
    recall_at(ranks, n_img, &r.txt_r1, &r.txt_r5, &r.txt_r10);
    for (int64_t t = 0; t < n_txt; t++)
        ranks[t] = rank_of(tensor_data_f32(b) + t * n_img, n_img, txt2img[t]);
    recall_at(ranks, n_txt, &r.img_r1, &r.img_r5, &r.img_r10);
    r.r_mean = ((r.txt_r1 + r.txt_r5 + r.txt_r10) / 3 + (r.img_r1 + r.img_r5 + r.img_r10) / 3) / 2;
    free(ranks);
    tensor_free(a);
    tensor_free(b);
    return r;
}
