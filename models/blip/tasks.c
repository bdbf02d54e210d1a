#include "models/blip/tasks.h"

#include "ops/ops.h"
#include "tensor/error.h"

#include <stdlib.h>

// Labels for the decoder: pad -> -100, and the first `skip` positions -> -100.
static tensor *decoder_labels(tensor *ids, int64_t pad, int64_t skip) {
    tensor *p = tensor_full(PETAL_I64, 0, NULL, (double)pad);
    if (ids->device.type != PETAL_CPU) p = nn_consume(p, tensor_to(p, ids->device));
    tensor *is_pad = nn_consume(p, tensor_eq(ids, p));
    tensor *labels = nn_consume(is_pad, tensor_masked_fill(ids, is_pad, -100));
    if (skip > 0) {
        tensor *head = tensor_slice(labels, 1, 0, skip, 1);
        tensor_fill_(head, -100);
        tensor_free(head);
    }
    return labels;
}

// The decoder's smoothed loss of ids (first token -> [DEC]) cross-attending to states.
static tensor *decoder_loss(const blip_model *m, tensor *ids, tensor *mask, tensor *states,
                            tensor *states_mask, int64_t skip, bool per_sequence,
                            const nn_ctx *ctx) {
    tensor *dec_ids = blip_with_first_token(ids, m->cfg.tokens.dec);
    tensor *labels = decoder_labels(dec_ids, m->cfg.tokens.pad, skip);
    bert_input in = {.ids = dec_ids,
                     .mask = mask,
                     .mode = BERT_MULTIMODAL,
                     .encoder_states = states,
                     .encoder_mask = states_mask,
                     .causal = true};
    tensor *h = bert_forward(&m->decoder, &in, ctx);
    tensor *logits = nn_consume(h, bert_lm_logits(&m->decoder, h));
    tensor *loss = bert_lm_loss(logits, labels, per_sequence);
    tensor_free(logits);
    tensor_free(labels);
    tensor_free(dec_ids);
    return loss;
}

tensor *blip_caption_loss(const blip_model *m, tensor *images, tensor *ids, tensor *mask,
                          int64_t prompt_len, const nn_ctx *ctx) {
    tensor *embeds = blip_image_embeds(m, images, ctx);
    return nn_consume(embeds, blip_caption_loss_embeds(m, embeds, ids, mask, prompt_len, ctx));
}

tensor *blip_caption_loss_embeds(const blip_model *m, tensor *image_embeds, tensor *ids,
                                 tensor *mask, int64_t prompt_len, const nn_ctx *ctx) {
    PETAL_CHECK(m->cfg.task == BLIP_CAPTION || m->cfg.task == BLIP_PRETRAIN,
                "blip_caption_loss: the model is for %s", blip_task_name(m->cfg.task));
    return decoder_loss(m, ids, mask, image_embeds, NULL, prompt_len, false, ctx);
}

generate_result blip_caption_generate(const blip_model *m, tensor *images, tensor *prompt,
                                      const generate_options *opt) {
    PETAL_CHECK(m->cfg.task == BLIP_CAPTION || m->cfg.task == BLIP_PRETRAIN,
                "blip_caption_generate: the model is for %s", blip_task_name(m->cfg.task));
    bool grad = grad_mode_set(false);
    const nn_ctx eval = NN_EVAL;
    int64_t b = images->shape[0];
    tensor *embeds = blip_image_embeds(m, images, &eval);
    tensor *prompts = tensor_contiguous(tensor_expand(prompt, SHAPE(b, prompt->shape[1])));
    generate_result r = blip_generate(&m->decoder, prompts, embeds, NULL, opt);
    tensor_free(prompts);
    tensor_free(embeds);
    grad_mode_set(grad);
    return r;
}

// Question states (B, Lq, H) grounded in visual states embeds (B, S, D).
static tensor *encode_question(const blip_model *m, tensor *embeds, tensor *q_ids, tensor *q_mask,
                               const nn_ctx *ctx) {
    PETAL_CHECK(m->cfg.task == BLIP_VQA, "blip_vqa: the model is for %s",
                blip_task_name(m->cfg.task));
    tensor *enc = blip_with_first_token(q_ids, m->cfg.tokens.enc);
    tensor *states = blip_multimodal(m, enc, q_mask, embeds, ctx);
    tensor_free(enc);
    return states;
}

