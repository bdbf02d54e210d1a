// BLEU (pycocoevalcap/bleu/bleu_scorer.py), ROUGE-L (rouge/rouge.py) and CIDEr-D
// (cider/cider_scorer.py) on tokenized captions. Words and n-grams are interned to integers and a
// caption becomes its n-gram counts sorted by n-gram id, so clipping, document frequencies and
// the cosine similarities are merges of sorted lists.
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "io/buffer.h"
#include "io/strmap.h"
#include "io/text.h"
#include "train/caption_metrics.h"

#define NGRAM_MAX   4     // BLEU-4, and CIDEr's n
#define CIDER_SIGMA 6.0   // CIDEr-D's length penalty
#define ROUGE_BETA  1.2   // ROUGE-L's recall weight
#define BLEU_TINY   1e-15 // bleu_scorer's guards: "so that if guess is 0 still return 0"
#define BLEU_SMALL  1e-9

typedef struct {
    int32_t id, count;
} ngram_count;

// A caption as the scorers see it.
typedef struct {
    int32_t *words; // str.split() (BLEU, CIDEr), as word ids
    int32_t n_words;
    int32_t *pieces; // str.split(" ") (ROUGE-L): empty pieces count as words
    int32_t n_pieces;
    ngram_count *ngrams; // every 1..4-gram of words with its count, by ascending id
    int32_t n_ngrams;
    double *tfidf;          // CIDEr's weight of each n-gram
    double norm[NGRAM_MAX]; // and their norm per n
} cooked;

typedef struct {
    strmap words;  // word -> id
    strmap ngrams; // the ids of its words (their int32 bytes) -> n-gram id
    int8_t *order; // n-gram id -> n
    size_t n_ngrams, cap_order;
} vocab;

// The captions of an evaluation: image i's candidate is test[i], its references are
// refs[ref_start[i], ref_start[i + 1]).
typedef struct {
    int64_t n;
    cooked *test, *refs;
    int64_t *ref_start;
    vocab v;
} corpus;

static int32_t word_id(vocab *v, const char *s, size_t len) {
    int64_t id = strmap_get(&v->words, s, len);
    if (id < 0) strmap_set(&v->words, s, len, id = (int64_t)v->words.n);
    return (int32_t)id;
}

static int32_t ngram_id(vocab *v, const int32_t *words, int n) {
    const char *key = (const char *)words;
    size_t len = (size_t)n * sizeof *words;
    int64_t id = strmap_get(&v->ngrams, key, len);
    if (id >= 0) return (int32_t)id;
    strmap_set(&v->ngrams, key, len, (int64_t)v->n_ngrams);
    v->order = buffer_grow(v->order, &v->cap_order, v->n_ngrams + 1, sizeof *v->order);
    v->order[v->n_ngrams] = (int8_t)n;
    return (int32_t)v->n_ngrams++;
}

// The word ids of s (valid UTF-8) split as Python splits it: on runs of white space
// (str.split()), or at each single space (str.split(" ")).
static int32_t split_words(vocab *v, const char *s, bool at_spaces, int32_t **out) {
    size_t len = strlen(s), cap = 0, start = 0, step;
    int32_t n = 0;
    *out = NULL;
    for (size_t i = 0; i <= len; i += step) {
        utf8proc_int32_t cp = 0;
        step = 1;
        if (i < len)
            step =
                (size_t)utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
        if (i < len && !(at_spaces ? cp == ' ' : text_is_space(cp))) continue;
        if (at_spaces || i > start) {
            *out = buffer_grow(*out, &cap, (size_t)n + 1, sizeof **out);
            (*out)[n++] = word_id(v, s + start, i - start);
        }
        start = i + step;
    }
    return n;
}

static int compare_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int compare_ngram_id(const void *a, const void *b) {
    return compare_i32(&((const ngram_count *)a)->id, &((const ngram_count *)b)->id);
}

