// train/loader.c: identical batches whatever the worker count or start position, every sample
// once per epoch, images equal to image_load_batch / augment_apply with the per-sample generator,
// texts equal to tokenizer_encode_batch, bad images as errors naming the entry or skipped, and
// loader_free at any moment. Tiny PNGs and annotation files are written into a temp directory.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/augment.h"
#include "io/image.h"
#include "stb_image_write.h"
#include "tensor/view.h"
#include "tests/test_util.h"
#include "train/loader.h"

#define N_IMAGES 5
#define N_PAIRS  23

static tokenizer *tok;

static void setup(void) {
    test_dir_make();
    petal_status st = tokenizer_load(PETAL_TEST_DATA "/cli/vocab.txt", &tok);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
}

static void teardown(void) {
    tokenizer_free(tok);
    test_dir_remove();
}

// img<k>.png: a (20 + 3k) x (14 + 2k) pattern that differs from image to image.
static void write_images(void) {
    for (int k = 0; k < N_IMAGES; k++) {
        int w = 20 + 3 * k, h = 14 + 2 * k;
        unsigned char *rgb = malloc((size_t)w * h * 3);
        for (int i = 0; i < w * h * 3; i++) rgb[i] = (unsigned char)(i * (7 + k) + 31 * k);
        char name[32];
        snprintf(name, sizeof name, "img%d.png", k);
        ck_assert(stbi_write_png(test_dir_path(name), w, h, 3, rgb, w * 3));
        free(rgb);
    }
}

// Entries 3, 10, 17 have 60 tokens: more than any task keeps. Entries 5, 12, 19 have 33: all that
// retrieval keeps (35 with [CLS] and [SEP]), more than pretraining's 28, fewer than captioning's 38
// (with "a picture of ").
static const char *caption(int k) {
    static const char *short_ones[] = {"a red square",
                                       "the blue circle near the tree",
                                       "two green boxes on the table",
                                       "a small yellow sun in the sky",
                                       "one dog",
                                       "a white house with a dark door"};
    static const char *long_one = "reds greens reds greens reds greens reds greens reds greens "
                                  "reds greens reds greens reds greens reds greens reds greens "
                                  "reds greens reds greens reds greens reds greens reds greens";
    static const char *at_limit = "reds greens reds greens reds greens reds greens reds greens "
                                  "reds greens reds greens reds greens one";
    return k % 7 == 3 ? long_one : k % 7 == 5 ? at_limit : short_ones[k % 6];
}

// A pairs file of n entries over the images; where images[k] is given, entry k names it instead.
static const char *write_pairs(int n, const char *const *images) {
    char *json = malloc(256 * (size_t)n + 16);
    size_t len = 0;
    len += (size_t)sprintf(json + len, "[");
    for (int k = 0; k < n; k++) {
        char name[64];
        snprintf(name, sizeof name, "img%d.png", k % N_IMAGES);
        len += (size_t)sprintf(
            json + len, "%s{\"image\": \"%s\", \"caption\": \"%s\", \"image_id\": %d}",
            k ? ",\n" : "", images && images[k] ? images[k] : name, caption(k), k % N_IMAGES);
    }
    sprintf(json + len, "]");
    const char *path = test_dir_write("pairs_train.json", json);
    free(json);
    return path;
}

static void load_pairs(train_task task, const char *path, train_data *d) {
    char root[512];
    snprintf(root, sizeof root, "%s", test_dir_path(""));
    train_data_options o = {.task = task,
                            .train = true,
                            .ann_files = &path,
                            .n_ann_files = 1,
                            .image_root = root,
                            .max_words = 30,
                            .prompt = task == TRAIN_TASK_CAPTION ? "a picture of " : NULL};
    petal_status st = train_data_load(&o, d);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
}

static void fixture_pairs(train_task task, train_data *d) {
    write_images();
    load_pairs(task, write_pairs(N_PAIRS, NULL), d);
}

static loader_options train_options(int workers) {
    return (loader_options){.batch_size = 4,
                            .shuffle = true,
                            .drop_last = true,
                            .train_transform = true,
                            .image_size = 16,
                            .workers = workers,
                            .prefetch = 3,
                            .seed = 1234};
}

