#include "models/blip/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "tensor/error.h"
#include "tensor/scope.h"

// ---- the decoder, one step at a time ----

// Set around the decoder's forward pass of a cached step (blip_generate_cached_step), per thread
// like grad mode, since each thread decodes its own batch.
static _Thread_local bool cached_step;

bool blip_generate_cached_step(void) {
    return cached_step;
}

typedef struct {
    const bert_model *decoder;
    nn_kv_cache *cache;           // one per layer
    tensor *states, *states_mask; // (R, N, W) replicated per row, and its mask (or NULL)
} decoder_state;

// The next-token logits (R, V), or their log-softmax, as f32 on the host, after feeding `tokens`
// (R, T) (the whole prompt on the first step, then the last token).
static float *next_scores(decoder_state *s, tensor *tokens, bool log_probs) {
    int mark = scope_begin();
    const nn_ctx eval = NN_EVAL;
    bert_input in = {.ids = tokens,
                     .mode = BERT_MULTIMODAL,
                     .encoder_states = s->states,
                     .encoder_mask = s->states_mask,
                     .causal = true,
                     .cache = s->cache};
    cached_step = nn_kv_cache_length(&s->cache[0]) > 0;
    tensor *h = bert_forward(s->decoder, &in, &eval);
    cached_step = false;
    tensor *last = tensor_select(h, 1, h->shape[1] - 1); // (R, H)
    tensor *logits = bert_lm_logits(s->decoder, last);
    tensor *scores = log_probs ? tensor_log_softmax(logits, 1) : logits;
    tensor *lp = tensor_cast(scores, PETAL_F32);
    tensor *host = tensor_to(lp, DEVICE_CPU);
    int64_t n = tensor_numel(host);
    float *out = malloc((size_t)n * sizeof *out);
    PETAL_CHECK(out != NULL, "generate: out of host memory");
    memcpy(out, tensor_data_f32(host), (size_t)n * sizeof *out);
    scope_end(mark);
    return out;
}

// HF's RepetitionPenaltyLogitsProcessor and MinLengthLogitsProcessor, on one row of scores.
static void process_row(float *row, const int64_t *seq, int64_t len, const generate_options *o) {
    if (o->repetition_penalty != 1.0)
        for (int64_t i = 0; i < len; i++) {
            float *v = &row[seq[i]];
            *v = *v < 0 ? *v * (float)o->repetition_penalty : *v / (float)o->repetition_penalty;
        }
    if (len < o->min_length) row[o->eos] = -INFINITY;
}

// ---- beam hypotheses (BeamHypotheses of transformers 4.15) ----

typedef struct {
    double score;
    int64_t len;
    int64_t *tokens;
} hypothesis;

typedef struct {
    hypothesis *beams;
    int count, capacity;
    double worst;
    bool done;
} hypotheses;

static void hyp_add(hypotheses *h, const int64_t *tokens, int64_t len, double sum_logprobs,
                    double length_penalty) {
    double score = sum_logprobs / pow((double)len, length_penalty);
    if (h->count == h->capacity && !(score > h->worst)) return;
    int64_t *copy = malloc((size_t)len * sizeof *copy);
    PETAL_CHECK(copy != NULL, "generate: out of host memory");
    memcpy(copy, tokens, (size_t)len * sizeof *copy);
    if (h->count < h->capacity) {
        h->beams[h->count++] = (hypothesis){score, len, copy};
        h->worst = fmin(score, h->worst); // worst starts at 1e9, as in 4.15
        return;
    }
    // Full: replace the worst, and the worst becomes the next lowest (as 4.15 computes it).
    int lo = 0;
    for (int i = 1; i < h->count; i++)
        if (h->beams[i].score < h->beams[lo].score) lo = i;
    free(h->beams[lo].tokens);
    h->beams[lo] = (hypothesis){score, len, copy};
    h->worst = INFINITY;
    for (int i = 0; i < h->count; i++)
        if (h->beams[i].score < h->worst) h->worst = h->beams[i].score;
}

static bool hyp_is_done(const hypotheses *h, double best_sum_logprobs, int64_t cur_len,
                        double length_penalty) {
    if (h->count < h->capacity) return false;
    return h->worst >= best_sum_logprobs / pow((double)cur_len, length_penalty);
}

// ---- search state ----

