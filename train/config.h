// Experiment configs (docs/architecture.md "train/"): one YAML file per run, in the spirit of
// BLIP's and Aurora's configs/*.yaml, parsed with libyaml into a typed struct. Every key has a
// type, a default (or is required) and a range; unknown keys, wrong types, values out of range and
// missing required keys are errors naming the file, the line and the key:
//
//     configs/retrieval_coco.yaml:12: init_lr: expected a number > 0, found 'fast'
//
// `--set key=value` overrides any key (nested ones with dots: petl.rank=16) with the same checks;
// its errors name "--set" instead of a file and line. The effective config (every key, defaults
// included) can be written back as YAML (into the run folder) and as JSON (into checkpoints).
//
//     train_config c;
//     if (train_config_load("configs/synth_retrieval.yaml", sets, n_sets, &c) != PETAL_OK)
//         fprintf(stderr, "%s\n", petal_error_message());
//     ...
//     train_config_free(&c);
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "petl/petl.h"
#include "tensor/error.h"
#include "tensor/precision.h"

typedef enum {
    TRAIN_TASK_RETRIEVAL, // ITC + ITM (train_retrieval.py)
    TRAIN_TASK_VQA,       // answer LM loss (train_vqa.py)
    TRAIN_TASK_CAPTION,   // LM loss with the prompt (train_caption.py)
    TRAIN_TASK_PRETRAIN,  // ITC + ITM + LM on image-text pairs (pretrain.py), from scratch or not
} train_task;

typedef enum {
    TRAIN_SCHEDULE_EPOCH_COSINE, // BLIP's cosine_lr_schedule, set once per epoch
    TRAIN_SCHEDULE_STEP_COSINE,  // linear warmup over warmup_steps, then cosine per step
} train_schedule;

typedef enum { TRAIN_MEDIA_IMAGE, TRAIN_MEDIA_VIDEO } train_media;

typedef enum {
    TRAIN_VIDEO_ITC_AURORA, // vision_proj of the mean over frames of the [CLS]
                            // (CP/blip_retrieval.py)
    TRAIN_VIDEO_ITC_BLIP,   // the mean of the projected frames' [CLS] (eval_retrieval_video.py)
} train_video_itc;

typedef enum {
    TRAIN_DTYPE_F32, // the models' and PETL tensors' usual precision
    TRAIN_DTYPE_F64, // for exactness checks and gradient regression tests
} train_dtype;

typedef enum { TRAIN_VQA_RANK, TRAIN_VQA_GENERATE } train_vqa_inference;

// The architecture of a model built from scratch (pretrained is empty): BLIP's ViT and MED at
// these sizes. Ignored when a checkpoint gives the architecture.
typedef struct {
    int64_t patch, vision_width, vision_depth, vision_heads, vision_mlp;
    int64_t text_hidden, text_layers, text_heads, text_intermediate, max_positions;
    int64_t embed_dim;
} train_arch;

// The petl: block. `methods` is what petl_config_parse takes ("aurora", "cp+ice", "lora", ...),
// or "full" (every backbone parameter trains) or "frozen" (nothing but `extra_trainable`).
// The remaining keys override the preset's options when given (see train_config_petl).
typedef struct {
    char *methods;
    petl_variant variant;
    int64_t rank;
    bool share_decoder;    // petl.share_decoder: the decoder's PETL tensors are the encoder's
    char *extra_trainable; // globs of backbone tensors trained too; NULL: the method's default
    // Per-method overrides, each applied only when its `has_` flag is set (the key was given).
    bool has_cp_dropout, has_cp_scale, has_cp_core, has_cp_sharing, has_cp_plain_cached_kv,
        has_attention_only, has_ice, has_ice_scale, has_gqt, has_lora_alpha, has_lora_dropout,
        has_vera_d_init, has_mcam_tau, has_mcam_weight, has_adapter_scale;
    double cp_dropout, cp_scale; // petl.cp.dropout, petl.cp.scale
    cp_core cp_core_kind;        // petl.cp.core: diagonal | dense
    cp_sharing cp_sharing_scope; // petl.cp.sharing: global | modality | layer
    bool cp_plain_cached_kv;     // petl.cp.plain_cached_kv
    char *cp_targets;            // petl.cp.targets (NULL: the preset's)
    bool attention_only;         // petl.cp.attention_only (deprecated: petl.cp.targets)
    ice_mode ice;                // petl.ice: off | softmax | mean
    double ice_scale;            // petl.ice_scale
    gqt_mode gqt;                // petl.gqt: off | gate | affine
    double lora_alpha, lora_dropout;
    char *lora_targets; // petl.lora.targets (NULL: the preset's)
    double vera_d_init;
    double mcam_tau, mcam_weight;
    double adapter_scale;
} train_petl;