tensor *blip_vqa_encode(const blip_model *m, tensor *images, tensor *q_ids, tensor *q_mask,
                        const nn_ctx *ctx) {
    tensor *embeds = blip_image_embeds(m, images, ctx);
    return nn_consume(embeds, encode_question(m, embeds, q_ids, q_mask, ctx));
}

// Image embeddings for inference: eval mode, no gradients.
static tensor *eval_embeds(const blip_model *m, tensor *images) {
    const nn_ctx eval = NN_EVAL;
    bool grad = grad_mode_set(false);
    tensor *embeds = blip_image_embeds(m, images, &eval);
    grad_mode_set(grad);
    return embeds;
}

// Rows of x repeated: row b appears counts[b] times, consecutively.
static tensor *repeat_rows(tensor *x, const int64_t *counts, int64_t n) {
    int64_t total = 0;
    for (int64_t b = 0; b < n; b++) total += counts[b];
    tensor *index = tensor_empty(PETAL_I64, SHAPE(total));
    for (int64_t b = 0, j = 0; b < n; b++)
        for (int64_t c = 0; c < counts[b]; c++) tensor_data_i64(index)[j++] = b;
    if (x->device.type != PETAL_CPU) index = nn_consume(index, tensor_to(index, x->device));
    return nn_consume(index, tensor_index_select(x, 0, index));
}

tensor *blip_vqa_loss(const blip_model *m, tensor *images, tensor *q_ids, tensor *q_mask,
                      tensor *a_ids, tensor *a_mask, const int64_t *n_per_question, tensor *weights,
                      const nn_ctx *ctx) {
    tensor *embeds = blip_image_embeds(m, images, ctx);
    return nn_consume(embeds, blip_vqa_loss_embeds(m, embeds, q_ids, q_mask, a_ids, a_mask,
                                                   n_per_question, weights, ctx));
}

tensor *blip_vqa_loss_embeds(const blip_model *m, tensor *image_embeds, tensor *q_ids,
                             tensor *q_mask, tensor *a_ids, tensor *a_mask,
                             const int64_t *n_per_question, tensor *weights, const nn_ctx *ctx) {
    int64_t b = q_ids->shape[0];
    tensor *states = encode_question(m, image_embeds, q_ids, q_mask, ctx);
    tensor *rep_states = repeat_rows(states, n_per_question, b);
    tensor *rep_mask = repeat_rows(q_mask, n_per_question, b);
    tensor_free(states);
    tensor *per_answer = decoder_loss(m, a_ids, a_mask, rep_states, rep_mask, 0, true, ctx);
    tensor_free(rep_states);
    tensor_free(rep_mask);
    tensor *weighted = nn_consume(per_answer, tensor_mul(weights, per_answer));
    tensor *sum = nn_consume(weighted, tensor_sum_all(weighted));
    return nn_consume(sum, tensor_div_scalar(sum, (double)b));
}

tensor *blip_vqa_rank(const blip_model *m, tensor *images, tensor *q_ids, tensor *q_mask,
                      tensor *a_ids, tensor *a_mask, int64_t k) {
    tensor *embeds = eval_embeds(m, images);
    return nn_consume(embeds, blip_vqa_rank_embeds(m, embeds, q_ids, q_mask, a_ids, a_mask, k));
}