static loader *loader_ok(const train_data *d, const loader_options *o, int64_t epoch,
                         int64_t start) {
    loader *l;
    petal_status st = loader_new(d, tok, o, epoch, start, &l);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
    return l;
}

typedef struct {
    train_batch b[64];
    int n;
    loader_stats stats;
} epoch_batches;

// Every batch of one pass, from batch `start`.
static void run_epoch(const train_data *d, const loader_options *o, int64_t epoch, int64_t start,
                      epoch_batches *out) {
    loader *l = loader_ok(d, o, epoch, start);
    out->n = 0;
    for (;;) {
        bool done;
        ck_assert_int_lt(out->n, 64);
        petal_status st = loader_next(l, &out->b[out->n], &done);
        ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
        if (done) break;
        out->n++;
    }
    out->stats = loader_get_stats(l);
    loader_free(l);
}

static void epoch_free(epoch_batches *e) {
    for (int k = 0; k < e->n; k++) train_batch_free(&e->b[k]);
    e->n = 0;
}

// Both NULL, or the same shape and bytes; prints the first differing element otherwise.
static bool same_tensor(const char *what, const tensor *a, const tensor *b) {
    if (!a || !b) {
        if (a != b) printf("%s: one tensor is NULL\n", what);
        return a == b;
    }
    if (a->dtype != b->dtype || !tensor_same_shape(a, b)) {
        char sa[SHAPE_STR_MAX], sb[SHAPE_STR_MAX];
        printf("%s: %s %s vs %s %s\n", what, dtype_name(a->dtype),
               shape_str(a->ndim, a->shape, sa, sizeof sa), dtype_name(b->dtype),
               shape_str(b->ndim, b->shape, sb, sizeof sb));
        return false;
    }
    size_t n = (size_t)tensor_numel(a), elem = tensor_nbytes(a) / (n ? n : 1);
    const unsigned char *pa = tensor_data(a), *pb = tensor_data(b);
    for (size_t i = 0; i < n; i++)
        if (memcmp(pa + i * elem, pb + i * elem, elem) != 0) {
            printf("%s: element %zu of %zu differs: %g vs %g\n", what, i, n,
                   a->dtype == PETAL_F32 ? ((const float *)pa)[i] : ((const int64_t *)pa)[i],
                   a->dtype == PETAL_F32 ? ((const float *)pb)[i] : ((const int64_t *)pb)[i]);
            return false;
        }
    return true;
}

// The batch's f32 mask against tokenizer_encode_batch's i64 one.
static bool same_mask(const char *what, const tensor *got, const tensor *want_i64) {
    tensor *want = tensor_cast(want_i64, PETAL_F32);
    bool same = same_tensor(what, got, want);
    tensor_free(want);
    return same;
}

static void assert_same_batch(const train_batch *a, const train_batch *b) {
    ck_assert_int_eq(a->n, b->n);
    ck_assert_mem_eq(a->indices, b->indices, (size_t)a->n * sizeof *a->indices);
    ck_assert(same_tensor("images", a->images, b->images));
    ck_assert(same_tensor("image_ids", a->image_ids, b->image_ids));
    ck_assert(same_tensor("text_ids", a->text_ids, b->text_ids));
    ck_assert(same_tensor("text_mask", a->text_mask, b->text_mask));
    ck_assert(same_tensor("answer_ids", a->answer_ids, b->answer_ids));
    ck_assert(same_tensor("answer_weights", a->answer_weights, b->answer_weights));
}

