#include "train/evaluate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/autograd.h"
#include "io/buffer.h"
#include "io/files.h"
#include "io/json.h"
#include "io/text.h"
#include "models/blip/retrieval.h"
#include "models/blip/video.h"
#include "models/blip/tasks.h"
#include "ops/ops.h"
#include "tensor/scope.h"
#include "train/caption_metrics.h"
#include "train/eval_shard.h"
#include "train/rank_metrics.h"
#include "train/step.h"
#include "train/vqa_metrics.h"

static void metric(eval_result *r, const char *name, double value) {
    PETAL_CHECK(r->n < EVAL_MAX_METRICS, "evaluate: too many metrics");
    r->names[r->n] = name;
    r->values[r->n++] = value;
}

// Per-batch tensors, concatenated along dim 0 at the end.
typedef struct {
    tensor **items;
    int n;
    size_t cap;
} batch_list;

static void batch_list_push(batch_list *s, tensor *t) {
    s->items = buffer_grow(s->items, &s->cap, (size_t)s->n + 1, sizeof *s->items);
    s->items[s->n++] = t;
}

static tensor *batch_list_concat(batch_list *s) {
    tensor *t = s->n == 1 ? s->items[0] : tensor_concat(s->items, s->n, 0);
    free(s->items);
    *s = (batch_list){0};
    return t;
}

// ---- retrieval ----

// What the multimodal encoder cross-attends to and the ITC feature of a batch: images (B, 3, S, S)
// give their embeddings (B, N + 1, D); videos (B, T, 3, S, S) every frame's, concatenated
// (B, T (N + 1), D), their frames taken through the ViT video_chunk at a time.
static void visual_features(const train_config *c, const train_model *tm, tensor *images,
                            tensor **states, tensor **feat) {
    const nn_ctx eval = NN_EVAL;
    if (c->media == TRAIN_MEDIA_IMAGE) {
        *states = blip_image_embeds(tm->m, images, &eval);
        *feat = blip_image_feat(tm->m, *states);
        return;
    }
    tensor *frames = blip_video_embeds(tm->m, images, c->video_chunk, &eval); // (B, T, N + 1, D)
    *feat = blip_video_feat(tm->m, frames, step_video_itc(c));
    *states = blip_video_states(frames);
    tensor_free(frames);
}

// Image embeddings (I, N + 1, D) and ITC features (I, E) of every image of the split, in order
// (for videos, what visual_features gives).
static petal_status image_features(const train_config *c, const train_model *tm,
                                   const train_data *d, tensor **embeds, tensor **feats) {
    loader_options o = splits_loader_options(c, false);
    o.skip_bad_images = false; // every image is a row of the score matrices
    loader *l;
    petal_status s = loader_new(d, NULL, &o, 0, 0, &l);
    batch_list e = {0}, f = {0};
    train_batch b;
    bool done = false;
    while (!s && !(s = loader_next(l, &b, &done)) && !done) {
        tensor *x, *feat;
        visual_features(c, tm, b.images, &x, &feat);
        batch_list_push(&e, x);
        batch_list_push(&f, feat);
        train_batch_free(&b);
    }
    loader_free(l);
    if (!s && e.n == 0) s = petal_error(PETAL_ERR_ARG, "the split has no images");
    *embeds = e.n ? batch_list_concat(&e) : NULL;
    *feats = f.n ? batch_list_concat(&f) : NULL;
    free(e.items);
    free(f.items);
    return s;
}

// Tokenized texts as the model takes them: the mask in the config's dtype, both on its device
// (where the batches are).
static void texts_for_model(const train_config *c, tensor **ids, tensor **mask) {
    petal_device device = train_config_device(c);
    *mask = nn_consume(*mask, tensor_cast(*mask, train_config_dtype(c)));
    *mask = nn_consume(*mask, tensor_to(*mask, device));
    *ids = nn_consume(*ids, tensor_to(*ids, device));
}