tensor *blip_vqa_rank_embeds(const blip_model *m, tensor *image_embeds, tensor *q_ids,
                             tensor *q_mask, tensor *a_ids, tensor *a_mask, int64_t k) {
    bool grad = grad_mode_set(false);
    const nn_ctx eval = NN_EVAL;
    int64_t b = q_ids->shape[0], n_answers = a_ids->shape[0];
    PETAL_CHECK(k >= 1 && k <= n_answers, "blip_vqa_rank: k = %lld for %lld answers", (long long)k,
                (long long)n_answers);
    tensor *states = encode_question(m, image_embeds, q_ids, q_mask, &eval);
    // The first answer token's probability after [DEC], for every answer.
    tensor *start = tensor_full(PETAL_I64, 2, (int64_t[]){b, 1}, (double)m->cfg.tokens.dec);
    if (q_ids->device.type != PETAL_CPU) start = nn_consume(start, tensor_to(start, q_ids->device));
    bert_input in = {.ids = start,
                     .mode = BERT_MULTIMODAL,
                     .encoder_states = states,
                     .encoder_mask = q_mask,
                     .causal = true};
    tensor *h = bert_forward(&m->decoder, &in, &eval);
    tensor *logits = bert_lm_logits(&m->decoder, h);
    tensor *step0 = tensor_select(logits, 1, 0);
    tensor *probs = tensor_softmax(step0, 1); // (B, V)
    tensor *second = tensor_select(a_ids, 1, 1);
    tensor *first = tensor_contiguous(second);                  // (A) the first answer tokens
    tensor *first_probs = tensor_index_select(probs, 1, first); // (B, A)
    tensor *top;
    tensor *top_probs = tensor_topk(first_probs, k, true, &top); // (B, k)
    // Each question against its k candidates, scored by minus the summed smoothed loss.
    tensor *flat_top = tensor_reshape(top, SHAPE(b * k));
    tensor *cand_ids = tensor_index_select(a_ids, 0, flat_top);
    tensor *cand_mask = tensor_index_select(a_mask, 0, flat_top);
    int64_t *counts = malloc((size_t)b * sizeof *counts);
    for (int64_t i = 0; i < b; i++) counts[i] = k;
    tensor *rep_states = repeat_rows(states, counts, b), *rep_mask = repeat_rows(q_mask, counts, b);
    free(counts);
    tensor *loss = decoder_loss(m, cand_ids, cand_mask, rep_states, rep_mask, 0, true, &eval);
    tensor *per_question = tensor_reshape(loss, SHAPE(b, k));
    tensor *scores = tensor_neg(per_question);
    tensor *best = tensor_argmax(scores, 1, true); // (B, 1) position among the k
    tensor *chosen = tensor_gather(top, 1, best);  // (B, 1) answer index
    tensor *out = tensor_keep(tensor_reshape(chosen, SHAPE(b)));
    tensor *temps[] = {states,   start,     h,           logits,    step0, probs,
                       second,   first,     first_probs, top_probs, top,   flat_top,
                       cand_ids, cand_mask, rep_states,  rep_mask,  loss,  per_question,
                       scores,   best,      chosen};
    for (size_t i = 0; i < sizeof temps / sizeof temps[0]; i++) tensor_free(temps[i]);
    grad_mode_set(grad);
    return out;
}

generate_result blip_vqa_generate(const blip_model *m, tensor *images, tensor *q_ids,
                                  tensor *q_mask, const generate_options *opt) {
    tensor *embeds = eval_embeds(m, images);
    generate_result r = blip_vqa_generate_embeds(m, embeds, q_ids, q_mask, opt);
    tensor_free(embeds);
    return r;
}

generate_result blip_vqa_generate_embeds(const blip_model *m, tensor *image_embeds, tensor *q_ids,
                                         tensor *q_mask, const generate_options *opt) {
    bool grad = grad_mode_set(false);
    const nn_ctx eval = NN_EVAL;
    int64_t b = q_ids->shape[0];
    tensor *states = encode_question(m, image_embeds, q_ids, q_mask, &eval);
    tensor *bos = tensor_full(PETAL_I64, 2, (int64_t[]){b, 1}, (double)m->cfg.tokens.dec);
    if (q_ids->device.type != PETAL_CPU) bos = nn_consume(bos, tensor_to(bos, q_ids->device));
    // blip_vqa.py attends to every question position here (question_atts are ones).
    generate_result r = blip_generate(&m->decoder, bos, states, NULL, opt);
    tensor_free(bos);
    tensor_free(states);
    grad_mode_set(grad);
    return r;
}
