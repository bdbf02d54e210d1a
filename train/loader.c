#include "train/loader.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/augment.h"
#include "io/video.h"
#include "io/buffer.h"
#include "io/image.h"
#include "tensor/philox.h"

// Token ids in rows of one length, as tokenizer_encode_batch lays them out, and their mask in
// f32, the dtype the (f32) models take 0/1 masks in (bert_input).
typedef struct {
    int64_t *ids; // (rows, len), reused from batch to batch
    float *mask;  // (rows, len)
    size_t ids_cap, mask_cap;
    int64_t rows, len;
} token_rows;

// A batch being decoded or waiting for loader_next, in plain buffers (see loader.h).
typedef struct {
    int64_t batch;      // the batch it holds once decoded; -1 while free or being filled
    int64_t n;          // samples kept
    int64_t *indices;   // (batch_size)
    float *images;      // (batch_size, 3, S, S), allocated once
    token_rows text;    // (n, L) captions or questions
    token_rows answers; // (A, La) VQA training
    int64_t *n_answers; // (batch_size) answers per question
    float *weights;     // (A) answer weights
    size_t weights_cap;
    int64_t skipped, truncated, repeated;
    strbuf warnings;     // a line per skipped image, printed when the batch is returned
    petal_status status; // the batch's error, and its message (malloc'd)
    char *message;
} slot;

struct loader {
    const train_data *d;
    const tokenizer *tok;
    loader_options o;
    augment_config aug;
    float norm[3][256];  // Normalize(mean, std) of each byte value, per channel
    bool texts, answers; // what the batches carry besides images
    tokenizer_options text_opt, answer_opt;
    int64_t epoch, n_batches;
    int64_t *order; // (n_samples) the epoch's sample order in this shard
    int64_t n_samples;
    slot *slots; // batch b waits in slot b % n_slots
    int n_slots;
    pthread_t *threads;
    int n_threads;
    pthread_mutex_t lock;
    pthread_cond_t slot_ready; // a worker filled a slot (loader_next waits on it)
    pthread_cond_t slot_free;  // loader_next emptied a slot, or stop was set (workers wait)
    int64_t next_claim;        // the next batch a worker takes (under lock)
    int64_t next_take;         // the next batch loader_next returns (written under lock)
    atomic_bool stop;
    loader_stats stats;
    petal_status failed; // once a batch failed, every later call returns its error
    char *failed_message;
};

// ---- seeds and order ----

enum { STREAM_ORDER = 1, STREAM_AUGMENT = 2 }; // keeps the two hash chains apart

static uint64_t splitmix64(uint64_t x) {
    uint64_t z = x + 0x9E3779B97F4A7C15u;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static uint64_t hash_chain(uint64_t seed, const uint64_t *values, int n) {
    uint64_t h = splitmix64(seed);
    for (int k = 0; k < n; k++) h = splitmix64(h ^ values[k]);
    return h;
}

uint64_t loader_sample_seed(uint64_t seed, int64_t epoch, int64_t index) {
    return hash_chain(seed, (const uint64_t[]){STREAM_AUGMENT, (uint64_t)epoch, (uint64_t)index},
                      3);
}

void loader_epoch_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch, int64_t *order) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    if (!shuffle) return;
    uint64_t key = hash_chain(seed, (const uint64_t[]){STREAM_ORDER, (uint64_t)epoch}, 2);
    for (int64_t i = n - 1; i > 0; i--) {
        // Philox block k feeds swap k; 64 bits modulo i + 1 are biased by at most n / 2^64.
        philox_block r = philox4x32_10(key, (uint64_t)(n - 1 - i));
        int64_t j = (int64_t)((((uint64_t)r.v[0] << 32) | r.v[1]) % (uint64_t)(i + 1));
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

int64_t loader_shard_samples(int64_t n, int world_size) {
    return world_size > 1 ? (n + world_size - 1) / world_size : n;
}

void loader_shard_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch, int rank,
                        int world_size, int64_t *order) {
    if (world_size <= 1) {
        loader_epoch_order(n, shuffle, seed, epoch, order);
        return;
    }
    int64_t *all = buffer_alloc((size_t)(n > 0 ? n : 1) * sizeof *all, "loader");
    loader_epoch_order(n, shuffle, seed, epoch, all);
    int64_t m = loader_shard_samples(n, world_size);
    for (int64_t k = 0; k < m; k++) order[k] = all[(rank + k * world_size) % n];
    free(all);
}