// Sorts ids[0, n) and counts equal ones into out (room for n); returns how many distinct.
static int32_t count_sorted(int32_t *ids, int32_t n, ngram_count *out) {
    qsort(ids, (size_t)n, sizeof *ids, compare_i32);
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++) {
        if (m && out[m - 1].id == ids[i])
            out[m - 1].count++;
        else
            out[m++] = (ngram_count){ids[i], 1};
    }
    return m;
}

// precook(): the words and the n-gram counts of one tokenized caption.
static void cook(vocab *v, const char *s, cooked *c) {
    *c = (cooked){0};
    c->n_words = split_words(v, s, false, &c->words);
    c->n_pieces = split_words(v, s, true, &c->pieces);
    int32_t n = 0, total = 0;
    for (int k = 1; k <= NGRAM_MAX; k++) total += c->n_words >= k ? c->n_words - k + 1 : 0;
    int32_t *ids = buffer_alloc((size_t)(total ? total : 1) * sizeof *ids, "caption n-grams");
    for (int k = 1; k <= NGRAM_MAX; k++)
        for (int32_t i = 0; i + k <= c->n_words; i++) ids[n++] = ngram_id(v, c->words + i, k);
    c->ngrams = buffer_alloc((size_t)(n ? n : 1) * sizeof *c->ngrams, "caption n-grams");
    c->n_ngrams = count_sorted(ids, n, c->ngrams);
    free(ids);
}

static void cooked_free(cooked *c) {
    free(c->words);
    free(c->pieces);
    free(c->ngrams);
    free(c->tfidf);
}

// ---- BLEU ----

// cook_refs' maxcounts: each n-gram's largest count in one reference, by ascending id.
static int32_t ref_max_counts(const cooked *refs, int64_t n_refs, ngram_count **out) {
    int32_t total = 0, m = 0;
    for (int64_t r = 0; r < n_refs; r++) total += refs[r].n_ngrams;
    ngram_count *all = buffer_alloc((size_t)(total ? total : 1) * sizeof *all, "BLEU counts");
    for (int64_t r = 0; r < n_refs; r++)
        for (int32_t k = 0; k < refs[r].n_ngrams; k++) all[m++] = refs[r].ngrams[k];
    qsort(all, (size_t)m, sizeof *all, compare_ngram_id);
    int32_t n = 0;
    for (int32_t k = 0; k < m; k++) {
        if (n && all[n - 1].id == all[k].id) {
            if (all[k].count > all[n - 1].count) all[n - 1].count = all[k].count;
        } else {
            all[n++] = all[k];
        }
    }
    *out = all;
    return n;
}

// The reference length BLEU's "closest" option picks: min((abs(l - testlen), l)).
static int32_t closest_ref_len(const cooked *refs, int64_t n_refs, int32_t testlen) {
    int32_t best = refs[0].n_words;
    for (int64_t r = 1; r < n_refs; r++) {
        int32_t l = refs[r].n_words, d = abs(l - testlen), db = abs(best - testlen);
        if (d < db || (d == db && l < best)) best = l;
    }
    return best;
}

// compute_score(option="closest"): the corpus's clipped n-gram matches and lengths, then the
// geometric means with the brevity penalty.
static void bleu_score(const corpus *c, double bleu[NGRAM_MAX]) {
    double testlen = 0, reflen = 0, guess[NGRAM_MAX] = {0}, correct[NGRAM_MAX] = {0};
    for (int64_t i = 0; i < c->n; i++) {
        const cooked *t = &c->test[i], *refs = c->refs + c->ref_start[i];
        int64_t n_refs = c->ref_start[i + 1] - c->ref_start[i];
        testlen += t->n_words;
        reflen += closest_ref_len(refs, n_refs, t->n_words);
        for (int k = 0; k < NGRAM_MAX; k++) guess[k] += t->n_words > k ? t->n_words - k : 0;
        ngram_count *max;
        int32_t n_max = ref_max_counts(refs, n_refs, &max);
        for (int32_t a = 0, b = 0; a < t->n_ngrams; a++) {
            while (b < n_max && max[b].id < t->ngrams[a].id) b++;
            if (b < n_max && max[b].id == t->ngrams[a].id) {
                int32_t clip =
                    t->ngrams[a].count < max[b].count ? t->ngrams[a].count : max[b].count;
                correct[c->v.order[t->ngrams[a].id] - 1] += clip;
            }
        }
        free(max);
    }
    double running = 1, ratio = (testlen + BLEU_TINY) / (reflen + BLEU_SMALL);
    for (int k = 0; k < NGRAM_MAX; k++) {
        running *= (correct[k] + BLEU_TINY) / (guess[k] + BLEU_SMALL);
        bleu[k] = pow(running, 1.0 / (k + 1));
        if (ratio < 1) bleu[k] *= exp(1 - 1 / ratio);
    }
}