START_TEST(test_same_batches_for_any_workers_and_start) {
    train_data d;
    fixture_pairs(TRAIN_TASK_RETRIEVAL, &d);
    epoch_batches ref, got;
    loader_options o = train_options(0);
    run_epoch(&d, &o, 1, 0, &ref);
    ck_assert_int_eq(ref.n, N_PAIRS / 4);
    const int workers[] = {1, 2, 2};
    const int prefetch[] = {3, 1, 4};
    for (int k = 0; k < 3; k++) {
        o = train_options(workers[k]);
        o.prefetch = prefetch[k];
        run_epoch(&d, &o, 1, 0, &got);
        ck_assert_int_eq(got.n, ref.n);
        for (int b = 0; b < ref.n; b++) assert_same_batch(&got.b[b], &ref.b[b]);
        epoch_free(&got);
    }
    // Resuming at batch 2 gives the rest of the same epoch.
    o = train_options(2);
    run_epoch(&d, &o, 1, 2, &got);
    ck_assert_int_eq(got.n, ref.n - 2);
    for (int b = 0; b < got.n; b++) assert_same_batch(&got.b[b], &ref.b[b + 2]);
    epoch_free(&got);
    // Another epoch draws another order and other augmentations.
    run_epoch(&d, &o, 2, 0, &got);
    ck_assert(memcmp(tensor_data(got.b[0].images), tensor_data(ref.b[0].images),
                     tensor_nbytes(ref.b[0].images)) != 0);
    epoch_free(&got);
    epoch_free(&ref);
    train_data_free(&d);
}
END_TEST

static bool is_permutation(const int64_t *order, int64_t n) {
    char *seen = calloc((size_t)n, 1);
    bool ok = true;
    for (int64_t i = 0; i < n && ok; i++) {
        ok = order[i] >= 0 && order[i] < n && !seen[order[i]];
        if (ok) seen[order[i]] = 1;
    }
    free(seen);
    return ok;
}

START_TEST(test_epoch_order) {
    enum { N = 1000 };
    int64_t a[N], b[N], c[N], plain[N];
    loader_epoch_order(N, true, 7, 0, a);
    loader_epoch_order(N, true, 7, 1, b);
    loader_epoch_order(N, true, 8, 0, c);
    loader_epoch_order(N, false, 7, 0, plain);
    ck_assert(is_permutation(a, N) && is_permutation(b, N) && is_permutation(c, N));
    int same_ab = 0, same_ac = 0, fixed = 0;
    for (int i = 0; i < N; i++) {
        same_ab += a[i] == b[i];
        same_ac += a[i] == c[i];
        fixed += a[i] == i;
        ck_assert_int_eq(plain[i], i);
    }
    // A random permutation has about one fixed point; a few would be chance, hundreds a bug.
    ck_assert_msg(same_ab < 10 && same_ac < 10 && fixed < 10,
                  "positions equal across epochs %d, seeds %d, fixed points %d", same_ab, same_ac,
                  fixed);
    int64_t again[N];
    loader_epoch_order(N, true, 7, 0, again);
    ck_assert_mem_eq(a, again, sizeof a);
    ck_assert_uint_ne(loader_sample_seed(7, 0, 1), loader_sample_seed(7, 0, 2));
    ck_assert_uint_ne(loader_sample_seed(7, 0, 1), loader_sample_seed(7, 1, 1));
    ck_assert_uint_ne(loader_sample_seed(7, 0, 1), loader_sample_seed(7, 1, 0));
    ck_assert_uint_ne(loader_sample_seed(7, 0, 1), loader_sample_seed(8, 0, 1));
}
END_TEST

// DistributedSampler's cut: padded to a multiple of the ranks by repeating the epoch's start,
// then every world-th entry from position rank.
START_TEST(test_shard_order) {
    enum { N = 10 };
    int64_t whole[N];
    loader_epoch_order(N, true, 5, 2, whole);
    for (int world = 1; world <= 4; world++) {
        int64_t m = loader_shard_samples(N, world), count[N] = {0};
        ck_assert_int_eq(m, (N + world - 1) / world);
        for (int r = 0; r < world; r++) {
            int64_t shard[N];
            loader_shard_order(N, true, 5, 2, r, world, shard);
            for (int64_t k = 0; k < m; k++) {
                ck_assert_int_eq(shard[k], whole[(r + k * world) % N]);
                count[shard[k]]++;
            }
        }
        // every sample once; the padding (world * m - N of them) repeats the first ones
        for (int64_t p = 0; p < N; p++) ck_assert_int_eq(count[whole[p]], 1 + (p < world * m - N));
    }
}
END_TEST