// Every caption of the split tokenized (T, L) and its ITC features (T, E), in chunks of 256.
static petal_status text_features(const train_config *c, const train_model *tm,
                                  const ann_retrieval_set *set, tensor **ids, tensor **mask,
                                  tensor **feats) {
    tokenizer_options o = train_data_text_options(c->task);
    if (c->text_length > 0) o.max_length = (int)c->text_length;
    batch_list si = {0}, sm = {0}, sf = {0};
    petal_status s = PETAL_OK;
    const nn_ctx eval = NN_EVAL;
    for (int64_t i = 0; i < set->n_texts && !s; i += 256) {
        int n = (int)(set->n_texts - i < 256 ? set->n_texts - i : 256);
        tensor *chunk_ids, *chunk_mask;
        s = tokenizer_encode_batch(tm->tok, (const char *const *)set->texts + i, n, &o, &chunk_ids,
                                   &chunk_mask);
        if (s) break;
        texts_for_model(c, &chunk_ids, &chunk_mask);
        batch_list_push(&si, chunk_ids);
        batch_list_push(&sm, chunk_mask);
        batch_list_push(&sf, blip_text_feat(tm->m, chunk_ids, chunk_mask, &eval));
    }
    if (!s && si.n == 0) s = petal_error(PETAL_ERR_ARG, "the split has no captions");
    *ids = si.n ? batch_list_concat(&si) : NULL;
    *mask = sm.n ? batch_list_concat(&sm) : NULL;
    *feats = sf.n ? batch_list_concat(&sf) : NULL;
    free(si.items);
    free(sm.items);
    free(sf.items);
    return s;
}

// The score matrices summed over the ranks (each computed its rows, zeros elsewhere).
static petal_status sum_parts(dist_comm *comm, tensor **i2t, tensor **t2i) {
    tensor *both[] = {*i2t, *t2i};
    petal_device dev = dist_device(comm);
    for (int i = 0; i < 2; i++) both[i] = tensor_to(both[i], dev);
    petal_status s = dist_all_reduce(comm, both, 2, DIST_SUM);
    tensor *back[] = {tensor_to(both[0], DEVICE_CPU), tensor_to(both[1], DEVICE_CPU)};
    for (int i = 0; i < 2; i++) tensor_free(both[i]);
    tensor_free(*i2t);
    tensor_free(*t2i);
    *i2t = back[0];
    *t2i = back[1];
    return s;
}

static petal_status eval_retrieval(const train_config *c, const train_model *tm,
                                   const train_data *d, dist_comm *comm, eval_result *r) {
    tensor *embeds, *image_feat, *ids, *mask, *text_feat;
    petal_status s = image_features(c, tm, d, &embeds, &image_feat);
    if (!s) s = text_features(c, tm, d->retrieval, &ids, &mask, &text_feat);
    if (s) return s;
    tensor *i2t, *t2i;
    blip_retrieval_scores_part(tm->m, embeds, image_feat, ids, mask, text_feat, c->k_test, c->beta,
                               comm ? dist_rank(comm) : 0, comm ? dist_world_size(comm) : 1, &i2t,
                               &t2i);
    if (comm && (s = sum_parts(comm, &i2t, &t2i))) {
        tensor_free(i2t);
        tensor_free(t2i);
        return s;
    }
    rank_metrics m;
    s = rank_metrics_compute(i2t, t2i, d->retrieval->image_texts, d->retrieval->text_image, &m);
    tensor_free(i2t);
    tensor_free(t2i);
    if (s) return s;
    metric(r, "txt_r1", m.txt_r1);
    metric(r, "txt_r5", m.txt_r5);
    metric(r, "txt_r10", m.txt_r10);
    metric(r, "txt_mdr", m.txt_mdr);
    metric(r, "img_r1", m.img_r1);
    metric(r, "img_r5", m.img_r5);
    metric(r, "img_r10", m.img_r10);
    metric(r, "img_mdr", m.img_mdr);
    metric(r, "r_mean", m.r_mean);
    r->score_name = "r_mean";
    r->score = m.r_mean;
    return PETAL_OK;
}

// ---- files of results ----