typedef struct {
    int64_t rows, v, len, cap; // rows sequences of len tokens (room for cap)
    int64_t *seq;              // (rows, cap)
} sequences;

static sequences sequences_new(tensor *prompt, int k, int64_t cap) {
    tensor *host = tensor_to(prompt, DEVICE_CPU);
    int64_t b = prompt->shape[0], p = prompt->shape[1];
    sequences s = {b * k, 0, p, cap, malloc((size_t)(b * k * cap) * sizeof(int64_t))};
    PETAL_CHECK(s.seq != NULL, "generate: out of host memory");
    for (int64_t r = 0; r < b * k; r++) // each prompt once per beam, beams of a prompt adjacent
        for (int64_t t = 0; t < p; t++)
            s.seq[r * cap + t] = (int64_t)tensor_get_flat(host, (r / k) * p + t);
    tensor_free(host);
    return s;
}

// Row r of the next sequences is row from[r] of the current ones plus token[r].
static void sequences_extend(sequences *s, const int64_t *from, const int64_t *token) {
    int64_t *next = malloc((size_t)(s->rows * s->cap) * sizeof *next);
    PETAL_CHECK(next != NULL, "generate: out of host memory");
    for (int64_t r = 0; r < s->rows; r++) {
        memcpy(next + r * s->cap, s->seq + from[r] * s->cap, (size_t)s->len * sizeof *next);
        next[r * s->cap + s->len] = token[r];
    }
    free(s->seq);
    s->seq = next;
    s->len++;
}

static decoder_state decoder_state_new(const bert_model *decoder, tensor *states, tensor *mask,
                                       int k) {
    int64_t b = states->shape[0];
    int64_t *rows = malloc((size_t)(b * k) * sizeof *rows);
    for (int64_t r = 0; r < b * k; r++) rows[r] = r / k; // repeat_interleave(k)
    tensor *index = tensor_from_data(PETAL_I64, SHAPE(b * k), rows);
    if (states->device.type != PETAL_CPU) index = tensor_keep(tensor_to(index, states->device));
    decoder_state s = {decoder, calloc((size_t)decoder->cfg.layers, sizeof(nn_kv_cache)),
                       tensor_keep(tensor_index_select(states, 0, index)),
                       mask ? tensor_keep(tensor_index_select(mask, 0, index)) : NULL};
    PETAL_CHECK(s.cache != NULL, "generate: out of host memory");
    tensor_free(index);
    free(rows);
    return s;
}

static void decoder_state_free(decoder_state *s) {
    for (int64_t i = 0; i < s->decoder->cfg.layers; i++) nn_kv_cache_free(&s->cache[i]);
    free(s->cache);
    tensor_free(s->states);
    tensor_free(s->states_mask);
}

static void decoder_state_select(decoder_state *s, const int64_t *rows, int64_t n) {
    tensor *index = tensor_from_data(PETAL_I64, SHAPE(n), rows);
    if (s->states->device.type != PETAL_CPU)
        index = tensor_keep(tensor_to(index, s->states->device));
    for (int64_t i = 0; i < s->decoder->cfg.layers; i++) nn_kv_cache_select(&s->cache[i], index);
    tensor_free(index);
}

// The tokens to feed: the whole prompt first, then each row's last token.
static tensor *feed(const sequences *s, bool first, petal_device device) {
    int64_t t = first ? s->len : 1, start = first ? 0 : s->len - 1;
    tensor *x = tensor_empty(PETAL_I64, SHAPE(s->rows, t));
    for (int64_t r = 0; r < s->rows; r++)
        for (int64_t j = 0; j < t; j++)
            tensor_data_i64(x)[r * t + j] = s->seq[r * s->cap + start + j];
    return device.type == PETAL_CPU ? x : tensor_keep(tensor_to(x, device));
}

// ---- beam search ----

typedef struct {
    float score;
    int64_t index; // beam * V + token
} candidate;

// The 2K best (beam, token) pairs among one prompt's K * V scores, best first (torch.topk),
// ties to the lower index.
static void top_candidates(const float *scores, int64_t n, int want, candidate *out) {
    int have = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = scores[i];
        if (have == want && !(v > out[have - 1].score)) continue;
        int j = have < want ? have++ : want - 1;
        while (j > 0 && v > out[j - 1].score) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = (candidate){v, i};
    }
}

