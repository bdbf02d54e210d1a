// Batches of a train_data split, decoded by worker threads ahead of the training loop, in order
// (BLIP's create_loader: a DataLoader with a DistributedSampler, drop_last for training).
//
//     loader *l;
//     if (loader_new(&d, tok, &opt, epoch, 0, &l)) goto fail;
//     train_batch b;
//     bool done;
//     while (!(st = loader_next(l, &b, &done)) && !done) {
//         ...                               // b.images, b.text_ids, ...
//         train_batch_free(&b);
//     }
//     loader_free(l);
//
// One loader covers one pass (an epoch); the next epoch gets a new loader.
//
// Determinism: the sample order of epoch e is a Fisher-Yates shuffle drawn with Philox from
// (seed, e), and the training transform of sample i in epoch e draws from its own generator,
// seeded with a hash of (seed, e, i) (loader_sample_seed). Nothing is drawn from shared state, so
// any number of workers, any timing and any start position give the same batches, bit for bit.
//
// Threads: petal's tensors are not safe to create from several threads (storage.c's memory
// counters and reference counts are plain integers, the default generator is one global), so the
// workers touch no tensor: they decode, augment, normalise and tokenize into plain malloc'd
// buffers (floats, int64 ids) owned by the loader, and loader_next, in the calling thread, copies
// them into the batch's tensors. What the workers call is thread-safe: image_load (stb_image's
// failure reason is thread-local), image_resize, augment_sample/apply on a generator of their
// own, tokenizer_tokenize on the shared read-only tokenizer, and petal_error (thread-local). Call
// loader_new, loader_next, loader_free and train_batch_free from the thread that runs the model.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "io/tokenizer.h"
#include "tensor/error.h"
#include "tensor/tensor.h"
#include "train/data.h"

typedef struct {
    int batch_size;       // samples per batch (>= 1)
    bool shuffle;         // a fresh order each epoch (training); else the file's order
    bool drop_last;       // leave out the last, incomplete batch (BLIP's training loaders)
    bool train_transform; // augment_blip_config(image_size); else the bicubic resize (test)
    bool skip_bad_images; // leave an unreadable image out of its batch (warning on stderr)
    int image_size;       // S: images come out S x S
    int workers;          // decoding threads; 0 decodes inside loader_next
    int prefetch;         // batches in the queue or being decoded (>= 1)
    int text_length;      // captions / questions: this max_length instead of BLIP's (0: BLIP's)
    uint64_t seed;
    // Data parallelism: this process reads shard `rank` of `world_size` (0 and 0 or 1: the whole
    // split), as PyTorch's DistributedSampler cuts it (loader_shard_order).
    int rank, world_size;
    // > 0: the pass ends before this batch (a rank's share of an evaluation, whose batches are
    // the one-process batches); 0: at the epoch's end.
    int64_t stop_batch;
    petal_dtype dtype; // of images, masks and answer weights: F32 (0) or F64 (config dtype)
    // Video: each sample's file is a video of which `frames` frames are sampled (io/video.h: one
    // random frame per segment in training, from the sample's generator; the segment middles
    // otherwise), resized and normalised as test images are. 0: samples are images.
    int frames;
    // Where loader_next hands the model's inputs (images, image ids, texts, answers) over;
    // question_ids, read by the evaluation's bookkeeping only, stay on the CPU. Zeroed: the CPU.
    petal_device device;
} loader_options;

// One batch. Its tensors belong to the batch (they are in no scope) until train_batch_free.
typedef struct {
    int64_t n;         // samples: batch_size, fewer in the last batch or after skipped images
    int64_t *indices;  // (n) the samples' indices in the train_data
    tensor *images;    // (n, 3, S, S) f32, normalised with BLIP's mean and std; (n, T, 3, S, S)
                       // for videos
    tensor *image_ids; // (n) i64 the samples' image_id; NULL for VQA
    // Texts as tokenizer_encode_batch makes them with train_data_text_options, but with the 0/1
    // mask in f32, the dtype the models take masks in. NULL when the split has images only.
    tensor *text_ids;     // (n, L) i64 captions or questions
    tensor *text_mask;    // (n, L) f32
    tensor *question_ids; // (n) i64 VQA; -1 where an entry has none; NULL otherwise
    // VQA training: the answers of every question, question after question (A = sum of counts),
    // tokenized with train_data_answer_options; NULL otherwise
    tensor *answer_ids;     // (A, La) i64
    tensor *answer_mask;    // (A, La) f32
    int64_t *answer_counts; // (n) answers of each question, or NULL
    tensor *answer_weights; // (A) f32 BLIP's answer weights, or NULL
} train_batch;

void train_batch_free(train_batch *b); // leaves a zeroed batch; a zeroed one is fine

typedef struct {
    double wait_seconds; // time spent inside loader_next (the trainer's data time), cumulative
    int64_t batches;     // batches returned
    int64_t images;      // images decoded into returned batches
    int64_t skipped;     // unreadable images left out (skip_bad_images)
    int64_t truncated;   // texts cut to the maximum length, as BLIP's tokenizer call does
    int64_t repeated;    // video frames that repeat a clip's last one (shorter than T frames)
} loader_stats;

typedef struct loader loader;

// Batches per epoch of one shard (loader_shard_samples samples): ceil(n / batch_size), or floor
// with drop_last.
int64_t loader_batches_per_epoch(const train_data *d, const loader_options *o);

// Starts a pass over epoch `epoch` at batch `start_batch` (0, or where a resumed run stopped),
// to o->stop_batch or the epoch's end. d and tok (NULL for splits without texts) must outlive the
// loader. PETAL_ERR_ARG when start_batch is past the epoch's end; PETAL_ERR_MEMORY when a thread
// cannot be started. Options out of range abort (the config checks them).
petal_status loader_new(const train_data *d, const tokenizer *tok, const loader_options *o,
                        int64_t epoch, int64_t start_batch, loader **out);
// The next batch into *out, or *done at the epoch's end (then *out is zeroed). A bad image (or a
// text that is not UTF-8) is an error naming the annotation file, the entry and the image:
//     coco_karpathy_train.json entry 17 (image 'train/x.png'): image '/data/coco/train/x.png' ...
// after which the loader returns that error again on every call. With skip_bad_images an
// unreadable image is left out instead (and a batch left empty is passed over).
petal_status loader_next(loader *l, train_batch *out, bool *done);
loader_stats loader_get_stats(const loader *l);
// Stops and joins the workers, whatever they are doing, and frees everything. NULL is fine.
void loader_free(loader *l);

// The order of epoch `epoch`: a permutation of 0..n-1 (Fisher-Yates with Philox) or, without
// shuffle, 0..n-1. order holds n entries.
void loader_epoch_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch, int64_t *order);
// DistributedSampler(shuffle, seed, drop_last=False): the epoch's order (loader_epoch_order) made
// a multiple of world_size long by repeating its start, then every world_size-th entry from
// position rank. The shards are disjoint when world_size divides n and equally long always, so
// that every rank takes the same number of steps; together, batch b of every shard holds the
// samples of batch b of one process reading batch_size * world_size at a time. order holds
// loader_shard_samples(n, world_size) entries.
int64_t loader_shard_samples(int64_t n, int world_size);
void loader_shard_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch, int rank,
                        int world_size, int64_t *order);
// The seed of the generator ({seed, 0}) that sample `index` of epoch `epoch` draws its training
// transform from (augment_sample).
uint64_t loader_sample_seed(uint64_t seed, int64_t epoch, int64_t index);