int64_t loader_batches_per_epoch(const train_data *d, const loader_options *o) {
    int64_t b = o->batch_size, n = loader_shard_samples(d->n, o->world_size);
    return o->drop_last ? n / b : (n + b - 1) / b;
}

// ---- decoding a batch (worker threads, or loader_next without workers) ----

// The message of the last error with the sample in front:
// "vqa_train.json entry 3 (image 'val2014/x.jpg'): <message>".
static petal_status sample_error(const train_sample *s, petal_status st) {
    char why[1536];
    snprintf(why, sizeof why, "%s", petal_error_message());
    return petal_error(st, "%s entry %lld (image '%s'): %s", s->source, (long long)s->entry,
                       s->ann_image, why);
}

static void normalize_into(const loader *l, const image *im, float *dst) {
    size_t plane = (size_t)im->width * (size_t)im->height;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < plane; i++) dst[c * plane + i] = l->norm[c][im->data[i * 3 + c]];
}

// Decodes sample i and writes its (3, S, S) normalised planes into dst.
// Floats of one sample: (3, S, S), or (T, 3, S, S) for a video.
static size_t sample_floats(const loader_options *o) {
    size_t frames = o->frames > 0 ? (size_t)o->frames : 1;
    return frames * 3 * (size_t)o->image_size * (size_t)o->image_size;
}

static petal_status decode_video(const loader *l, int64_t i, float *dst, int64_t *repeated) {
    const train_sample *s = &l->d->samples[i];
    video_sampling vs = {l->o.frames, l->o.image_size, l->o.train_transform,
                         loader_sample_seed(l->o.seed, l->epoch, i)};
    int rep = 0;
    petal_status st = video_load_frames(s->image, &vs, dst, &rep);
    *repeated += rep;
    return st ? sample_error(s, st) : PETAL_OK;
}

static petal_status decode_image(const loader *l, int64_t i, float *dst) {
    const train_sample *s = &l->d->samples[i];
    image src, out;
    petal_status st = image_load(s->image, &src);
    if (st) return sample_error(s, st);
    if (l->o.train_transform) {
        rng_generator g = {loader_sample_seed(l->o.seed, l->epoch, i), 0};
        augment_image(&l->aug, &src, &g, &out);
    } else {
        image_resize(&src, l->o.image_size, l->o.image_size, &out);
    }
    normalize_into(l, &out, dst);
    image_free(&src);
    image_free(&out);
    return PETAL_OK;
}

// [CLS], the ids, [SEP], then [PAD] with mask 0, each row `len` long.
static void rows_fill(const tokenizer *tok, const token_ids *seqs, int64_t n, int64_t len,
                      token_rows *r) {
    const tokenizer_special_ids *sp = tokenizer_specials(tok);
    size_t need = (size_t)(n * len);
    r->ids = buffer_grow(r->ids, &r->ids_cap, need, sizeof *r->ids);
    r->mask = buffer_grow(r->mask, &r->mask_cap, need, sizeof *r->mask);
    r->rows = n;
    r->len = len;
    for (int64_t k = 0; k < n; k++) {
        int64_t *row = r->ids + k * len, used = (int64_t)seqs[k].len + 2;
        float *mrow = r->mask + k * len;
        row[0] = sp->cls;
        for (size_t t = 0; t < seqs[k].len; t++) row[t + 1] = seqs[k].ids[t];
        row[used - 1] = sp->sep;
        for (int64_t t = used; t < len; t++) row[t] = sp->pad;
        for (int64_t t = 0; t < len; t++) mrow[t] = t < used ? 1.0f : 0.0f;
    }
}