static void beam_step(const float *scores, const sequences *s, int k, const generate_options *o,
                      hypotheses *hyps, float *beam_scores, int64_t *from, int64_t *token) {
    int64_t prompts = s->rows / k, v = s->v;
    candidate *cand = malloc((size_t)(2 * k) * sizeof *cand);
    PETAL_CHECK(cand != NULL, "generate: out of host memory");
    for (int64_t b = 0; b < prompts; b++) {
        if (hyps[b].done) { // finished prompts only pad (4.15 points them at row 0)
            for (int j = 0; j < k; j++) {
                beam_scores[b * k + j] = 0;
                token[b * k + j] = o->pad;
                from[b * k + j] = 0;
            }
            continue;
        }
        top_candidates(scores + b * k * v, (int64_t)k * v, 2 * k, cand);
        int filled = 0;
        for (int rank = 0; rank < 2 * k && filled < k; rank++) {
            int64_t beam = cand[rank].index / v, tok = cand[rank].index % v, row = b * k + beam;
            if (tok == o->eos) {
                if (rank >= k) continue; // an EOS outside the top K does not finish a beam
                hyp_add(&hyps[b], s->seq + row * s->cap, s->len, cand[rank].score,
                        o->length_penalty);
                continue;
            }
            beam_scores[b * k + filled] = cand[rank].score;
            token[b * k + filled] = tok;
            from[b * k + filled] = row;
            filled++;
        }
        PETAL_CHECK(filled == k, "generate: fewer than %d candidates that are not EOS", k);
        hyps[b].done =
            hyps[b].done || hyp_is_done(&hyps[b], cand[0].score, s->len, o->length_penalty);
    }
    free(cand);
}

static generate_result beam_finalize(const sequences *s, int k, hypotheses *hyps,
                                     const float *beam_scores, const generate_options *o) {
    int64_t prompts = s->rows / k, longest = 0;
    hypothesis *best = malloc((size_t)prompts * sizeof *best);
    for (int64_t b = 0; b < prompts; b++) {
        if (!hyps[b].done)
            for (int j = 0; j < k; j++)
                hyp_add(&hyps[b], s->seq + (b * k + j) * s->cap, s->len, beam_scores[b * k + j],
                        o->length_penalty);
        // sorted(...)[-1] in 4.15: the highest score, the latest added among equals
        int pick = 0;
        for (int i = 1; i < hyps[b].count; i++)
            if (hyps[b].beams[i].score >= hyps[b].beams[pick].score) pick = i;
        best[b] = hyps[b].beams[pick];
        if (best[b].len > longest) longest = best[b].len;
    }
    int64_t len = longest + 1 < o->max_length ? longest + 1 : o->max_length;
    generate_result r = {prompts, len, malloc((size_t)(prompts * len) * sizeof(int64_t)),
                         malloc((size_t)prompts * sizeof(double))};
    for (int64_t b = 0; b < prompts; b++) {
        for (int64_t t = 0; t < len; t++)
            r.tokens[b * len + t] = t < best[b].len ? best[b].tokens[t]
                                    : (t == best[b].len && best[b].len < o->max_length) ? o->eos
                                                                                        : o->pad;
        r.scores[b] = best[b].score;
    }
    free(best);
    return r;
}

static generate_result beam_search(decoder_state *st, sequences *s, int k,
                                   const generate_options *o, petal_device device) {
    int64_t prompts = s->rows / k;
    hypotheses *hyps = calloc((size_t)prompts, sizeof *hyps);
    float *beam_scores = malloc((size_t)s->rows * sizeof *beam_scores);
    int64_t *from = malloc((size_t)s->rows * sizeof *from),
            *token = malloc((size_t)s->rows * sizeof *token);
    PETAL_CHECK(hyps && beam_scores && from && token, "generate: out of host memory");
    for (int64_t b = 0; b < prompts; b++) {
        hyps[b].capacity = k;
        hyps[b].beams = calloc((size_t)k, sizeof(hypothesis));
        hyps[b].worst = 1e9;
        for (int j = 0; j < k; j++) beam_scores[b * k + j] = j == 0 ? 0.0f : -1e9f;
    }
    for (bool first = true;; first = false) {
        tensor *x = feed(s, first, device);
        float *scores = next_scores(st, x, true);
        tensor_free(x);
        for (int64_t r = 0; r < s->rows; r++) {
            float *row = scores + r * s->v;
            process_row(row, s->seq + r * s->cap, s->len, o);
            for (int64_t t = 0; t < s->v; t++) row[t] += beam_scores[r]; // f32, as torch adds
        }
        beam_step(scores, s, k, o, hyps, beam_scores, from, token);
        free(scores);
        sequences_extend(s, from, token);
        decoder_state_select(st, from, s->rows);
        bool all_done = true;
        for (int64_t b = 0; b < prompts; b++) all_done = all_done && hyps[b].done;
        if (all_done || s->len >= o->max_length) break;
    }
    generate_result r = beam_finalize(s, k, hyps, beam_scores, o);
    for (int64_t b = 0; b < prompts; b++) {
        for (int i = 0; i < hyps[b].count; i++) free(hyps[b].beams[i].tokens);
        free(hyps[b].beams);
    }
    free(hyps);
    free(beam_scores);
    free(from);
    free(token);
    return r;
}