// ---- ROUGE-L ----

static int32_t lcs_length(const int32_t *a, int32_t na, const int32_t *b, int32_t nb) {
    int32_t *row = buffer_calloc((size_t)nb + 1, sizeof *row, "ROUGE-L table"); // row i of the DP
    for (int32_t i = 1; i <= na; i++) {
        int32_t diag = 0; // the previous row's entry j - 1
        for (int32_t j = 1; j <= nb; j++) {
            int32_t up = row[j];
            row[j] = a[i - 1] == b[j - 1] ? diag + 1 : (up > row[j - 1] ? up : row[j - 1]);
            diag = up;
        }
    }
    int32_t n = row[nb];
    free(row);
    return n;
}

// calc_score(): F-measure of the best precision and the best recall over the references.
static double rouge_image(const cooked *t, const cooked *refs, int64_t n_refs) {
    double prec_max = 0, rec_max = 0, b2 = ROUGE_BETA * ROUGE_BETA;
    for (int64_t r = 0; r < n_refs; r++) {
        double lcs = lcs_length(refs[r].pieces, refs[r].n_pieces, t->pieces, t->n_pieces);
        prec_max = fmax(prec_max, lcs / t->n_pieces);
        rec_max = fmax(rec_max, lcs / refs[r].n_pieces);
    }
    if (prec_max == 0 || rec_max == 0) return 0;
    return (1 + b2) * prec_max * rec_max / (rec_max + b2 * prec_max);
}

static double rouge_score(const corpus *c) {
    double sum = 0;
    for (int64_t i = 0; i < c->n; i++)
        sum += rouge_image(&c->test[i], c->refs + c->ref_start[i],
                           c->ref_start[i + 1] - c->ref_start[i]);
    return sum / (double)c->n;
}

// ---- CIDEr-D ----

// compute_doc_freq(): in how many images' references each n-gram occurs.
static double *document_frequency(const corpus *c) {
    double *df = buffer_calloc(c->v.n_ngrams ? c->v.n_ngrams : 1, sizeof *df, "CIDEr df");
    for (int64_t i = 0; i < c->n; i++) {
        ngram_count *seen;
        int32_t n =
            ref_max_counts(c->refs + c->ref_start[i], c->ref_start[i + 1] - c->ref_start[i], &seen);
        for (int32_t k = 0; k < n; k++) df[seen[k].id] += 1;
        free(seen);
    }
    return df;
}

// counts2vec(): tf-idf weights and their norm per n.
static void cider_vector(cooked *t, const vocab *v, const double *df, double ref_len) {
    t->tfidf = buffer_alloc((size_t)(t->n_ngrams ? t->n_ngrams : 1) * sizeof *t->tfidf, "CIDEr");
    double sq[NGRAM_MAX] = {0};
    for (int32_t k = 0; k < t->n_ngrams; k++) {
        const ngram_count *g = &t->ngrams[k];
        t->tfidf[k] = g->count * (ref_len - log(fmax(1.0, df[g->id])));
        sq[v->order[g->id] - 1] += t->tfidf[k] * t->tfidf[k];
    }
    for (int n = 0; n < NGRAM_MAX; n++) t->norm[n] = sqrt(sq[n]);
}