// BLIP's tokenizer call on n texts (train_data's options, [CLS] first), into rows; counts the
// texts cut to max_length. owner[k] is the sample of text k, named if it fails.
static petal_status encode_rows(const loader *l, const char *const *texts, const int64_t *owner,
                                int64_t n, const tokenizer_options *opt, token_rows *rows,
                                int64_t *truncated) {
    token_ids *seqs = buffer_calloc((size_t)n, sizeof *seqs, "loader");
    size_t keep = opt->max_length ? (size_t)opt->max_length - 2 : SIZE_MAX;
    int64_t len = opt->padding == TOKENIZER_PAD_MAX_LENGTH ? opt->max_length : 0;
    petal_status st = PETAL_OK;
    for (int64_t k = 0; k < n; k++) {
        if ((st = tokenizer_tokenize(l->tok, texts[k], strlen(texts[k]), &seqs[k]))) {
            st = sample_error(&l->d->samples[owner[k]], st);
            break;
        }
        if (seqs[k].len > keep) {
            seqs[k].len = keep;
            (*truncated)++;
        }
        if ((int64_t)seqs[k].len + 2 > len) len = (int64_t)seqs[k].len + 2;
    }
    if (!st) rows_fill(l->tok, seqs, n, len, rows);
    for (int64_t k = 0; k < n; k++) token_ids_free(&seqs[k]);
    free(seqs);
    return st;
}

// The answers of the batch's questions, question after question, with their weights.
static petal_status encode_answers(const loader *l, slot *s) {
    int64_t total = 0;
    for (int64_t k = 0; k < s->n; k++) total += l->d->samples[s->indices[k]].vqa->n_answers;
    const char **texts = buffer_alloc((size_t)total * sizeof *texts, "loader");
    int64_t *owner = buffer_alloc((size_t)total * sizeof *owner, "loader");
    s->weights = buffer_grow(s->weights, &s->weights_cap, (size_t)total, sizeof *s->weights);
    int64_t a = 0;
    for (int64_t k = 0; k < s->n; k++) {
        const ann_vqa *q = l->d->samples[s->indices[k]].vqa;
        s->n_answers[k] = q->n_answers;
        for (int j = 0; j < q->n_answers; j++, a++) {
            texts[a] = q->answers[j];
            owner[a] = s->indices[k];
            s->weights[a] = (float)q->weights[j];
        }
    }
    petal_status st =
        encode_rows(l, texts, owner, total, &l->answer_opt, &s->answers, &s->truncated);
    free(texts);
    free(owner);
    return st;
}

static petal_status encode_texts(const loader *l, slot *s) {
    if (!l->texts || s->n == 0) return PETAL_OK;
    const char **texts = buffer_alloc((size_t)s->n * sizeof *texts, "loader");
    for (int64_t k = 0; k < s->n; k++) texts[k] = l->d->samples[s->indices[k]].text;
    petal_status st =
        encode_rows(l, texts, s->indices, s->n, &l->text_opt, &s->text, &s->truncated);
    free(texts);
    return st || !l->answers ? st : encode_answers(l, s);
}

static void slot_reset(slot *s) {
    s->n = s->skipped = s->truncated = s->repeated = 0;
    s->text.rows = s->answers.rows = 0;
    strbuf_clear(&s->warnings);
    s->status = PETAL_OK;
    free(s->message);
    s->message = NULL;
}

// Decodes batch b into s. Stops early (leaving a batch nobody reads) when the loader is freed.
static petal_status slot_decode(loader *l, slot *s, int64_t b) {
    int64_t first = b * l->o.batch_size, end = first + l->o.batch_size;
    if (end > l->n_samples) end = l->n_samples;
    size_t floats = sample_floats(&l->o);
    for (int64_t pos = first; pos < end && !atomic_load(&l->stop); pos++) {
        int64_t i = l->order[pos];
        float *dst = s->images + (size_t)s->n * floats;
        petal_status st =
            l->o.frames > 0 ? decode_video(l, i, dst, &s->repeated) : decode_image(l, i, dst);
        if (st == PETAL_OK) {
            s->indices[s->n++] = i;
            continue;
        }
        if (!l->o.skip_bad_images) return st;
        strbuf_printf(&s->warnings, "loader: skipping a bad image: %s\n", petal_error_message());
        s->skipped++;
    }
    return encode_texts(l, s);
}

static void slot_fill(loader *l, slot *s, int64_t b) {
    slot_reset(s);
    if ((s->status = slot_decode(l, s, b))) {
        const char *m = petal_error_message();
        s->message = buffer_strndup(m, strlen(m));
    }
}