typedef struct {
    char *source; // the file it came from (messages), or "(defaults)"
    train_task task;
    // ---- data ----
    char *data_root;  // base of the relative paths below ("." by default)
    char *image_root; // images, relative to data_root unless absolute
    char *ann_root;   // annotation files, relative to data_root unless absolute
    // Annotation files under ann_root. Defaults by task: retrieval, pretrain and caption read
    // coco_karpathy_{train,val,test}.json; vqa reads vqa_{train,val,test}.json and
    // answer_list.json; caption also coco_karpathy_{val,test}_gt.json.
    char *train_file, *val_file, *test_file;
    char *answer_list;                // vqa
    char *val_gt_file, *test_gt_file; // caption
    char *vocab;          // vocab.txt for a model built from scratch, relative to data_root
    bool skip_bad_images; // log and skip an undecodable image instead of failing
    int64_t num_workers;  // loader threads (default 2)
    int64_t prefetch;     // batches decoded ahead (default 4)
    int64_t max_words;    // pre_caption's word limit (30)
    int64_t text_length;  // token limit of captions / questions (0: BLIP's 35, 30 or 40)
    // ---- video (docs/video.md) ----
    train_media media;          // image (default) | video: what image_root's files are
    int64_t num_frames;         // frames sampled per video in training (8)
    int64_t num_frames_test;    // and in evaluation (16)
    train_video_itc video_itc;  // the video ITC feature: aurora | blip
    bool frame_aware_attention; // Aurora's per-frame key scaling in cross-attention
    bool paragraph;             // retrieval: a video's (image's) captions joined into one text
    int64_t max_pixels;         // the most pixels an image file may have (image_set_max_pixels)
    int64_t video_chunk;        // frames per ViT pass when evaluating (32)
    // ---- model ----
    char *pretrained; // a petal .h5 (never NULL); empty: build from `arch` with fresh weights
    train_arch arch;
    int64_t image_size; // 384 (retrieval, caption), 480 (vqa)
    bool vit_grad_ckpt; // activation checkpointing of the first vit_ckpt_layer ViT blocks
    int64_t vit_ckpt_layer;
    double vit_drop_path; // the ViT's stochastic depth (0; 0.1 in vqa.yaml)
    double text_dropout;  // hidden and attention dropout of the BERTs while training (0.1)
    train_dtype dtype;    // f32 | f64 (arch models only)
    // f32 | tf32 | bf16: the input precision of the GEMMs of training steps and evaluation
    petal_precision precision;
    // cpu | cuda | cuda:N: where the model, its optimizer state and the batches live
    char *device;
    // ---- optimisation ----
    int64_t seed;
    int64_t batch_size_train, batch_size_test;
    double init_lr, min_lr, weight_decay;
    train_schedule lr_schedule; // epoch_cosine (default) | step_cosine
    int64_t warmup_steps;       // step_cosine: linear warmup from 0
    int64_t max_epoch;
    int64_t max_steps;     // stop after this many optimizer steps (0: no limit)
    int64_t grad_accum;    // micro-batches per optimizer step (1)
    double grad_clip;      // max global L2 norm of the trainable gradients (0: off)
    bool decay_1d;         // weight decay on biases, norms and other 1-d tensors too (false)
    int64_t threads;       // PETAL_NUM_THREADS for the run (0: leave as it is)
    bool dist_overlap;     // data parallel: average gradients while the backward pass runs
    double dist_bucket_mb; // and in buckets of this size
    // ---- retrieval / pretrain ----
    int64_t queue_size; // 57600
    double alpha;       // distillation weight, ramped over the first epoch
    int64_t k_test;     // ITM rerank of the k_test best (retrieval); answers ranked (vqa)
    bool negative_all_rank;
    double beta; // rerank score = ITM + beta * ITC cosine (BLIP: 1; released Aurora: 0)
    // ---- vqa ----
    train_vqa_inference inference; // rank (default) | generate
    // ---- caption ----
    char *prompt; // "a picture of "
    int64_t num_beams, max_length, min_length;
    // ---- run ----
    int64_t log_every, eval_every, save_every; // in optimizer steps (0: only at epoch ends)
    train_petl petl;
} train_config;

// Defaults of every key for a task (paths NULL where required, e.g. image_root).
void train_config_defaults(train_task task, train_config *out);
// Reads path, then applies the n `--set key=value` strings in order, then checks the whole
// (required keys present, ranges, cross-key rules). On failure *out is left freed.
petal_status train_config_load(const char *path, const char *const *sets, int n_sets,
                               train_config *out);
// Applies one "key=value" to a loaded config (types and ranges checked; c is unchanged on
// failure). The task cannot change after loading, as the defaults depend on it.
petal_status train_config_set(train_config *c, const char *assignment);
// The whole-config checks train_config_load ends with (required keys, cross-key rules, the petl:
// block), for a config built with train_config_defaults and train_config_set; errors name
// c->source and the key.
petal_status train_config_check(const train_config *c);
void train_config_free(train_config *c);

// The effective config as YAML (every key, in the order of the docs) and as one JSON object
// (embedded in checkpoints). The JSON string is malloc'd.
void train_config_write_yaml(const train_config *c, FILE *out);
char *train_config_to_json(const train_config *c);
// The key reference of docs/config.md: one Markdown table row per key (name, type and range,
// default by task, meaning), in the order of the YAML output.
void train_config_write_schema(FILE *out);
// The tensor dtype of the config's dtype key.
petal_dtype train_config_dtype(const train_config *c);
// The device key's device (checked when the config was loaded).
petal_device train_config_device(const train_config *c);

// A path key resolved against data_root (absolute paths and NULL pass through); malloc'd.
char *train_config_path(const train_config *c, const char *relative);

// The petl_config the petl: block asks for: petl_config_parse(methods, variant, rank), then every
// given override. "full" and "frozen" give petl_config_none() with *full set accordingly.
petal_status train_config_petl(const train_config *c, petl_config *out, bool *full);

const char *train_task_name(train_task t); // "retrieval", "vqa", "caption", "pretrain"