// sim(): per n, the clipped cosine similarity times the Gaussian length penalty, added to val.
static void cider_sim(const cooked *h, const cooked *r, const vocab *v, double val[NGRAM_MAX]) {
    // counts2vec's "length" counts bigrams (n_words - 1 for a non-empty caption): its difference
    // is the words' unless a caption is empty, and an empty one has no n-gram to match.
    double dot[NGRAM_MAX] = {0}, delta = h->n_words - r->n_words;
    for (int32_t a = 0, b = 0; a < h->n_ngrams; a++) {
        while (b < r->n_ngrams && r->ngrams[b].id < h->ngrams[a].id) b++;
        if (b < r->n_ngrams && r->ngrams[b].id == h->ngrams[a].id)
            dot[v->order[h->ngrams[a].id] - 1] += fmin(h->tfidf[a], r->tfidf[b]) * r->tfidf[b];
    }
    for (int n = 0; n < NGRAM_MAX; n++) {
        if (h->norm[n] != 0 && r->norm[n] != 0) dot[n] /= h->norm[n] * r->norm[n];
        val[n] += dot[n] * exp(-(delta * delta) / (2 * CIDER_SIGMA * CIDER_SIGMA));
    }
}

static double cider_score(corpus *c) {
    double *df = document_frequency(c), ref_len = log((double)c->n), sum = 0;
    for (int64_t i = 0; i < c->n; i++) cider_vector(&c->test[i], &c->v, df, ref_len);
    for (int64_t r = 0; r < c->ref_start[c->n]; r++) cider_vector(&c->refs[r], &c->v, df, ref_len);
    for (int64_t i = 0; i < c->n; i++) {
        double val[NGRAM_MAX] = {0}, mean = 0;
        for (int64_t r = c->ref_start[i]; r < c->ref_start[i + 1]; r++)
            cider_sim(&c->test[i], &c->refs[r], &c->v, val);
        for (int n = 0; n < NGRAM_MAX; n++) mean += val[n];
        sum += mean / NGRAM_MAX / (double)(c->ref_start[i + 1] - c->ref_start[i]) * 10.0;
    }
    free(df);
    return sum / (double)c->n;
}

// ---- entry points ----

// PETAL_ERR_ARG naming the caption (reference ref of image, or its candidate when ref < 0)
// unless s is valid UTF-8.
static petal_status check_utf8(const char *s, int64_t image, int ref) {
    size_t len = strlen(s), bad = text_utf8_prefix(s, len);
    if (bad == len) return PETAL_OK;
    if (ref < 0)
        return petal_error(PETAL_ERR_ARG,
                           "caption metrics: the candidate of image %lld is not valid UTF-8 "
                           "(byte %zu)",
                           (long long)image, bad);
    return petal_error(PETAL_ERR_ARG,
                       "caption metrics: reference %d of image %lld is not valid UTF-8 (byte %zu)",
                       ref, (long long)image, bad);
}

// The checks both entry points make: images, references, UTF-8.
static petal_status check_captions(const char *const *pred, const char *const *const *refs,
                                   const int *n_refs, int64_t n) {
    if (n < 1) return petal_error(PETAL_ERR_ARG, "caption metrics: no images to score");
    for (int64_t i = 0; i < n; i++) {
        if (n_refs[i] < 1)
            return petal_error(PETAL_ERR_ARG, "caption metrics: image %lld has %d references",
                               (long long)i, n_refs[i]);
        petal_status st = check_utf8(pred[i], i, -1);
        for (int r = 0; r < n_refs[i] && st == PETAL_OK; r++) st = check_utf8(refs[i][r], i, r);
        if (st != PETAL_OK) return st;
    }
    return PETAL_OK;
}