// Batch b of every shard together is batch b of one loader with world times the batch size: what
// makes a data-parallel step equal to one process's step (every batch of it when the number of
// ranks divides the samples; here the shards' padding gives them one batch more).
START_TEST(test_shards_make_the_global_batch) {
    train_data d;
    fixture_pairs(TRAIN_TASK_RETRIEVAL, &d);
    loader_options big = train_options(0);
    big.batch_size = 6;
    big.drop_last = true;
    epoch_batches whole, parts[2];
    run_epoch(&d, &big, 1, 0, &whole);
    for (int r = 0; r < 2; r++) {
        loader_options o = big;
        o.batch_size = 3;
        o.rank = r;
        o.world_size = 2;
        // 23 samples: shards of 12 (one repeated) make 4 batches of 3, the whole 3 batches of 6
        ck_assert_int_eq(loader_batches_per_epoch(&d, &o), 4);
        run_epoch(&d, &o, 1, 0, &parts[r]);
        ck_assert_int_eq(parts[r].n, 4);
    }
    for (int b = 0; b < whole.n; b++)
        for (int64_t k = 0; k < 6; k++) {
            const train_batch *p = &parts[k % 2].b[b];
            ck_assert_int_eq(p->indices[k / 2], whole.b[b].indices[k]);
        }
    epoch_free(&whole);
    epoch_free(&parts[0]);
    epoch_free(&parts[1]);
    train_data_free(&d);
}
END_TEST

// An evaluation's share (train/eval_shard.h): batches [1, 3) of the split, read with stop_batch,
// are batches 1 and 2 of the whole pass, sample for sample.
START_TEST(test_stop_batch_reads_a_share_of_the_batches) {
    train_data d;
    fixture_pairs(TRAIN_TASK_RETRIEVAL, &d);
    loader_options o = train_options(2);
    o.shuffle = false;
    o.drop_last = false;
    o.batch_size = 5;
    epoch_batches whole, share;
    run_epoch(&d, &o, 0, 0, &whole);
    o.stop_batch = 3;
    run_epoch(&d, &o, 0, 1, &share);
    ck_assert_int_eq(share.n, 2);
    for (int b = 0; b < 2; b++) {
        ck_assert_int_eq(share.b[b].n, whole.b[b + 1].n);
        for (int64_t k = 0; k < share.b[b].n; k++)
            ck_assert_int_eq(share.b[b].indices[k], whole.b[b + 1].indices[k]);
    }
    ck_assert_int_eq(share.stats.batches, 2);
    epoch_free(&whole);
    epoch_free(&share);
    train_data_free(&d);
}
END_TEST

START_TEST(test_every_sample_once_per_epoch) {
    train_data d;
    fixture_pairs(TRAIN_TASK_RETRIEVAL, &d);
    loader_options o = train_options(2);
    o.batch_size = 5;
    o.drop_last = false;
    ck_assert_int_eq(loader_batches_per_epoch(&d, &o), 5);
    epoch_batches e;
    int64_t first_order[N_PAIRS];
    for (int epoch = 0; epoch < 2; epoch++) {
        run_epoch(&d, &o, epoch, 0, &e);
        ck_assert_int_eq(e.n, 5);
        ck_assert_int_eq(e.b[4].n, 3);
        int64_t order[N_PAIRS], at = 0;
        for (int b = 0; b < e.n; b++)
            for (int64_t k = 0; k < e.b[b].n; k++) order[at++] = e.b[b].indices[k];
        ck_assert_int_eq(at, N_PAIRS);
        ck_assert(is_permutation(order, N_PAIRS));
        if (epoch == 0)
            memcpy(first_order, order, sizeof order);
        else
            ck_assert_msg(memcmp(first_order, order, sizeof order) != 0,
                          "epochs 0 and 1 have one order");
        ck_assert_int_eq(e.stats.batches, 5);
        ck_assert_int_eq(e.stats.images, N_PAIRS);
        ck_assert(e.stats.wait_seconds > 0);
        epoch_free(&e);
    }
    o.drop_last = true;
    ck_assert_int_eq(loader_batches_per_epoch(&d, &o), 4);
    train_data_free(&d);
}
END_TEST

static const char **sample_paths(const train_data *d, const train_batch *b) {
    const char **paths = malloc((size_t)b->n * sizeof *paths);
    for (int64_t k = 0; k < b->n; k++) paths[k] = d->samples[b->indices[k]].image;
    return paths;
}