static void *worker_main(void *arg) {
    loader *l = arg;
    pthread_mutex_lock(&l->lock);
    for (;;) {
        // Batch b may start once batch b - n_slots has left its slot.
        while (!atomic_load(&l->stop) && l->next_claim < l->n_batches &&
               l->next_claim >= l->next_take + l->n_slots)
            pthread_cond_wait(&l->slot_free, &l->lock);
        if (atomic_load(&l->stop) || l->next_claim >= l->n_batches) break;
        int64_t b = l->next_claim++;
        slot *s = &l->slots[b % l->n_slots];
        pthread_mutex_unlock(&l->lock);
        slot_fill(l, s, b);
        pthread_mutex_lock(&l->lock);
        s->batch = b;
        pthread_cond_signal(&l->slot_ready);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

// ---- the consumer ----

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// The slot holding batch next_take, once decoded.
static slot *slot_wait(loader *l) {
    int64_t b = l->next_take;
    slot *s = &l->slots[b % l->n_slots];
    if (l->n_threads == 0) {
        slot_fill(l, s, b);
        return s;
    }
    pthread_mutex_lock(&l->lock);
    while (s->batch != b) pthread_cond_wait(&l->slot_ready, &l->lock);
    pthread_mutex_unlock(&l->lock);
    return s;
}

static void slot_release(loader *l, slot *s) {
    pthread_mutex_lock(&l->lock);
    s->batch = -1;
    l->next_take++;
    pthread_cond_signal(&l->slot_free); // one batch more may start: one worker is enough
    pthread_mutex_unlock(&l->lock);
}

static tensor *ids_tensor(const token_rows *r) {
    return tensor_keep(tensor_from_data(PETAL_I64, SHAPE(r->rows, r->len), r->ids));
}

// An f32 tensor made from the workers' floats, in the batch's dtype, owned by the batch.
static tensor *as_dtype(tensor *t, petal_dtype dtype) {
    if (dtype != PETAL_F64) return tensor_keep(t);
    tensor *c = tensor_keep(tensor_cast(t, dtype));
    tensor_free(t);
    return c;
}

static tensor *mask_tensor(const token_rows *r, petal_dtype dtype) {
    return as_dtype(tensor_from_data(PETAL_F32, SHAPE(r->rows, r->len), r->mask), dtype);
}

// A per-sample i64 field of the batch's samples as an (n) tensor.
static tensor *gather_ids(const loader *l, const slot *s, bool question) {
    tensor *t = tensor_keep(tensor_empty(PETAL_I64, SHAPE(s->n)));
    int64_t *v = tensor_data_i64(t);
    for (int64_t k = 0; k < s->n; k++) {
        const train_sample *smp = &l->d->samples[s->indices[k]];
        v[k] = question ? smp->vqa->question_id : smp->image_id;
    }
    return t;
}

static void batch_from_slot(const loader *l, const slot *s, train_batch *out) {
    int64_t n = s->n, size = l->o.image_size;
    out->n = n;
    out->indices = buffer_alloc((size_t)n * sizeof *out->indices, "loader");
    memcpy(out->indices, s->indices, (size_t)n * sizeof *out->indices);
    tensor *images =
        l->o.frames > 0
            ? tensor_from_data(PETAL_F32, SHAPE(n, l->o.frames, 3, size, size), s->images)
            : tensor_from_data(PETAL_F32, SHAPE(n, 3, size, size), s->images);
    out->images = as_dtype(images, l->o.dtype);
    bool vqa = l->d->task == TRAIN_TASK_VQA;
    if (vqa)
        out->question_ids = gather_ids(l, s, true);
    else
        out->image_ids = gather_ids(l, s, false);
    if (l->texts) {
        out->text_ids = ids_tensor(&s->text);
        out->text_mask = mask_tensor(&s->text, l->o.dtype);
    }
    if (l->answers) {
        out->answer_ids = ids_tensor(&s->answers);
        out->answer_mask = mask_tensor(&s->answers, l->o.dtype);
        out->answer_counts = buffer_alloc((size_t)n * sizeof *out->answer_counts, "loader");
        memcpy(out->answer_counts, s->n_answers, (size_t)n * sizeof *out->answer_counts);
        out->answer_weights =
            as_dtype(tensor_from_data(PETAL_F32, SHAPE(s->answers.rows), s->weights), l->o.dtype);
    }
}

// Takes batch next_take out of its slot: the batch (n == 0 when every image was skipped) or the
// slot's error, which stops the workers.
static petal_status take_batch(loader *l, train_batch *out) {
    slot *s = slot_wait(l);
    petal_status st = s->status;
    if (st) {
        l->failed = st;
        l->failed_message = s->message;
        s->message = NULL;
        atomic_store(&l->stop, true);
    } else {
        if (s->warnings.len) fputs(s->warnings.data, stderr);
        l->stats.images += s->n;
        l->stats.skipped += s->skipped;
        l->stats.truncated += s->truncated;
        l->stats.repeated += s->repeated;
        if (s->n) batch_from_slot(l, s, out);
    }
    slot_release(l, s);
    return st;
}

static petal_status next_batch(loader *l, train_batch *out, bool *done) {
    while (!l->failed) {
        if (l->next_take >= l->n_batches) {
            *done = true;
            return PETAL_OK;
        }
        if (!take_batch(l, out) && out->n) {
            l->stats.batches++;
            return PETAL_OK;
        }
    }
    return petal_error(l->failed, "%s", l->failed_message);
}

// t (a batch's tensor, in no scope) replaced by its copy on `device`.
static tensor *batch_tensor_to(tensor *t, petal_device device) {
    if (!t || device_equal(t->device, device)) return t;
    tensor *moved = tensor_keep(tensor_to(t, device));
    tensor_free(t);
    return moved;
}

static void batch_to_device(train_batch *b, petal_device device) {
    tensor **ts[] = {&b->images,     &b->image_ids,   &b->text_ids,      &b->text_mask,
                     &b->answer_ids, &b->answer_mask, &b->answer_weights};
    for (size_t k = 0; k < sizeof ts / sizeof *ts; k++) *ts[k] = batch_tensor_to(*ts[k], device);
}

petal_status loader_next(loader *l, train_batch *out, bool *done) {
    double start = now_seconds();
    *out = (train_batch){0};
    *done = false;
    petal_status st = next_batch(l, out, done);
    if (!st && !*done) batch_to_device(out, l->o.device);
    l->stats.wait_seconds += now_seconds() - start;
    return st;
}

loader_stats loader_get_stats(const loader *l) {
    return l->stats;
}

void train_batch_free(train_batch *b) {
    free(b->indices);
    free(b->answer_counts);
    tensor *ts[] = {b->images,       b->image_ids,  b->text_ids,    b->text_mask,
                    b->question_ids, b->answer_ids, b->answer_mask, b->answer_weights};
    for (size_t k = 0; k < sizeof ts / sizeof *ts; k++) tensor_free(ts[k]);
    *b = (train_batch){0};
}

// ---- set-up and shutdown ----

// Normalize's value for every byte, taken from image_to_tensor itself (a 256-pixel ramp), so the
// batches equal image_load_batch's bit for bit.
static void norm_tables(float norm[3][256]) {
    image ramp;
    image_init(&ramp, 256, 1);
    for (int v = 0; v < 256; v++) memset(image_pixel(&ramp, v, 0), v, 3);
    tensor *t = image_to_tensor(&ramp, image_blip_mean, image_blip_std); // (3, 1, 256)
    memcpy(norm, tensor_data_f32(t), 3 * 256 * sizeof(float));
    tensor_free(t);
    image_free(&ramp);
}

static void slots_init(loader *l) {
    l->n_slots = l->o.workers ? l->o.prefetch : 1;
    l->slots = buffer_calloc((size_t)l->n_slots, sizeof *l->slots, "loader");
    size_t b = (size_t)l->o.batch_size;
    for (int k = 0; k < l->n_slots; k++) {
        slot *sl = &l->slots[k];
        sl->batch = -1;
        sl->indices = buffer_alloc(b * sizeof *sl->indices, "loader");
        sl->images = buffer_alloc(b * sample_floats(&l->o) * sizeof *sl->images, "loader");
        sl->n_answers = buffer_alloc(b * sizeof *sl->n_answers, "loader");
    }
}

static void slot_free(slot *s) {
    free(s->indices);
    free(s->images);
    free(s->text.ids);
    free(s->text.mask);
    free(s->answers.ids);
    free(s->answers.mask);
    free(s->n_answers);
    free(s->weights);
    strbuf_free(&s->warnings);
    free(s->message);
}

static petal_status threads_start(loader *l) {
    l->threads = buffer_calloc((size_t)l->o.workers, sizeof *l->threads, "loader");
    for (int w = 0; w < l->o.workers; w++) {
        int rc = pthread_create(&l->threads[w], NULL, worker_main, l);
        if (rc)
            return petal_error(PETAL_ERR_MEMORY, "loader: cannot start worker thread %d of %d: %s",
                               w + 1, l->o.workers, strerror(rc));
        l->n_threads++;
    }
    return PETAL_OK;
}

petal_status loader_new(const train_data *d, const tokenizer *tok, const loader_options *o,
                        int64_t epoch, int64_t start_batch, loader **out) {
    PETAL_CHECK(o->batch_size >= 1 && o->image_size >= 1 && o->workers >= 0 && o->prefetch >= 1,
                "loader_new: batch_size %d, image_size %d, workers %d, prefetch %d", o->batch_size,
                o->image_size, o->workers, o->prefetch);
    *out = NULL;
    int64_t n_batches = loader_batches_per_epoch(d, o);
    PETAL_CHECK(o->stop_batch >= 0 && o->stop_batch <= n_batches,
                "loader_new: stop_batch %lld of %lld batches", (long long)o->stop_batch,
                (long long)n_batches);
    if (o->stop_batch > 0) n_batches = o->stop_batch;
    if (start_batch < 0 || start_batch > n_batches)
        return petal_error(PETAL_ERR_ARG,
                           "loader: start batch %lld of epoch %lld: expected 0 to %lld (%lld "
                           "samples in batches of %d)",
                           (long long)start_batch, (long long)epoch, (long long)n_batches,
                           (long long)d->n, o->batch_size);
    loader *l = buffer_calloc(1, sizeof *l, "loader");
    *l = (loader){.d = d, .tok = tok, .o = *o, .epoch = epoch, .n_batches = n_batches};
    l->texts = d->task == TRAIN_TASK_VQA || d->train;
    l->answers = d->task == TRAIN_TASK_VQA && d->train;
    PETAL_CHECK(tok || !l->texts, "loader_new: the %s split has texts but no tokenizer was given",
                train_task_name(d->task));
    l->text_opt = train_data_text_options(d->task);
    if (o->text_length > 0) l->text_opt.max_length = o->text_length;
    l->answer_opt = train_data_answer_options();
    l->aug = augment_blip_config(o->image_size);
    norm_tables(l->norm);
    PETAL_CHECK(o->world_size <= 1 || (o->rank >= 0 && o->rank < o->world_size),
                "loader_new: rank %d of %d", o->rank, o->world_size);
    l->n_samples = loader_shard_samples(d->n, o->world_size);
    l->order =
        buffer_alloc((size_t)(l->n_samples > 0 ? l->n_samples : 1) * sizeof *l->order, "loader");
    loader_shard_order(d->n, o->shuffle, o->seed, epoch, o->rank, o->world_size, l->order);
    l->next_claim = l->next_take = start_batch;
    atomic_init(&l->stop, false);
    slots_init(l);
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->slot_ready, NULL);
    pthread_cond_init(&l->slot_free, NULL);
    petal_status st = threads_start(l);
    if (st) {
        loader_free(l);
        return st;
    }
    *out = l;
    return PETAL_OK;
}

void loader_free(loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->lock);
    atomic_store(&l->stop, true);
    pthread_cond_broadcast(&l->slot_free);
    pthread_mutex_unlock(&l->lock);
    for (int w = 0; w < l->n_threads; w++) pthread_join(l->threads[w], NULL);
    for (int k = 0; k < l->n_slots; k++) slot_free(&l->slots[k]);
    pthread_cond_destroy(&l->slot_ready);
    pthread_cond_destroy(&l->slot_free);
    pthread_mutex_destroy(&l->lock);
    free(l->slots);
    free(l->threads);
    free(l->order);
    free(l->failed_message);
    free(l);
}