static void corpus_cook(corpus *c, const char *const *pred, const char *const *const *refs,
                        const int *n_refs, int64_t n) {
    *c = (corpus){.n = n};
    c->ref_start = buffer_alloc((size_t)(n + 1) * sizeof *c->ref_start, "caption references");
    c->ref_start[0] = 0;
    for (int64_t i = 0; i < n; i++) c->ref_start[i + 1] = c->ref_start[i] + n_refs[i];
    c->test = buffer_alloc((size_t)n * sizeof *c->test, "captions");
    c->refs = buffer_alloc((size_t)c->ref_start[n] * sizeof *c->refs, "captions");
    for (int64_t i = 0; i < n; i++) {
        cook(&c->v, pred[i], &c->test[i]);
        for (int r = 0; r < n_refs[i]; r++) cook(&c->v, refs[i][r], &c->refs[c->ref_start[i] + r]);
    }
}

static void corpus_free(corpus *c) {
    for (int64_t i = 0; i < c->n; i++) cooked_free(&c->test[i]);
    for (int64_t r = 0; r < c->ref_start[c->n]; r++) cooked_free(&c->refs[r]);
    free(c->test);
    free(c->refs);
    free(c->ref_start);
    strmap_free(&c->v.words);
    strmap_free(&c->v.ngrams);
    free(c->v.order);
}

petal_status caption_metrics_score_tokenized(const char *const *pred,
                                             const char *const *const *refs, const int *n_refs,
                                             int64_t n, caption_scores *out) {
    petal_status st = check_captions(pred, refs, n_refs, n);
    if (st != PETAL_OK) return st;
    corpus c;
    corpus_cook(&c, pred, refs, n_refs, n);
    bleu_score(&c, out->bleu);
    out->rouge_l = rouge_score(&c);
    out->cider = cider_score(&c);
    corpus_free(&c);
    return PETAL_OK;
}

petal_status caption_metrics_score(const char *const *pred, const char *const *const *refs,
                                   const int *n_refs, int64_t n, caption_scores *out) {
    petal_status st = check_captions(pred, refs, n_refs, n);
    if (st != PETAL_OK) return st;
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) total += n_refs[i];
    // Every reference in one text, every candidate in another, as pycocoevalcap tokenizes them.
    const char **flat = buffer_alloc((size_t)total * sizeof *flat, "captions");
    char **ref_tok = buffer_alloc((size_t)total * sizeof *ref_tok, "captions");
    char **pred_tok = buffer_alloc((size_t)n * sizeof *pred_tok, "captions");
    for (int64_t i = 0, k = 0; i < n; i++)
        for (int r = 0; r < n_refs[i]; r++) flat[k++] = refs[i][r];
    st = caption_tokenize(flat, total, ref_tok);
    if (st == PETAL_OK) st = caption_tokenize(pred, n, pred_tok);
    PETAL_CHECK(st == PETAL_OK, "caption metrics: checked captions failed to tokenize: %s",
                petal_error_message());
    const char *const **ref_lists = buffer_alloc((size_t)n * sizeof *ref_lists, "captions");
    for (int64_t i = 0, k = 0; i < n; k += n_refs[i++])
        ref_lists[i] = (const char *const *)ref_tok + k;
    st = caption_metrics_score_tokenized((const char *const *)pred_tok, ref_lists, n_refs, n, out);
    caption_tokens_free(ref_tok, total);
    caption_tokens_free(pred_tok, n);
    free(flat);
    free(ref_tok);
    free(pred_tok);
    free(ref_lists);
    return st;
}

int caption_scores_format(const caption_scores *s, char *buf, size_t size) {
    return snprintf(buf, size,
                    "{\"Bleu_1\": %.9g, \"Bleu_2\": %.9g, \"Bleu_3\": %.9g, \"Bleu_4\": %.9g, "
                    "\"ROUGE_L\": %.9g, \"CIDEr\": %.9g}",
                    s->bleu[0], s->bleu[1], s->bleu[2], s->bleu[3], s->rouge_l, s->cider);
}