START_TEST(test_test_transform_is_image_load_batch) {
    train_data d;
    fixture_pairs(TRAIN_TASK_RETRIEVAL, &d);
    loader_options o = train_options(2);
    o.train_transform = o.shuffle = o.drop_last = false;
    o.image_size = 24;
    epoch_batches e;
    run_epoch(&d, &o, 0, 0, &e);
    ck_assert_int_eq(e.n, 6);
    for (int b = 0; b < e.n; b++) {
        for (int64_t k = 0; k < e.b[b].n; k++) ck_assert_int_eq(e.b[b].indices[k], 4 * b + k);
        const char **paths = sample_paths(&d, &e.b[b]);
        tensor *want;
        ck_assert_int_eq(image_load_batch(paths, (int)e.b[b].n, 24, NULL, NULL, &want), PETAL_OK);
        ck_assert(same_tensor("images", e.b[b].images, want));
        tensor_free(want);
        free(paths);
    }
    epoch_free(&e);
    train_data_free(&d);
}
END_TEST

START_TEST(test_train_transform_is_augment_with_sample_generator) {
    train_data d;
    fixture_pairs(TRAIN_TASK_RETRIEVAL, &d);
    loader_options o = train_options(2);
    epoch_batches e;
    run_epoch(&d, &o, 3, 0, &e);
    augment_config cfg = augment_blip_config(o.image_size);
    int flips = 0;
    for (int b = 0; b < e.n; b++)
        for (int64_t k = 0; k < e.b[b].n; k++) {
            int64_t i = e.b[b].indices[k];
            image src, dst;
            ck_assert_int_eq(image_load(d.samples[i].image, &src), PETAL_OK);
            rng_generator g = {loader_sample_seed(o.seed, 3, i), 0};
            augment_draw draw = augment_sample(&cfg, src.width, src.height, &g);
            flips += draw.flip;
            augment_apply(&cfg, &draw, &src, &dst);
            tensor *want = image_to_tensor(&dst, image_blip_mean, image_blip_std);
            tensor *got = view_select(e.b[b].images, 0, k);
            ck_assert(same_tensor("augmented image", got, want));
            tensor_free(got);
            tensor_free(want);
            image_free(&src);
            image_free(&dst);
        }
    ck_assert_msg(flips > 0 && flips < 4 * e.n, "%d of %d images flipped", flips, 4 * e.n);
    epoch_free(&e);
    train_data_free(&d);
}
END_TEST

// The batch's texts through tokenizer_encode_batch, with the task's options.
static void assert_texts_encoded(const train_data *d, const train_batch *b, int64_t *truncated) {
    const char **texts = malloc((size_t)b->n * sizeof *texts);
    tokenizer_options opt = train_data_text_options(d->task);
    for (int64_t k = 0; k < b->n; k++) {
        texts[k] = d->samples[b->indices[k]].text;
        token_ids ids = {0};
        ck_assert_int_eq(tokenizer_tokenize(tok, texts[k], strlen(texts[k]), &ids), PETAL_OK);
        *truncated += ids.len + 2 > (size_t)opt.max_length;
        token_ids_free(&ids);
    }
    tensor *ids, *mask;
    ck_assert_int_eq(tokenizer_encode_batch(tok, texts, (int)b->n, &opt, &ids, &mask), PETAL_OK);
    ck_assert(same_tensor("text ids", b->text_ids, ids));
    ck_assert(same_mask("text mask", b->text_mask, mask));
    tensor_free(ids);
    tensor_free(mask);
    free(texts);
}

START_TEST(test_tokenization_is_tokenizer_encode_batch) {
    const train_task tasks[] = {TRAIN_TASK_RETRIEVAL, TRAIN_TASK_PRETRAIN, TRAIN_TASK_CAPTION};
    const int64_t lengths[] = {35, 30, -1}; // caption: padding to the longest
    const int64_t truncations[] = {3, 6, 3};
    write_images();
    const char *path = write_pairs(N_PAIRS, NULL);
    for (int t = 0; t < 3; t++) {
        train_data d;
        load_pairs(tasks[t], path, &d);
        loader_options o = train_options(2);
        o.drop_last = false;
        epoch_batches e;
        run_epoch(&d, &o, 0, 0, &e);
        int64_t truncated = 0;
        for (int b = 0; b < e.n; b++) {
            assert_texts_encoded(&d, &e.b[b], &truncated);
            if (lengths[t] > 0) ck_assert_int_eq(e.b[b].text_ids->shape[1], lengths[t]);
            for (int64_t k = 0; k < e.b[b].n; k++)
                ck_assert_int_eq(tensor_data_i64(e.b[b].image_ids)[k],
                                 d.samples[e.b[b].indices[k]].image_id);
        }
        ck_assert_int_eq(truncated, truncations[t]);
        ck_assert_int_eq(e.stats.truncated, truncated);
        epoch_free(&e);
        train_data_free(&d);
    }
}
END_TEST