// dir/<split>_step<step>.json, or a fresh temporary file when dir is NULL (*temp set).
static char *results_path(const char *dir, train_split split, int64_t step, bool *temp) {
    *temp = dir == NULL;
    if (dir) {
        size_t n = strlen(dir) + 64;
        char *p = buffer_alloc(n, "evaluate");
        snprintf(p, n, "%s/%s_step%lld.json", dir, train_split_name(split), (long long)step);
        return p;
    }
    char *p = buffer_strndup("/tmp/petal-results-XXXXXX", 25);
    int fd = mkstemp(p);
    if (fd >= 0) close(fd);
    return p;
}

// ---- vqa ----

static generate_options search_options(const train_model *tm, int beams, int64_t max_length,
                                       int64_t min_length) {
    return (generate_options){.num_beams = beams,
                              .max_length = max_length,
                              .min_length = min_length,
                              .repetition_penalty = 1.0,
                              .length_penalty = 1.0,
                              .eos = tm->m->cfg.tokens.sep,
                              .pad = tm->m->cfg.tokens.pad};
}

// The answers of one batch's questions (malloc'd strings), ranked or generated as BLIP does.
static char **vqa_answers(const train_config *c, const train_model *tm, const train_data *d,
                          const train_batch *b, tensor *a_ids, tensor *a_mask) {
    char **out = buffer_calloc((size_t)b->n, sizeof *out, "evaluate");
    if (c->inference == TRAIN_VQA_RANK) {
        int64_t k = c->k_test < d->answer_list->n ? c->k_test : d->answer_list->n;
        tensor *ranked =
            c->media == TRAIN_MEDIA_VIDEO
                ? blip_video_vqa_rank(tm->m, b->images, c->video_chunk, b->text_ids, b->text_mask,
                                      a_ids, a_mask, k)
                : blip_vqa_rank(tm->m, b->images, b->text_ids, b->text_mask, a_ids, a_mask, k);
        tensor *best = nn_consume(ranked, tensor_to(ranked, DEVICE_CPU)); // (n) answer indices
        for (int64_t i = 0; i < b->n; i++) {
            const char *a = d->answer_list->items[tensor_data_i64(best)[i]];
            out[i] = buffer_strndup(a, strlen(a));
        }
        tensor_free(best);
        return out;
    }
    generate_options g = search_options(tm, 3, 10, 1); // blip_vqa.py's generate
    generate_result r = c->media == TRAIN_MEDIA_VIDEO
                            ? blip_video_vqa_generate(tm->m, b->images, c->video_chunk, b->text_ids,
                                                      b->text_mask, &g)
                            : blip_vqa_generate(tm->m, b->images, b->text_ids, b->text_mask, &g);
    for (int64_t i = 0; i < b->n; i++)
        out[i] = tokenizer_decode(tm->tok, r.tokens + i * r.len, (size_t)r.len, true);
    generate_result_free(&r);
    return out;
}

// MSRVTT-QA's accuracy: the normalised prediction equals the normalised (only) answer.
static double exact_match(const char *pred, const char *answer) {
    char *a = vqa_normalize_answer(pred), *b = vqa_normalize_answer(answer);
    double same = strcmp(a, b) == 0;
    free(a);
    free(b);
    return same;
}

// This rank's share of the split's answers (train/eval_shard.h), into out.
static petal_status vqa_share(const train_config *c, const train_model *tm, const train_data *d,
                              tensor *a_ids, tensor *a_mask, dist_comm *comm, eval_outputs *out) {
    loader *l;
    petal_status s = eval_shard_loader(c, d, tm->tok, comm, &l);
    train_batch b;
    bool done = false;
    while (!s && l && !(s = loader_next(l, &b, &done)) && !done) {
        char **answers = vqa_answers(c, tm, d, &b, a_ids, a_mask);
        for (int64_t i = 0; i < b.n; i++) eval_outputs_push(out, b.indices[i], answers[i]);
        free(answers);
        train_batch_free(&b);
    }
    loader_free(l);
    return s;
}