// ---- greedy search ----

static generate_result greedy_search(decoder_state *st, sequences *s, const generate_options *o,
                                     petal_device device) {
    bool *unfinished = malloc((size_t)s->rows * sizeof *unfinished);
    int64_t *from = malloc((size_t)s->rows * sizeof *from),
            *token = malloc((size_t)s->rows * sizeof *token);
    PETAL_CHECK(unfinished && from && token, "generate: out of host memory");
    for (int64_t r = 0; r < s->rows; r++) unfinished[r] = true;
    for (bool first = true;; first = false) {
        tensor *x = feed(s, first, device);
        float *scores = next_scores(st, x, false); // 4.15's greedy search processes raw logits
        tensor_free(x);
        bool any = false;
        for (int64_t r = 0; r < s->rows; r++) {
            float *row = scores + r * s->v;
            process_row(row, s->seq + r * s->cap, s->len, o);
            int64_t arg = 0;
            for (int64_t t = 1; t < s->v; t++)
                if (row[t] > row[arg]) arg = t;
            token[r] = unfinished[r] ? arg : o->pad;
            from[r] = r;
            unfinished[r] = unfinished[r] && token[r] != o->eos;
            any = any || unfinished[r];
        }
        free(scores);
        sequences_extend(s, from, token);
        if (!any || s->len >= o->max_length) break;
    }
    generate_result r = {s->rows, s->len, malloc((size_t)(s->rows * s->len) * sizeof(int64_t)),
                         calloc((size_t)s->rows, sizeof(double))};
    for (int64_t i = 0; i < s->rows; i++)
        memcpy(r.tokens + i * s->len, s->seq + i * s->cap, (size_t)s->len * sizeof(int64_t));
    free(unfinished);
    free(from);
    free(token);
    return r;
}

generate_result blip_generate(const bert_model *decoder, tensor *prompt, tensor *encoder_states,
                              tensor *encoder_mask, const generate_options *opt) {
    PETAL_CHECK(decoder->cfg.lm_head, "blip_generate: the model has no prediction head");
    PETAL_CHECK(opt->num_beams >= 1 && opt->max_length > prompt->shape[1],
                "blip_generate: num_beams %d, max_length %lld for a prompt of %lld tokens",
                opt->num_beams, (long long)opt->max_length, (long long)prompt->shape[1]);
    PETAL_CHECK(encoder_states->shape[0] == prompt->shape[0],
                "blip_generate: %lld prompts but %lld encoder rows", (long long)prompt->shape[0],
                (long long)encoder_states->shape[0]);
    bool grad = grad_mode_set(false);
    int k = opt->num_beams;
    decoder_state st = decoder_state_new(decoder, encoder_states, encoder_mask, k);
    sequences s = sequences_new(prompt, k, opt->max_length);
    s.v = decoder->cfg.vocab;
    // The tokens go where the decoder computes: the encoder states' device (the prompt, read on
    // the host, may be anywhere).
    petal_device device = encoder_states->device;
    generate_result r =
        k > 1 ? beam_search(&st, &s, k, opt, device) : greedy_search(&st, &s, opt, device);
    free(s.seq);
    decoder_state_free(&st);
    grad_mode_set(grad);
    return r;
}

void generate_result_free(generate_result *r) {
    free(r->tokens);
    free(r->scores);
    r->tokens = NULL;
    r->scores = NULL;
}