static const char *vqa_entry(int k, bool answers) {
    static char buf[512];
    snprintf(buf, sizeof buf,
             "{\"question_id\": %d, \"question\": \"%s\", \"image\": \"img%d.png\", "
             "\"dataset\": \"%s\"%s}",
             100 + k, k % 2 ? "what color is the square?" : "is there a dog near the house?",
             k % N_IMAGES, k % 3 == 2 ? "vg" : "vqa",
             !answers     ? ""
             : k % 3 == 2 ? ", \"answer\": \"yes\""
             : k % 2      ? ", \"answer\": [\"red\", \"dark red\", \"red\", \"blue\"]"
                          : ", \"answer\": [\"no\"]");
    return buf;
}

static void load_vqa(bool train, train_data *d) {
    write_images();
    char json[8192] = "[";
    for (int k = 0; k < 10; k++) {
        strcat(json, k ? ",\n" : "");
        strcat(json, vqa_entry(k, true));
    }
    strcat(json, "]");
    const char *path = test_dir_write("vqa_train.json", json);
    char root[512];
    snprintf(root, sizeof root, "%s", test_dir_path(""));
    train_data_options o = {.task = TRAIN_TASK_VQA,
                            .train = train,
                            .ann_files = &path,
                            .n_ann_files = 1,
                            .image_root = root};
    ck_assert_int_eq(train_data_load(&o, d), PETAL_OK);
}

START_TEST(test_vqa_batches) {
    train_data d;
    load_vqa(true, &d);
    loader_options o = train_options(2);
    o.batch_size = 3;
    epoch_batches e;
    run_epoch(&d, &o, 0, 0, &e);
    ck_assert_int_eq(e.n, 3);
    int64_t truncated = 0;
    for (int b = 0; b < e.n; b++) {
        const train_batch *bt = &e.b[b];
        assert_texts_encoded(&d, bt, &truncated);
        ck_assert_ptr_null(bt->image_ids);
        // The answers of the batch's questions, in order, padded to the longest.
        const char *answers[32];
        float weights[32];
        int a = 0;
        for (int64_t k = 0; k < bt->n; k++) {
            const ann_vqa *q = d.samples[bt->indices[k]].vqa;
            ck_assert_int_eq(bt->answer_counts[k], q->n_answers);
            ck_assert_int_eq(tensor_data_i64(bt->question_ids)[k], q->question_id);
            for (int j = 0; j < q->n_answers; j++, a++) {
                answers[a] = q->answers[j];
                weights[a] = (float)q->weights[j];
            }
        }
        tokenizer_options opt = train_data_answer_options();
        tensor *ids, *mask;
        ck_assert_int_eq(tokenizer_encode_batch(tok, answers, a, &opt, &ids, &mask), PETAL_OK);
        ck_assert(same_tensor("answer ids", bt->answer_ids, ids));
        ck_assert(same_mask("answer mask", bt->answer_mask, mask));
        ck_assert_mem_eq(tensor_data_f32(bt->answer_weights), weights, (size_t)a * sizeof(float));
        tensor_free(ids);
        tensor_free(mask);
    }
    epoch_free(&e);
    train_data_free(&d);

    load_vqa(false, &d); // evaluation: questions and ids, no answers
    o.shuffle = o.drop_last = o.train_transform = false;
    run_epoch(&d, &o, 0, 0, &e);
    ck_assert_int_eq(e.n, 4);
    ck_assert_ptr_null(e.b[0].answer_ids);
    ck_assert_ptr_nonnull(e.b[0].text_ids);
    ck_assert_int_eq(tensor_data_i64(e.b[3].question_ids)[0], 109);
    epoch_free(&e);
    train_data_free(&d);
}
END_TEST