static petal_status eval_vqa(const train_config *c, const train_model *tm, const train_data *d,
                             const char *results, dist_comm *comm, eval_result *r) {
    bool video = c->media == TRAIN_MEDIA_VIDEO;
    if (c->inference == TRAIN_VQA_RANK && !d->answer_list)
        return petal_error(PETAL_ERR_ARG, "%s: answer_list: ranking needs the answer list",
                           c->source);
    tensor *a_ids = NULL, *a_mask = NULL;
    tokenizer_options ao = train_data_answer_options();
    petal_status s = PETAL_OK;
    if (c->inference == TRAIN_VQA_RANK)
        s = tokenizer_encode_batch(tm->tok, (const char *const *)d->answer_list->items,
                                   (int)d->answer_list->n, &ao, &a_ids, &a_mask);
    if (a_ids) texts_for_model(c, &a_ids, &a_mask);
    eval_outputs out = {0};
    if (!s) s = vqa_share(c, tm, d, a_ids, a_mask, comm, &out);
    if (!s) s = eval_outputs_gather(comm, &out);
    int64_t *qids = buffer_calloc((size_t)out.n + 1, sizeof *qids, "evaluate");
    int64_t answered = 0;
    double acc = 0;
    for (int64_t i = 0; i < out.n && !s; i++) {
        const ann_vqa *q = d->samples[out.index[i]].vqa;
        qids[i] = q->question_id;
        if (q->n_raw == 0) continue; // a test question without answers: results file only
        acc += video ? exact_match(out.text[i], q->raw_answers[0])
                     : vqa_accuracy(out.text[i], (const char *const *)q->raw_answers, q->n_raw);
        answered++;
    }
    if (!s) s = vqa_results_write(results, qids, (const char *const *)out.text, out.n);
    eval_outputs_free(&out);
    free(qids);
    if (s) return s;
    r->score_name = video ? "qa_acc" : "vqa_acc";
    r->score = answered ? 100.0 * acc / (double)answered : 0;
    if (answered) metric(r, r->score_name, r->score);
    return PETAL_OK;
}

// ---- caption ----

// The prompt as blip.py feeds the decoder: [DEC] and its tokens, without the final [SEP]. (1, P)
static petal_status prompt_ids(const train_config *c, const train_model *tm, tensor **out) {
    tokenizer_options o = {.padding = TOKENIZER_PAD_LONGEST, .first = TOKENIZER_FIRST_BOS};
    tensor *ids, *mask;
    const char *prompt = c->prompt ? c->prompt : "";
    petal_status s = tokenizer_encode_batch(tm->tok, &prompt, 1, &o, &ids, &mask);
    if (s) return s;
    *out = tensor_contiguous(tensor_slice(ids, 1, 0, ids->shape[1] - 1, 1));
    return PETAL_OK;
}

// This rank's share of the split's captions (train/eval_shard.h), the prompt cut off, into out.
static petal_status caption_share(const train_config *c, const train_model *tm, const train_data *d,
                                  dist_comm *comm, eval_outputs *out) {
    tensor *prompt;
    petal_status s = prompt_ids(c, tm, &prompt);
    if (s) return s;
    generate_options g = search_options(tm, (int)c->num_beams, c->max_length, c->min_length);
    const char *prefix = c->prompt ? c->prompt : "";
    loader *l;
    s = eval_shard_loader(c, d, NULL, comm, &l);
    train_batch b;
    bool done = false;
    while (!s && l && !(s = loader_next(l, &b, &done)) && !done) {
        generate_result gen = blip_caption_generate(tm->m, b.images, prompt, &g);
        for (int64_t i = 0; i < b.n; i++) {
            char *text = tokenizer_decode(tm->tok, gen.tokens + i * gen.len, (size_t)gen.len, true);
            const char *caption = text_after_prompt(text, prefix);
            eval_outputs_push(out, b.indices[i], buffer_strndup(caption, strlen(caption)));
            free(text);
        }
        generate_result_free(&gen);
        train_batch_free(&b);
    }
    loader_free(l);
    return s;
}