START_TEST(test_retrieval_evaluation_images_only) {
    write_images();
    const char *path = test_dir_write(
        "coco_karpathy_val.json",
        "[{\"image\": \"img0.png\", \"caption\": [\"a\", \"b\"]}, {\"image\": \"img1.png\", "
        "\"caption\": [\"c\"]}, {\"image\": \"img2.png\", \"caption\": [\"d\"]}]");
    char root[512];
    snprintf(root, sizeof root, "%s", test_dir_path(""));
    train_data_options dopt = {.task = TRAIN_TASK_RETRIEVAL,
                               .ann_files = &path,
                               .n_ann_files = 1,
                               .image_root = root,
                               .max_words = 30};
    train_data d;
    ck_assert_int_eq(train_data_load(&dopt, &d), PETAL_OK);
    loader_options o = {.batch_size = 2, .image_size = 8, .workers = 1, .prefetch = 2};
    loader *l;
    ck_assert_int_eq(loader_new(&d, NULL, &o, 0, 0, &l), PETAL_OK); // no texts: no tokenizer
    train_batch b;
    bool done;
    ck_assert_int_eq(loader_next(l, &b, &done), PETAL_OK);
    ck_assert(!done && b.n == 2 && !b.text_ids && !b.question_ids);
    ck_assert_int_eq(tensor_data_i64(b.image_ids)[1], 1);
    train_batch_free(&b);
    ck_assert_int_eq(loader_next(l, &b, &done), PETAL_OK);
    ck_assert(!done && b.n == 1);
    ck_assert_int_eq(tensor_data_i64(b.image_ids)[0], 2);
    train_batch_free(&b);
    ck_assert_int_eq(loader_next(l, &b, &done), PETAL_OK);
    ck_assert(done && b.n == 0 && !b.images);
    loader_free(l);
    train_data_free(&d);
}
END_TEST

// A missing file (entry 6) and one that is not an image (entry 13).
static void fixture_bad_images(train_data *d) {
    write_images();
    test_dir_write("notes.png", "not a png");
    const char *images[N_PAIRS] = {[6] = "missing.png", [13] = "notes.png"};
    load_pairs(TRAIN_TASK_RETRIEVAL, write_pairs(N_PAIRS, images), d);
}

START_TEST(test_bad_image_is_an_error_naming_the_entry) {
    for (int workers = 0; workers <= 2; workers += 2) {
        train_data d;
        fixture_bad_images(&d);
        loader_options o = train_options(workers);
        o.shuffle = false;
        loader *l = loader_ok(&d, &o, 0, 0);
        train_batch b;
        bool done;
        ck_assert_int_eq(loader_next(l, &b, &done), PETAL_OK);
        train_batch_free(&b);
        for (int call = 0; call < 2; call++) { // the error stays
            ck_assert_int_eq(loader_next(l, &b, &done), PETAL_ERR_IO);
            const char *msg = petal_error_message();
            ck_assert_msg(strstr(msg, "pairs_train.json entry 6 (image 'missing.png'): ") &&
                              strstr(msg, d.samples[6].image),
                          "%s", msg);
            ck_assert(!done && !b.images);
        }
        loader_free(l);
        train_data_free(&d);
    }
}
END_TEST

// run_epoch with stderr (the skip warnings) captured into text.
static void run_epoch_capturing(const train_data *d, const loader_options *o, epoch_batches *e,
                                char *text, size_t size) {
    const char *log = test_dir_path("stderr.txt");
    fflush(stderr);
    int saved = dup(2);
    ck_assert(freopen(log, "w", stderr));
    run_epoch(d, o, 0, 0, e);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fopen(log, "r");
    size_t got = fread(text, 1, size - 1, f);
    text[got] = '\0';
    fclose(f);
}