// The results file [{"image_id", "caption"}] of the outputs, in their order.
static petal_status caption_results_write(const char *path, const train_data *d,
                                          const eval_outputs *o) {
    strbuf out = {0};
    strbuf_push(&out, '[');
    for (int64_t i = 0; i < o->n; i++) {
        strbuf_printf(&out, "%s\n {\"image_id\": %lld, \"caption\": ", i ? "," : "",
                      (long long)d->samples[o->index[i]].image_id);
        json_write_string(&out, o->text[i]);
        strbuf_push(&out, '}');
    }
    strbuf_printf(&out, "\n]\n");
    petal_status s = file_write_atomic(path, out.data, out.len, "caption results");
    strbuf_free(&out);
    return s;
}

static petal_status eval_caption(const train_config *c, const train_model *tm, const train_data *d,
                                 train_split split, const char *results, dist_comm *comm,
                                 eval_result *r) {
    eval_outputs out = {0};
    petal_status s = caption_share(c, tm, d, comm, &out);
    if (!s) s = eval_outputs_gather(comm, &out);
    if (!s) s = caption_results_write(results, d, &out);
    eval_outputs_free(&out);
    char *gt = NULL;
    if (!s) {
        char *ann_root = train_config_path(c, c->ann_root);
        const char *file = split == TRAIN_SPLIT_TEST ? c->test_gt_file : c->val_gt_file;
        size_t len = strlen(ann_root) + strlen(file) + 2;
        gt = buffer_alloc(len, "evaluate");
        snprintf(gt, len, "%s/%s", ann_root, file);
        free(ann_root);
    }
    caption_scores cs;
    if (!s) s = caption_metrics_score_files(results, gt, &cs);
    free(gt);
    if (s) return s;
    static const char *const bleu[] = {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"};
    for (int i = 0; i < 4; i++) metric(r, bleu[i], cs.bleu[i]);
    metric(r, "ROUGE_L", cs.rouge_l);
    metric(r, "CIDEr", cs.cider);
    r->score_name = "CIDEr";
    r->score = cs.cider;
    return PETAL_OK;
}

petal_status evaluate_split(const train_config *c, const train_model *tm, train_split split,
                            const char *results_dir, int64_t step, eval_result *out) {
    return evaluate_split_on(c, tm, split, results_dir, step, NULL, out);
}

petal_status evaluate_split_on(const train_config *c, const train_model *tm, train_split split,
                               const char *results_dir, int64_t step, dist_comm *comm,
                               eval_result *out) {
    *out = (eval_result){0};
    train_data d;
    petal_status s = splits_load(c, split, &d);
    if (s) return s;
    bool grad = grad_mode_set(false);
    petal_precision outer = precision_set(c->precision);
    int mark = scope_begin();
    bool temp = false;
    char *results = NULL;
    switch (c->task) {
    case TRAIN_TASK_RETRIEVAL:
    case TRAIN_TASK_PRETRAIN:
        s = eval_retrieval(c, tm, &d, comm, out);
        break;
    case TRAIN_TASK_VQA:
        results = results_path(results_dir, split, step, &temp);
        s = eval_vqa(c, tm, &d, results, comm, out);
        break;
    case TRAIN_TASK_CAPTION:
        results = results_path(results_dir, split, step, &temp);
        s = eval_caption(c, tm, &d, split, results, comm, out);
        break;
    }
    if (temp) unlink(results);
    free(results);
    scope_end(mark);
    precision_set(outer);
    grad_mode_set(grad);
    train_data_free(&d);
    return s;
}

char *eval_result_json(const eval_result *r, int64_t step, int64_t epoch, const char *split) {
    strbuf b = {0};
    strbuf_printf(&b, "{\"step\": %lld, \"epoch\": %lld, \"split\": \"%s\"", (long long)step,
                  (long long)epoch, split);
    for (int i = 0; i < r->n; i++) strbuf_printf(&b, ", \"%s\": %.9g", r->names[i], r->values[i]);
    strbuf_printf(&b, "}");
    return strbuf_take(&b);
}