START_TEST(test_skip_bad_images) {
    train_data d;
    fixture_bad_images(&d);
    loader_options o = train_options(2);
    o.shuffle = o.drop_last = false;
    o.skip_bad_images = true;
    epoch_batches e;
    char text[4096];
    run_epoch_capturing(&d, &o, &e, text, sizeof text);
    ck_assert_int_eq(e.n, 6);
    ck_assert_int_eq(e.b[1].n, 3); // entries 4, 5, 7
    ck_assert_int_eq(e.b[1].indices[2], 7);
    ck_assert_int_eq(e.b[1].images->shape[0], 3);
    ck_assert_int_eq(e.b[3].n, 3); // entries 12, 14, 15
    ck_assert_int_eq(e.stats.skipped, 2);
    ck_assert_int_eq(e.stats.images, N_PAIRS - 2);
    ck_assert_msg(strstr(text, "entry 6 (image 'missing.png')") &&
                      strstr(text, "entry 13 (image 'notes.png')") &&
                      strstr(text, "not a JPEG or PNG"),
                  "stderr: %s", text);
    epoch_free(&e);
    train_data_free(&d);
}
END_TEST

START_TEST(test_all_bad_batch_is_passed_over) {
    write_images();
    const char *images[10] = {"missing.png", "missing.png", "missing.png", "missing.png"};
    train_data d;
    load_pairs(TRAIN_TASK_RETRIEVAL, write_pairs(10, images), &d);
    loader_options o = train_options(0);
    o.shuffle = o.drop_last = false;
    o.skip_bad_images = true;
    epoch_batches e;
    char text[4096];
    run_epoch_capturing(&d, &o, &e, text, sizeof text);
    ck_assert_int_eq(e.n, 2);
    ck_assert_int_eq(e.b[0].indices[0], 4);
    ck_assert_int_eq(e.stats.batches, 2);
    ck_assert_int_eq(e.stats.skipped, 4);
    ck_assert_msg(strstr(text, "entry 3 (image 'missing.png')"), "stderr: %s", text);
    epoch_free(&e);
    train_data_free(&d);
}
END_TEST

START_TEST(test_free_at_any_moment) {
    train_data d;
    fixture_pairs(TRAIN_TASK_CAPTION, &d);
    loader_options o = train_options(2);
    o.prefetch = 2;
    o.image_size = 64;
    loader_free(loader_ok(&d, &o, 0, 0)); // workers just started
    loader *l = loader_ok(&d, &o, 0, 1);
    train_batch b;
    bool done;
    ck_assert_int_eq(loader_next(l, &b, &done), PETAL_OK);
    ck_assert_int_eq(b.images->shape[2], 64);
    train_batch_free(&b);
    usleep(50000); // the workers fill the queue and wait on it
    loader_free(l);
    loader_free(NULL);
    // Starting past the end is an error; at the end, the first call says done.
    ck_assert_int_eq(loader_new(&d, tok, &o, 0, 6, &l), PETAL_ERR_ARG);
    ck_assert_msg(strstr(petal_error_message(), "start batch 6 of epoch 0: expected 0 to 5"), "%s",
                  petal_error_message());
    ck_assert_ptr_null(l);
    l = loader_ok(&d, &o, 0, 5);
    ck_assert_int_eq(loader_next(l, &b, &done), PETAL_OK);
    ck_assert(done);
    loader_free(l);
    train_data_free(&d);
}
END_TEST

int main(void) {
    Suite *s = suite_create("loader");
    TCase *tc = tcase_with_timeout("loader", 20);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_same_batches_for_any_workers_and_start);
    tcase_add_test(tc, test_epoch_order);
    tcase_add_test(tc, test_every_sample_once_per_epoch);
    tcase_add_test(tc, test_shard_order);
    tcase_add_test(tc, test_shards_make_the_global_batch);
    tcase_add_test(tc, test_stop_batch_reads_a_share_of_the_batches);
    tcase_add_test(tc, test_test_transform_is_image_load_batch);
    tcase_add_test(tc, test_train_transform_is_augment_with_sample_generator);
    tcase_add_test(tc, test_tokenization_is_tokenizer_encode_batch);
    tcase_add_test(tc, test_vqa_batches);
    tcase_add_test(tc, test_retrieval_evaluation_images_only);
    tcase_add_test(tc, test_bad_image_is_an_error_naming_the_entry);
    tcase_add_test(tc, test_skip_bad_images);
    tcase_add_test(tc, test_all_bad_batch_is_passed_over);
    tcase_add_test(tc, test_free_at_any_moment);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
