// Experiment configs. One static table (config_keys) describes every key: its type, where it
// lives in train_config, its range, its defaults by task, and for the petl: overrides the has_
// flag and the petl_config field it replaces. Loading, --set, defaults, the YAML and JSON
// writers, train_config_petl and the key reference of docs/config.md all walk that table.
//
// Values are typed by the key, not by YAML tags or quoting: `rank: 16`, `rank: "16"` and
// `rank: !!str 16` all give 16, and `prompt: 16` gives the string "16". Only a plain (unquoted)
// `~`, `null` or nothing means null, which puts the key back to its default.
#include "train/config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "io/buffer.h"
#include "io/json.h"
#include "io/image.h"

#define TASK_COUNT (TRAIN_TASK_PRETRAIN + 1)

typedef enum { KEY_STRING, KEY_INT, KEY_DOUBLE, KEY_BOOL, KEY_ENUM } key_type;

// An optional field offset; `used` says whether there is one, as offset 0 is a real field.
typedef struct {
    bool used;
    size_t offset;
} field_ref;

typedef struct {
    const char *name; // the path through nested mappings, dotted ("petl.cp.dropout")
    key_type type;
    size_t offset; // of the value in train_config
    // Numbers: the allowed range, an open bound excluded.
    double lo, hi;
    bool lo_open, hi_open;
    bool required;
    bool nonempty;            // strings: "" is refused
    const char *const *names; // enums: the name of each value, NULL-terminated
    // The default as scalar text (NULL: none, so strings stay NULL and overrides unset) and the
    // tasks whose default differs from it.
    const char *def;
    const char *task_def[TASK_COUNT];
    field_ref has;   // petl overrides: the has_ flag in train_config
    field_ref petl;  // petl overrides: the petl_config field they replace
    field_ref needs; // petl overrides: the petl_config bool that must be on for them to act
    const char *doc; // meaning and source of the default (docs/config.md); no '|'
} config_key;

static const char *const task_names[] = {"retrieval", "vqa", "caption", "pretrain", NULL};
static const char *const schedule_names[] = {"epoch_cosine", "step_cosine", NULL};
static const char *const inference_names[] = {"rank", "generate", NULL};
static const char *const dtype_names[] = {"f32", "f64", NULL};
static const char *const precision_names[] = {"f32", "tf32", "bf16", NULL};
static const char *const media_names[] = {"image", "video", NULL};
static const char *const video_itc_names[] = {"aurora", "blip", NULL};
static const char *const variant_names[] = {"paper", "code", NULL};
static const char *const core_names[] = {"diagonal", "dense", NULL};
static const char *const ice_names[] = {"off", "softmax", "mean", NULL};
static const char *const gqt_names[] = {"off", "gate", "affine", NULL};
static const char *const sharing_names[] = {"global", "modality", "layer", NULL};

// The name tables index by enum value, and enums are stored as int.
_Static_assert(TRAIN_TASK_PRETRAIN == 3 && TRAIN_SCHEDULE_STEP_COSINE == 1 &&
                   TRAIN_VQA_GENERATE == 1 && PETL_CODE == 1 && CP_CORE_DENSE == 1 &&
                   ICE_MEAN == 2 && GQT_AFFINE == 2 && CP_SHARE_LAYER == 2 &&
                   PETAL_PRECISION_BF16 == 2,
               "enum order differs from the name tables");
_Static_assert(sizeof(train_task) == sizeof(int) && sizeof(train_schedule) == sizeof(int) &&
                   sizeof(train_vqa_inference) == sizeof(int) &&
                   sizeof(petl_variant) == sizeof(int) && sizeof(cp_core) == sizeof(int) &&
                   sizeof(ice_mode) == sizeof(int) && sizeof(gqt_mode) == sizeof(int) &&
                   sizeof(cp_sharing) == sizeof(int) && sizeof(petal_precision) == sizeof(int),
               "enums are read and written as int");

#define AT(field)       offsetof(train_config, field)
#define AT_LEAST(x)     .lo = (x), .hi = INFINITY
#define ABOVE(x)        .lo = (x), .lo_open = true, .hi = INFINITY
#define FRACTION        .lo = 0, .hi = 1, .hi_open = true
#define ANY_NUMBER      .lo = -INFINITY, .hi = INFINITY
#define BY_TASK(...)    .task_def = {__VA_ARGS__}
#define FOR_VQA(x)      [TRAIN_TASK_VQA] = (x)
#define FOR_CAPTION(x)  [TRAIN_TASK_CAPTION] = (x)
#define FOR_PRETRAIN(x) [TRAIN_TASK_PRETRAIN] = (x)
#define HAS(flag)       .has = {true, offsetof(train_config, petl.flag)}
#define TO_PETL(field)  .petl = {true, offsetof(petl_config, field)}
#define NEEDS(field)    .needs = {true, offsetof(petl_config, field)}
#define ARCH(field, tiny, blip, what)                                                              \
    {                                                                                              \
        "arch." #field, KEY_INT, AT(arch.field), AT_LEAST(1),                                      \
            .def = tiny, .doc = "From scratch: " what " (BLIP-base: " blip ")"                     \
    }

// In the order of train_config, which is the order of the YAML output and of the docs.
static const config_key config_keys[] = {
    {"task", KEY_ENUM, AT(task), .required = true, .names = task_names,
     .doc = "What is trained: retrieval (ITC + ITM, BLIP train_retrieval.py), vqa (train_vqa.py), "
            "caption (train_caption.py) or pretrain (ITC + ITM + LM, pretrain.py). Picks the "
            "defaults of the other keys."},
    {"data_root", KEY_STRING, AT(data_root), .nonempty = true, .def = ".",
     .doc = "Base folder of the relative data paths (image_root, ann_root, vocab)."},
    {"image_root", KEY_STRING, AT(image_root), .required = true, .nonempty = true,
     .doc = "Image folder (BLIP image_root; vqa_root for VQA)."},
    {"ann_root", KEY_STRING, AT(ann_root), .required = true, .nonempty = true,
     .doc = "Annotation folder (BLIP ann_root)."},
    {"train_file", KEY_STRING, AT(train_file), .nonempty = true, .def = "coco_karpathy_train.json",
     BY_TASK(FOR_VQA("vqa_train.json")),
     .doc = "Training annotations under ann_root, in BLIP's coco_karpathy / vqa JSON formats."},
    {"val_file", KEY_STRING, AT(val_file), .nonempty = true, .def = "coco_karpathy_val.json",
     BY_TASK(FOR_VQA("vqa_val.json")), .doc = "Validation annotations under ann_root."},
    {"test_file", KEY_STRING, AT(test_file), .nonempty = true, .def = "coco_karpathy_test.json",
     BY_TASK(FOR_VQA("vqa_test.json")), .doc = "Test annotations under ann_root."},
    {"answer_list", KEY_STRING, AT(answer_list), .nonempty = true,
     BY_TASK(FOR_VQA("answer_list.json")),
     .doc = "VQA: the candidate answers that rank inference scores (BLIP answer_list.json, "
            "3,128 answers), under ann_root."},
    {"val_gt_file", KEY_STRING, AT(val_gt_file), .nonempty = true,
     BY_TASK(FOR_CAPTION("coco_karpathy_val_gt.json")),
     .doc = "Caption: validation references in COCO format (BLIP coco_gt_root), under ann_root."},
    {"test_gt_file", KEY_STRING, AT(test_gt_file), .nonempty = true,
     BY_TASK(FOR_CAPTION("coco_karpathy_test_gt.json")),
     .doc = "Caption: test references in COCO format, under ann_root."},
    {"vocab", KEY_STRING, AT(vocab), .nonempty = true,
     .doc = "WordPiece vocab.txt under data_root for a model built from scratch; required when "
            "pretrained is empty (a checkpoint carries its own)."},
    {"skip_bad_images", KEY_BOOL, AT(skip_bad_images), .def = "false",
     .doc = "Log and skip an image that does not decode instead of stopping."},
    {"num_workers", KEY_INT, AT(num_workers), AT_LEAST(1), .def = "2",
     .doc = "Loader threads decoding and augmenting images."},
    {"prefetch", KEY_INT, AT(prefetch), AT_LEAST(1), .def = "4",
     .doc = "Batches decoded ahead of the training step."},
    {"max_words", KEY_INT, AT(max_words), AT_LEAST(1), .def = "30",
     .doc = "pre_caption's word limit for captions (BLIP datasets: 30)."},
    {"text_length", KEY_INT, AT(text_length), AT_LEAST(0), .def = "0",
     .doc = "Token limit (padding length for retrieval and pretraining) of captions and "
            "questions, [CLS] and [SEP] included; 0: BLIP's (35 retrieval, 30 pretrain, 40 "
            "caption, 35 questions)."},
    {"media", KEY_ENUM, AT(media), .names = media_names, .def = "image",
     .doc = "What image_root holds: image files, or video files of which num_frames frames are "
            "decoded (retrieval and vqa; docs/video.md)."},
    {"num_frames", KEY_INT, AT(num_frames), .lo = 1, .hi = 64, .def = "8",
     .doc = "Video: frames per clip in training, one drawn per equal segment (Aurora: 8)."},
    {"num_frames_test", KEY_INT, AT(num_frames_test), .lo = 1, .hi = 64, .def = "16",
     .doc = "Video: frames per clip in evaluation, the segments' middles (Aurora: 16 for "
            "DiDeMo, 8 for MSR-VTT)."},
    {"video_itc", KEY_ENUM, AT(video_itc), .names = video_itc_names, .def = "aurora",
     .doc =
         "Video ITC feature: aurora (vision_proj of the frames' mean [CLS], CP/blip_retrieval.py) "
         "or blip (the mean of the projected frames, eval_retrieval_video.py); equal up to "
         "rounding, the projection being affine."},
    {"max_pixels", KEY_INT, AT(max_pixels), AT_LEAST(1), .def = "178956970",
     .doc = "The most pixels (width x height) an image file may have; larger ones are refused "
            "before decoding (PIL's decompression-bomb limit)."},
    {"paragraph", KEY_BOOL, AT(paragraph), .def = "false",
     .doc = "Retrieval: all the captions of a video (or image) joined into one text, in file "
            "order, max_words counting the whole (DiDeMo's paragraph-to-video protocol: true)."},
    {"frame_aware_attention", KEY_BOOL, AT(frame_aware_attention), .def = "false",
     .doc =
         "Video retrieval training: Aurora's frame-aware cross-attention (keys of frame t scaled "
         "by T softmax_t(text . frame_t / 4); Aurora's MSR-VTT and DiDeMo configs: true)."},
    {"video_chunk", KEY_INT, AT(video_chunk), .lo = 1, .hi = 4096, .def = "32",
     .doc = "Video evaluation: frames through the ViT per pass (bounds the memory)."},
    {"pretrained", KEY_STRING, AT(pretrained), .def = "",
     .doc = "A petal HDF5 checkpoint to start from (petal convert makes one from BLIP's .pth "
            "files), taken as given (not under data_root). Empty: the model is built from arch "
            "with fresh weights."},
    ARCH(patch, "8", "16", "ViT patch size"),
    ARCH(vision_width, "64", "768", "ViT width"),
    ARCH(vision_depth, "2", "12", "ViT blocks"),
    ARCH(vision_heads, "4", "12", "ViT attention heads"),
    ARCH(vision_mlp, "128", "3072", "ViT MLP width"),
    ARCH(text_hidden, "64", "768", "BERT hidden width"),
    ARCH(text_layers, "2", "12", "BERT layers"),
    ARCH(text_heads, "4", "12", "BERT attention heads"),
    ARCH(text_intermediate, "128", "3072", "BERT feed-forward width"),
    ARCH(max_positions, "64", "512", "BERT position embeddings"),
    ARCH(embed_dim, "32", "256", "ITC projection width"),
    {"image_size", KEY_INT, AT(image_size), .lo = 1, .hi = IMAGE_MAX_MODEL_SIZE, .def = "384",
     BY_TASK(FOR_VQA("480")),
     .doc = "Square input size in pixels, at most 4096 (BLIP: 384 for retrieval and caption, 480 "
            "for VQA; Aurora's VQA: 384)."},
    {"vit_grad_ckpt", KEY_BOOL, AT(vit_grad_ckpt), .def = "false",
     .doc = "Activation checkpointing of the first vit_ckpt_layer ViT blocks while training "
            "(BLIP retrieval configs: true)."},
    {"vit_ckpt_layer", KEY_INT, AT(vit_ckpt_layer), AT_LEAST(0), .def = "0",
     .doc = "How many ViT blocks vit_grad_ckpt checkpoints (BLIP retrieval configs: 4)."},
    {"vit_drop_path", KEY_DOUBLE, AT(vit_drop_path), FRACTION, .def = "0", BY_TASK(FOR_VQA("0.1")),
     .doc = "The ViT's stochastic depth rate at the last block (BLIP blip_vqa.py: 0.1)."},
    {"text_dropout", KEY_DOUBLE, AT(text_dropout), FRACTION, .def = "0.1",
     .doc = "Hidden and attention-probability dropout of the text encoders and decoder while "
            "training (BLIP med_config.json: 0.1); 0 makes a step a deterministic function of its "
            "samples (docs/distributed.md)."},
    {"dtype", KEY_ENUM, AT(dtype), .names = dtype_names, .def = "f32",
     .doc = "Precision of the model, its PETL tensors and the batches: f32, or f64 for "
            "exactness checks (a model built from arch; pretrained files are f32)."},
    {"precision", KEY_ENUM, AT(precision), .names = precision_names, .def = "f32",
     .doc = "Input precision of the f32 matrix products (every GEMM and attention product) in "
            "training steps, forward and backward, and in evaluation: f32; tf32 (inputs rounded "
            "to 10 mantissa bits); bf16 (to 7). Sums, results, weights, softmax, LayerNorm, "
            "losses and AdamW stay f32 (docs/cuda.md \"Mixed precision\"). Needs dtype f32."},
    {"device", KEY_STRING, AT(device), .nonempty = true, .def = "cpu",
     .doc = "Where training and evaluation compute: cpu, cuda (device 0) or cuda:N. The model is "
            "loaded on the CPU, then its parameters, buffers and PETL tensors, the optimizer "
            "state and every batch live on the device (docs/train.md \"Devices\")."},
    {"seed", KEY_INT, AT(seed), AT_LEAST(0), .def = "42",
     .doc = "Seed of every random stream: initialisation, data order, augmentation, dropout "
            "(BLIP's --seed 42)."},
    {"batch_size_train", KEY_INT, AT(batch_size_train), AT_LEAST(1), .def = "32",
     BY_TASK(FOR_VQA("16")),
     .doc = "Training batch per process (BLIP: retrieval and caption 32, VQA 16; Aurora: 16)."},
    {"batch_size_test", KEY_INT, AT(batch_size_test), AT_LEAST(1), .def = "64",
     BY_TASK(FOR_VQA("32"), FOR_CAPTION("32")),
     .doc = "Evaluation batch per process (BLIP: retrieval 64, VQA and caption 32)."},
    {"init_lr", KEY_DOUBLE, AT(init_lr), ABOVE(0), .def = "1e-5",
     BY_TASK(FOR_VQA("2e-5"), FOR_PRETRAIN("1e-4")),
     .doc = "Peak AdamW learning rate (BLIP: retrieval and caption 1e-5, VQA 2e-5; Aurora's "
            "Flickr30k: 1e-4)."},
    {"min_lr", KEY_DOUBLE, AT(min_lr), AT_LEAST(0), .def = "0",
     .doc = "Final learning rate of the cosine; at most init_lr (BLIP: 0)."},
    {"weight_decay", KEY_DOUBLE, AT(weight_decay), AT_LEAST(0), .def = "0.05",
     .doc = "AdamW weight decay (BLIP: 0.05)."},
    {"lr_schedule", KEY_ENUM, AT(lr_schedule), .names = schedule_names, .def = "epoch_cosine",
     .doc = "epoch_cosine: BLIP's cosine_lr_schedule from init_lr to min_lr, set once per epoch; "
            "step_cosine: linear warmup over warmup_steps, then a cosine per optimizer step."},
    {"warmup_steps", KEY_INT, AT(warmup_steps), AT_LEAST(0), .def = "0",
     .doc = "step_cosine's linear warmup from 0, in optimizer steps; at most max_steps when that "
            "is set."},
    {"max_epoch", KEY_INT, AT(max_epoch), AT_LEAST(1), .def = "6",
     BY_TASK(FOR_VQA("10"), FOR_CAPTION("5")),
     .doc = "Epochs (BLIP: retrieval 6, VQA 10, caption 5; Aurora: COCO 6, Flickr30k 4, VQA 5)."},
    {"max_steps", KEY_INT, AT(max_steps), AT_LEAST(0), .def = "0",
     .doc = "Stop after this many optimizer steps (0: no limit)."},
    {"grad_accum", KEY_INT, AT(grad_accum), AT_LEAST(1), .def = "1",
     .doc = "Micro-batches per optimizer step."},
    {"grad_clip", KEY_DOUBLE, AT(grad_clip), AT_LEAST(0), .def = "0",
     .doc = "Largest global L2 norm of the trainable gradients (0: no clipping; BLIP clips "
            "nothing)."},
    {"decay_1d", KEY_BOOL, AT(decay_1d), .def = "false",
     .doc = "Weight decay on biases, norms and other 1-d tensors too. BLIP's AdamW decays every "
            "parameter (true); false follows the usual rule."},
    {"threads", KEY_INT, AT(threads), AT_LEAST(0), .def = "0",
     .doc = "PETAL_NUM_THREADS for the run (0: leave it as it is)."},
    {"dist_overlap", KEY_BOOL, AT(dist_overlap), .def = "true",
     .doc = "Data parallel (docs/distributed.md): average the gradients in buckets while the "
            "step's last backward pass runs, each as soon as it is complete (false: after the "
            "pass). The same numbers either way."},
    {"dist_bucket_mb", KEY_DOUBLE, AT(dist_bucket_mb), .lo = 0.001, .hi = 4096, .def = "1",
     .doc = "Data parallel: the size of a bucket of gradients averaged at once, in MB."},
    {"queue_size", KEY_INT, AT(queue_size), AT_LEAST(1), .def = "57600",
     .doc = "ITC queue length (BLIP: 57600); a multiple of batch_size_train (times the number of "
            "processes)."},
    {"alpha", KEY_DOUBLE, AT(alpha), .lo = 0, .hi = 1, .def = "0.4",
     .doc = "Momentum-distillation weight, ramped up over the first epoch (BLIP: 0.4)."},
    {"k_test", KEY_INT, AT(k_test), AT_LEAST(1), .def = "256", BY_TASK(FOR_VQA("128")),
     .doc = "Retrieval: the best k_test candidates by ITC are reranked with ITM (BLIP COCO 256, "
            "Flickr30k 128). VQA: answers ranked (128)."},
    {"negative_all_rank", KEY_BOOL, AT(negative_all_rank), .def = "false",
     .doc = "Hard negatives mined over the batches of every process (blip_retrieval.py default "
            "false; BLIP's and Aurora's retrieval_coco.yaml: true)."},
    {"beta", KEY_DOUBLE, AT(beta), AT_LEAST(0), .def = "1",
     .doc = "Rerank score = ITM + beta * ITC cosine (BLIP: 1; Aurora's released configs: 0)."},
    {"inference", KEY_ENUM, AT(inference), .names = inference_names, .def = "rank",
     .doc = "VQA answers by ranking answer_list (rank) or by decoding (generate) (BLIP: rank)."},
    {"prompt", KEY_STRING, AT(prompt), .def = "a picture of ",
     .doc = "Caption prefix, masked out of the loss (BLIP: \"a picture of \")."},
    {"num_beams", KEY_INT, AT(num_beams), AT_LEAST(1), .def = "3",
     .doc = "Beam search width (BLIP: 3)."},
    {"max_length", KEY_INT, AT(max_length), AT_LEAST(1), .def = "20", BY_TASK(FOR_VQA("10")),
     .doc = "Longest decoded text in tokens, prompt included (BLIP: caption 20, VQA generate "
            "10)."},
    {"min_length", KEY_INT, AT(min_length), AT_LEAST(0), .def = "5", BY_TASK(FOR_VQA("1")),
     .doc = "Shortest decoded text in tokens, prompt included; at most max_length (BLIP: "
            "caption 5, VQA generate 1)."},
    {"log_every", KEY_INT, AT(log_every), AT_LEAST(0), .def = "50",
     .doc = "Training metrics every this many optimizer steps (0: at epoch ends only)."},
    {"eval_every", KEY_INT, AT(eval_every), AT_LEAST(0), .def = "0",
     .doc = "Validation every this many optimizer steps (0: at epoch ends only)."},
    {"save_every", KEY_INT, AT(save_every), AT_LEAST(0), .def = "0",
     .doc = "A checkpoint every this many optimizer steps (0: at epoch ends only)."},
    {"petl.methods", KEY_STRING, AT(petl.methods), .nonempty = true, .def = "full",
     .doc = "full (every backbone parameter trains), frozen (only extra_trainable trains), or "
            "methods for petl_config_parse: aurora, cp, ice, gqt, lora, vera, unitrans, vcra, "
            "qasn, mcam, adapter, joined with '+'."},
    {"petl.variant", KEY_ENUM, AT(petl.variant), .names = variant_names, .def = "paper",
     .doc = "Where the Aurora paper and its released code differ: paper or code."},
    {"petl.rank", KEY_INT, AT(petl.rank), AT_LEAST(1), .def = "32",
     .doc = "Rank of every method (Aurora's --R default: 32; Table 1 uses 64)."},
    {"petl.share_decoder", KEY_BOOL, AT(petl.share_decoder), TO_PETL(share_decoder), .def = "false",
     .doc = "VQA / VideoQA: the answer decoder's layer i uses the question encoder's layer i PETL "
            "tensors, for every method, as the Aurora paper trains (Video)QA (docs/petl.md)."},
    {"petl.cp.dropout", KEY_DOUBLE, AT(petl.cp_dropout), FRACTION, HAS(has_cp_dropout),
     TO_PETL(cp.dropout), NEEDS(cp.enabled),
     .doc = "CP: dropout on the rank-R vectors (code: 0.1, paper: 0)."},
    {"petl.cp.scale", KEY_DOUBLE, AT(petl.cp_scale), ABOVE(0), HAS(has_cp_scale), TO_PETL(cp.scale),
     NEEDS(cp.enabled), .doc = "CP: the delta's scale s (1)."},
    {"petl.cp.core", KEY_ENUM, AT(petl.cp_core_kind), .names = core_names, HAS(has_cp_core),
     TO_PETL(cp.core), NEEDS(cp.enabled),
     .doc = "CP: the paper's diagonal core or the code's dense R x R x R core."},
    {"petl.cp.attention_only", KEY_BOOL, AT(petl.attention_only), HAS(has_attention_only),
     TO_PETL(cp.attention_only), NEEDS(cp.enabled),
     .doc = "CP: deltas on attention projections only (paper) or on the ViT MLP too (code); "
            "deprecated by petl.cp.targets."},
    {"petl.cp.targets", KEY_STRING, AT(petl.cp_targets), .nonempty = true, TO_PETL(cp.targets),
     NEEDS(cp.enabled),
     .doc = "CP: comma-separated globs of the Linear layers that get deltas (preset: the attention "
            "projections, + the ViT MLP for the code variant)."},
    {"petl.cp.sharing", KEY_ENUM, AT(petl.cp_sharing_scope), .names = sharing_names,
     HAS(has_cp_sharing), TO_PETL(cp.sharing), NEEDS(cp.enabled),
     .doc = "CP: which deltas share one In/Out factor pair: global (Aurora), modality (vision, "
            "text, multimodal, decoder) or layer (one per block)."},
    {"petl.cp.plain_cached_kv", KEY_BOOL, AT(petl.cp_plain_cached_kv), HAS(has_cp_plain_cached_kv),
     TO_PETL(cp.plain_cached_kv), NEEDS(cp.enabled),
     .doc = "CP: a KV-cached generation step computes the decoder's self-attention keys and values "
            "without CP, as the released decoder does (false: CP on every step, docs/petl.md)."},
    {"petl.ice", KEY_ENUM, AT(petl.ice), .names = ice_names, HAS(has_ice), TO_PETL(ice),
     .doc = "Informative context enhancement: off, softmax (paper) or mean (code)."},
    {"petl.ice_scale", KEY_DOUBLE, AT(petl.ice_scale), AT_LEAST(0), HAS(has_ice_scale),
     TO_PETL(ice_scale), .doc = "ICE: weight of the added text context (code: 0.1)."},
    {"petl.gqt", KEY_ENUM, AT(petl.gqt), .names = gqt_names, HAS(has_gqt), TO_PETL(gqt),
     .doc = "Gated query transformation: off, gate (paper) or affine (code)."},
    {"petl.lora.alpha", KEY_DOUBLE, AT(petl.lora_alpha), ABOVE(0), HAS(has_lora_alpha),
     TO_PETL(lora.alpha), NEEDS(lora.enabled),
     .doc = "LoRA: alpha; the delta is scaled by alpha / rank (preset: alpha = rank)."},
    {"petl.lora.dropout", KEY_DOUBLE, AT(petl.lora_dropout), FRACTION, HAS(has_lora_dropout),
     TO_PETL(lora.dropout), NEEDS(lora.enabled), .doc = "LoRA: dropout on the input (0)."},
    {"petl.lora.targets", KEY_STRING, AT(petl.lora_targets), .nonempty = true,
     TO_PETL(lora.targets), NEEDS(lora.enabled),
     .doc = "LoRA: comma-separated globs of the Linear layers that get deltas (preset: attention "
            "projections)."},
    {"petl.vera.d_init", KEY_DOUBLE, AT(petl.vera_d_init), ANY_NUMBER, HAS(has_vera_d_init),
     TO_PETL(vera.d_init), NEEDS(vera.enabled),
     .doc = "VeRA: initial value of lambda_d (peft: 0.1)."},
    {"petl.mcam.tau", KEY_DOUBLE, AT(petl.mcam_tau), ABOVE(0), HAS(has_mcam_tau), TO_PETL(mcam.tau),
     NEEDS(mcam.enabled), .doc = "MCAM: softmax temperature of the rank-consistency loss (0.07)."},
    {"petl.mcam.weight", KEY_DOUBLE, AT(petl.mcam_weight), AT_LEAST(0), HAS(has_mcam_weight),
     TO_PETL(mcam.weight), NEEDS(mcam.enabled), .doc = "MCAM: weight of that loss (1)."},
    {"petl.adapter.scale", KEY_DOUBLE, AT(petl.adapter_scale), ABOVE(0), HAS(has_adapter_scale),
     TO_PETL(adapter.scale), NEEDS(adapter.enabled),
     .doc = "Adapter: scale of the adapter's output (UniAdapter: 0.1)."},
    {"petl.extra_trainable", KEY_STRING, AT(petl.extra_trainable), TO_PETL(extra_trainable),
     .doc = "Comma-separated globs of backbone tensors trained with the method (preset: the "
            "heads, e.g. vision_proj.*,itm_head.* for Aurora's code); \"\" trains none."},
};

#define KEY_COUNT (sizeof config_keys / sizeof config_keys[0])

// ---- values ----

// A parsed scalar, before it is stored.
typedef struct {
    bool null;     // ~, null or nothing: the key's default
    int64_t i;     // KEY_INT; KEY_ENUM: the value's index
    double d;      // KEY_DOUBLE
    bool b;        // KEY_BOOL
    const char *s; // KEY_STRING: the scalar's text (not owned)
} key_value;

static void *key_field(const train_config *c, const config_key *k) {
    return (char *)c + k->offset;
}

static bool key_given(const train_config *c, const config_key *k) {
    if (k->has.used) return *(const bool *)((const char *)c + k->has.offset);
    return k->type != KEY_STRING || *(char *const *)key_field(c, k) != NULL;
}

static const config_key *key_find(const char *name) {
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (strcmp(config_keys[i].name, name) == 0) return &config_keys[i];
    return NULL;
}

// Whether name is a mapping of keys ("petl", "petl.cp", "arch").
static bool key_is_block(const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (strncmp(config_keys[i].name, name, n) == 0 && config_keys[i].name[n] == '.')
            return true;
    return false;
}

static const char *key_default(const config_key *k, train_task task) {
    return k->task_def[task] ? k->task_def[task] : k->def;
}

// "an integer >= 1", "a number in [0, 1)", "one of rank, generate", ...
static void key_describe(const config_key *k, strbuf *b) {
    switch (k->type) {
    case KEY_STRING:
        strbuf_printf(b, k->nonempty ? "a non-empty string" : "a string");
        return;
    case KEY_BOOL:
        strbuf_printf(b, "true or false");
        return;
    case KEY_ENUM:
        strbuf_printf(b, "one of");
        for (int i = 0; k->names[i]; i++) strbuf_printf(b, "%s %s", i ? "," : "", k->names[i]);
        return;
    case KEY_INT:
    case KEY_DOUBLE:
        break;
    }
    strbuf_printf(b, k->type == KEY_INT ? "an integer" : "a number");
    if (isfinite(k->lo) && isfinite(k->hi)) {
        strbuf_printf(b, " in %c%g, %g%c", k->lo_open ? '(' : '[', k->lo, k->hi,
                      k->hi_open ? ')' : ']');
    } else if (isfinite(k->lo)) {
        strbuf_printf(b, " %s %g", k->lo_open ? ">" : ">=", k->lo);
    } else if (isfinite(k->hi)) {
        strbuf_printf(b, " %s %g", k->hi_open ? "<" : "<=", k->hi);
    }
}

// ---- where a value came from ----

// A file line, a --set string, or neither (a default or a whole-config rule: then the file).
typedef struct {
    const char *file;
    size_t line; // 1-based; 0: the file as a whole
    const char *set;
} config_origin;

// Records "FILE:LINE: <message>", "--set key=value: <message>" or "FILE: <message>".
static petal_status origin_error(const config_origin *o, petal_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static petal_status origin_error(const config_origin *o, petal_status status, const char *fmt,
                                 ...) {
    char body[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    if (o->set) return petal_error(status, "--set %s: %s", o->set, body);
    if (o->line) return petal_error(status, "%s:%zu: %s", o->file, o->line, body);
    return petal_error(status, "%s: %s", o->file, body);
}

// "KEY: expected <what the key takes>, found '<text>'".
static petal_status value_error(const config_origin *o, const config_key *k, const char *found) {
    strbuf want = {0};
    key_describe(k, &want);
    petal_status s =
        origin_error(o, PETAL_ERR_ARG, "%s: expected %s, found %s", k->name, want.data, found);
    strbuf_free(&want);
    return s;
}

static petal_status value_error_text(const config_origin *o, const config_key *k,
                                     const char *text) {
    strbuf found = {0};
    strbuf_printf(&found, "'%s'", text);
    petal_status s = value_error(o, k, found.data);
    strbuf_free(&found);
    return s;
}

// ---- scalar parsing, typed by the key ----

static bool parse_int(const char *text, int64_t *out) {
    const char *p = text + (*text == '+' || *text == '-');
    if (!*p || strspn(p, "0123456789") != strlen(p)) return false;
    errno = 0;
    long long v = strtoll(text, NULL, 10);
    *out = v;
    return errno == 0;
}

// Decimal notation only: no hex floats, inf or nan, so the value is finite.
static bool parse_double(const char *text, double *out) {
    if (!*text || strspn(text, "0123456789+-.eE") != strlen(text) ||
        strpbrk(text, "0123456789") == NULL)
        return false;
    char *end;
    errno = 0;
    *out = strtod(text, &end);
    return *end == '\0' && isfinite(*out) && errno != ERANGE;
}

// true/false, and YAML 1.1's yes/no and on/off, each lower-case, capitalised or upper-case.
static bool parse_bool(const char *text, bool *out) {
    static const char *const truths[] = {"true", "True", "TRUE", "yes", "Yes",
                                         "YES",  "on",   "On",   "ON",  NULL};
    static const char *const lies[] = {"false", "False", "FALSE", "no",  "No",
                                       "NO",    "off",   "Off",   "OFF", NULL};
    for (int i = 0; truths[i]; i++) {
        if (strcmp(text, truths[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcmp(text, lies[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool parse_enum(const config_key *k, const char *text, int64_t *out) {
    for (int i = 0; k->names[i]; i++) {
        if (strcmp(text, k->names[i]) == 0) {
            *out = i;
            return true;
        }
    }
    return false;
}

static bool in_range(const config_key *k, double x) {
    return (k->lo_open ? x > k->lo : x >= k->lo) && (k->hi_open ? x < k->hi : x <= k->hi);
}

static bool is_null(const char *text) {
    return !*text || !strcmp(text, "~") || !strcmp(text, "null") || !strcmp(text, "Null") ||
           !strcmp(text, "NULL");
}

// Parses `text` (plain: an unquoted YAML scalar, which may spell null) as a value of key k.
static petal_status value_parse(const config_key *k, const char *text, bool plain,
                                const config_origin *o, key_value *v) {
    *v = (key_value){0};
    if (plain && is_null(text)) {
        if (k->required) return value_error_text(o, k, text);
        v->null = true;
        return PETAL_OK;
    }
    bool ok = false;
    switch (k->type) {
    case KEY_STRING:
        v->s = text;
        ok = !k->nonempty || *text;
        break;
    case KEY_INT:
        ok = parse_int(text, &v->i) && in_range(k, (double)v->i);
        break;
    case KEY_DOUBLE:
        ok = parse_double(text, &v->d) && in_range(k, v->d);
        break;
    case KEY_BOOL:
        ok = parse_bool(text, &v->b);
        break;
    case KEY_ENUM:
        ok = parse_enum(k, text, &v->i);
        break;
    }
    return ok ? PETAL_OK : value_error_text(o, k, text);
}

static size_t key_size(key_type t) {
    switch (t) {
    case KEY_STRING:
        return sizeof(char *);
    case KEY_INT:
        return sizeof(int64_t);
    case KEY_DOUBLE:
        return sizeof(double);
    case KEY_BOOL:
        return sizeof(bool);
    case KEY_ENUM:
        return sizeof(int);
    }
    PETAL_CHECK(false, "key_size: unknown key type %d", (int)t);
}

static void key_set_has(train_config *c, const config_key *k, bool given) {
    if (k->has.used) *(bool *)((char *)c + k->has.offset) = given;
}

static void key_reset(train_config *c, const config_key *k);

// Stores v into c (a null puts the key back to its default).
static void value_store(train_config *c, const config_key *k, const key_value *v) {
    if (v->null) {
        key_reset(c, k);
        return;
    }
    void *field = key_field(c, k);
    int e = (int)v->i;
    char *s = NULL;
    switch (k->type) {
    case KEY_STRING:
        free(*(char **)field);
        s = strdup(v->s);
        PETAL_CHECK(s != NULL, "train_config: out of host memory");
        memcpy(field, &s, sizeof s);
        break;
    case KEY_INT:
        memcpy(field, &v->i, sizeof v->i);
        break;
    case KEY_DOUBLE:
        memcpy(field, &v->d, sizeof v->d);
        break;
    case KEY_BOOL:
        memcpy(field, &v->b, sizeof v->b);
        break;
    case KEY_ENUM:
        memcpy(field, &e, sizeof e);
        break;
    }
    key_set_has(c, k, true);
}

// The key's default for c's task; without one, strings become NULL and overrides unset.
static void key_reset(train_config *c, const config_key *k) {
    const char *text = key_default(k, c->task);
    if (!text) {
        if (k->type == KEY_STRING) {
            free(*(char **)key_field(c, k));
            *(char **)key_field(c, k) = NULL;
        }
        key_set_has(c, k, false);
        return;
    }
    key_value v;
    config_origin o = {.file = "train_config_defaults"};
    PETAL_CHECK(value_parse(k, text, false, &o, &v) == PETAL_OK, "bad default: %s",
                petal_error_message());
    value_store(c, k, &v);
    key_set_has(c, k, false); // a default is not a given override
}

// ---- defaults, free, paths, names ----

const char *train_task_name(train_task t) {
    PETAL_CHECK(t >= 0 && t < TASK_COUNT, "train_task_name: bad task %d", (int)t);
    return task_names[t];
}

void train_config_defaults(train_task task, train_config *out) {
    PETAL_CHECK(task >= 0 && task < TASK_COUNT, "train_config_defaults: bad task %d", (int)task);
    memset(out, 0, sizeof *out);
    out->task = task;
    out->source = strdup("(defaults)");
    PETAL_CHECK(out->source != NULL, "train_config: out of host memory");
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (!config_keys[i].required) key_reset(out, &config_keys[i]);
}

void train_config_free(train_config *c) {
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (config_keys[i].type == KEY_STRING) free(*(char **)key_field(c, &config_keys[i]));
    free(c->source);
    memset(c, 0, sizeof *c);
}

char *train_config_path(const train_config *c, const char *relative) {
    if (!relative) return NULL;
    strbuf b = {0};
    if (relative[0] == '/') {
        strbuf_printf(&b, "%s", relative);
    } else {
        size_t n = strlen(c->data_root);
        bool slash = n && c->data_root[n - 1] == '/';
        strbuf_printf(&b, "%s%s%s", c->data_root, slash ? "" : "/", relative);
    }
    return strbuf_take(&b);
}

// ---- unknown keys: the closest known name ----

#define SUGGEST_MAX 64

static size_t edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b), row[SUGGEST_MAX + 1];
    for (size_t j = 0; j <= m; j++) row[j] = j;
    for (size_t i = 1; i <= n; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[m];
}

static const char *leaf(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot ? dot + 1 : name;
}

// A misspelt key, or a right key in the wrong block ("rank" for "petl.rank", one edit away).
static size_t key_distance(const char *unknown, const char *known) {
    size_t whole = edit_distance(unknown, known);
    size_t moved = edit_distance(leaf(unknown), leaf(known)) + 1;
    return whole < moved ? whole : moved;
}

// Keeps the first len bytes of key as *best when they are closer to name than *best_d.
static void suggest_consider(const char *name, const char *key, size_t len, char *best,
                             size_t *best_d) {
    char candidate[SUGGEST_MAX + 1];
    snprintf(candidate, sizeof candidate, "%.*s", (int)len, key);
    size_t d = key_distance(name, candidate);
    if (d < *best_d) {
        *best_d = d;
        memcpy(best, candidate, sizeof candidate);
    }
}

// Records "unknown key 'NAME'", naming the closest key or block when it is a few edits away.
static petal_status unknown_key(const config_origin *o, const char *name) {
    char best[SUGGEST_MAX + 1] = "";
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < KEY_COUNT && strlen(name) <= SUGGEST_MAX; i++) {
        const char *k = config_keys[i].name;
        suggest_consider(name, k, strlen(k), best, &best_d);
        for (const char *dot = strchr(k, '.'); dot; dot = strchr(dot + 1, '.'))
            suggest_consider(name, k, (size_t)(dot - k), best, &best_d);
    }
    size_t limit = strlen(leaf(name)) < 6 ? 2 : 3;
    if (best_d <= limit)
        return origin_error(o, PETAL_ERR_KEY, "unknown key '%s' (did you mean '%s'?)", name, best);
    return origin_error(o, PETAL_ERR_KEY, "unknown key '%s' (docs/config.md lists the keys)", name);
}

// ---- YAML documents ----

static const char *node_kind(const yaml_node_t *n) {
    return n->type == YAML_SEQUENCE_NODE ? "a sequence" : "a mapping";
}

// The origin of something at a libyaml mark: its line in a file; a --set keeps its string.
static config_origin origin_at(const config_origin *o, size_t line0) {
    config_origin at = *o;
    if (!at.set) at.line = line0 + 1;
    return at;
}

// "YAML syntax error: <problem> (<context>)" at the problem's line. Reader errors (bad UTF-8)
// carry a byte offset instead of a mark.
static petal_status syntax_error(const yaml_parser_t *p, const char *text, size_t len,
                                 const config_origin *o) {
    if (p->error == YAML_MEMORY_ERROR)
        return petal_error(PETAL_ERR_MEMORY, "libyaml: out of memory");
    size_t line0 = p->problem_mark.line;
    if (p->error == YAML_READER_ERROR) {
        line0 = 0;
        for (size_t i = 0; i < p->problem_offset && i < len; i++) line0 += text[i] == '\n';
    }
    config_origin at = origin_at(o, line0);
    const char *hint =
        o->set ? "; a value that YAML reads as syntax needs quotes: key='*.qkv'" : "";
    if (p->context)
        return origin_error(&at, PETAL_ERR_FORMAT, "YAML syntax error: %s (%s on line %zu)%s",
                            p->problem, p->context, p->context_mark.line + 1, hint);
    return origin_error(&at, PETAL_ERR_FORMAT, "YAML syntax error: %s%s", p->problem, hint);
}

// Loads the one document of `text` (a file's bytes or a --set value) into *doc, which the
// caller deletes on success; *root is NULL when the text holds no document.
static petal_status document_load(const char *text, size_t len, const config_origin *o,
                                  yaml_document_t *doc, yaml_node_t **root) {
    yaml_parser_t p;
    PETAL_CHECK(yaml_parser_initialize(&p), "libyaml: out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    if (!yaml_parser_load(&p, doc)) {
        petal_status s = syntax_error(&p, text, len, o);
        yaml_parser_delete(&p);
        return s;
    }
    *root = yaml_document_get_root_node(doc);
    petal_status s = PETAL_OK;
    yaml_document_t next;
    if (*root && !yaml_parser_load(&p, &next)) {
        s = syntax_error(&p, text, len, o);
    } else if (*root) {
        yaml_node_t *second = yaml_document_get_root_node(&next);
        if (second) {
            config_origin at = origin_at(o, second->start_mark.line);
            s = origin_error(&at, PETAL_ERR_FORMAT, "expected one YAML document, found a second");
        }
        yaml_document_delete(&next);
    }
    if (s) yaml_document_delete(doc);
    yaml_parser_delete(&p);
    return s;
}

// A scalar node's value for key k.
static petal_status node_value(const config_key *k, const yaml_node_t *n, const config_origin *o,
                               key_value *v) {
    if (n->type != YAML_SCALAR_NODE) return value_error(o, k, node_kind(n));
    const char *text = (const char *)n->data.scalar.value;
    if (strlen(text) != n->data.scalar.length)
        return value_error(o, k, "a string with a NUL character");
    return value_parse(k, text, n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, o, v);
}

// ---- loading a file ----

typedef struct {
    train_config *c;
    config_origin *origins; // where each key's value came from, by index in config_keys
    const char *file;
    yaml_document_t *doc;
} file_walk;

static const config_key *const task_key = &config_keys[0];

// Stores one key's value. The task was settled before the walk (the defaults depend on it), so
// it is only checked here.
static petal_status walk_value(file_walk *w, const config_key *k, const yaml_node_t *value) {
    config_origin o = {.file = w->file, .line = value->start_mark.line + 1};
    key_value v;
    petal_status s = node_value(k, value, &o, &v);
    if (s) return s;
    if (k != task_key) value_store(w->c, k, &v);
    w->origins[k - config_keys] = o;
    return PETAL_OK;
}

static petal_status walk_mapping(file_walk *w, const yaml_node_t *map, const char *prefix);

// A block ("petl:"): a mapping of its keys, or null for none.
static petal_status walk_block(file_walk *w, const char *name, const yaml_node_t *value) {
    if (value->type == YAML_MAPPING_NODE) return walk_mapping(w, value, name);
    config_origin o = {.file = w->file, .line = value->start_mark.line + 1};
    if (value->type == YAML_SEQUENCE_NODE)
        return origin_error(&o, PETAL_ERR_ARG, "%s: expected a mapping of %s.* keys, found %s",
                            name, name, node_kind(value));
    const char *text = (const char *)value->data.scalar.value;
    if (value->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && is_null(text)) return PETAL_OK;
    return origin_error(&o, PETAL_ERR_ARG, "%s: expected a mapping of %s.* keys, found '%s'", name,
                        name, text);
}

// The line of an earlier key of `map` spelt like key `at`'s, or 0.
static size_t duplicate_line(const file_walk *w, const yaml_node_t *map,
                             const yaml_node_pair_t *at) {
    const char *name = (const char *)yaml_document_get_node(w->doc, at->key)->data.scalar.value;
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < at; p++) {
        const yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
        if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, name) == 0)
            return k->start_mark.line + 1;
    }
    return 0;
}

static petal_status walk_pair(file_walk *w, const yaml_node_t *map, const yaml_node_pair_t *p,
                              const char *prefix) {
    const yaml_node_t *key = yaml_document_get_node(w->doc, p->key);
    const yaml_node_t *value = yaml_document_get_node(w->doc, p->value);
    config_origin o = {.file = w->file, .line = key->start_mark.line + 1};
    if (key->type != YAML_SCALAR_NODE)
        return origin_error(&o, PETAL_ERR_KEY, "expected a key name, found %s", node_kind(key));
    strbuf name = {0};
    strbuf_printf(&name, "%s%s%s", prefix, *prefix ? "." : "", key->data.scalar.value);
    const config_key *k = key_find(name.data);
    size_t first = duplicate_line(w, map, p);
    petal_status s;
    if (first)
        s = origin_error(&o, PETAL_ERR_KEY, "%s: duplicate key (first given on line %zu)",
                         name.data, first);
    else if (k)
        s = walk_value(w, k, value);
    else if (key_is_block(name.data))
        s = walk_block(w, name.data, value);
    else
        s = unknown_key(&o, name.data);
    strbuf_free(&name);
    return s;
}

static petal_status walk_mapping(file_walk *w, const yaml_node_t *map, const char *prefix) {
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        petal_status s = walk_pair(w, map, p, prefix);
        if (s) return s;
    }
    return PETAL_OK;
}

// ---- --set key=value ----

// Splits "key=value" and parses the value as a YAML scalar. On success the value's text lives
// in *doc, which the caller deletes.
static petal_status set_parse(const char *assignment, yaml_document_t *doc, const config_key **key,
                              key_value *v) {
    config_origin o = {.set = assignment};
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return origin_error(&o, PETAL_ERR_ARG, "expected key=value (e.g. petl.rank=16)");
    strbuf name = {0};
    strbuf_append(&name, assignment, (size_t)(eq - assignment));
    *key = key_find(name.data);
    petal_status s = PETAL_OK;
    if (!*key && key_is_block(name.data))
        s = origin_error(&o, PETAL_ERR_KEY, "%s is a block of keys: set one of them (%s.<key>)",
                         name.data, name.data);
    else if (!*key)
        s = unknown_key(&o, name.data);
    strbuf_free(&name);
    if (s) return s;
    yaml_node_t *root;
    s = document_load(eq + 1, strlen(eq + 1), &o, doc, &root);
    if (s) return s;
    s = root ? node_value(*key, root, &o, v) : value_parse(*key, "", true, &o, v);
    if (s) yaml_document_delete(doc);
    return s;
}

// Applies one --set. While loading, the task is already settled from every source, so it is
// only checked; afterwards it may not change.
static petal_status set_apply(train_config *c, const char *assignment, config_origin *origins,
                              bool loading) {
    yaml_document_t doc;
    const config_key *k;
    key_value v;
    petal_status s = set_parse(assignment, &doc, &k, &v);
    if (s) return s;
    config_origin o = {.set = assignment};
    if (k == task_key && !loading && v.i != (int64_t)c->task)
        s = origin_error(&o, PETAL_ERR_ARG,
                         "task: cannot change from %s to %s after loading, as the defaults depend "
                         "on it: give it in the file or to train_config_load",
                         task_names[c->task], task_names[v.i]);
    else if (k != task_key)
        value_store(c, k, &v);
    if (!s && origins) origins[k - config_keys] = o;
    yaml_document_delete(&doc);
    return s;
}

// The task from the file's top-level `task:` and the sets (the last one given wins).
static petal_status task_settle(const file_walk *w, const yaml_node_t *root,
                                const char *const *sets, int n_sets, train_task *task) {
    bool found = false;
    key_value v = {0};
    for (const yaml_node_pair_t *p = root->data.mapping.pairs.start;
         p < root->data.mapping.pairs.top && !found; p++) {
        const yaml_node_t *key = yaml_document_get_node(w->doc, p->key);
        if (key->type != YAML_SCALAR_NODE || strcmp((const char *)key->data.scalar.value, "task"))
            continue;
        const yaml_node_t *value = yaml_document_get_node(w->doc, p->value);
        config_origin o = {.file = w->file, .line = value->start_mark.line + 1};
        petal_status s = node_value(task_key, value, &o, &v);
        if (s) return s;
        found = true;
    }
    for (int i = 0; i < n_sets; i++) {
        yaml_document_t doc;
        const config_key *k;
        key_value sv;
        petal_status s = set_parse(sets[i], &doc, &k, &sv);
        if (s) return s;
        yaml_document_delete(&doc);
        if (k == task_key) v = sv, found = true;
    }
    if (!found)
        return petal_error(PETAL_ERR_KEY,
                           "%s: missing required key 'task' (retrieval, vqa, caption or pretrain)",
                           w->file);
    *task = (train_task)v.i;
    return PETAL_OK;
}

static petal_status config_check(const train_config *c, const config_origin *origins);

static petal_status load_document(const char *path, yaml_document_t *doc, const yaml_node_t *root,
                                  const char *const *sets, int n_sets, train_config *out) {
    config_origin whole = {.file = path};
    if (!root)
        return origin_error(&whole, PETAL_ERR_FORMAT,
                            "empty file: expected a mapping of config keys (docs/config.md)");
    if (root->type != YAML_MAPPING_NODE) {
        config_origin at = origin_at(&whole, root->start_mark.line);
        if (root->type == YAML_SCALAR_NODE)
            return origin_error(&at, PETAL_ERR_FORMAT,
                                "expected a mapping of config keys, found '%s'",
                                root->data.scalar.value);
        return origin_error(&at, PETAL_ERR_FORMAT, "expected a mapping of config keys, found %s",
                            node_kind(root));
    }
    config_origin origins[KEY_COUNT];
    for (size_t i = 0; i < KEY_COUNT; i++) origins[i] = whole;
    file_walk w = {out, origins, path, doc};
    train_task task = TRAIN_TASK_RETRIEVAL;
    petal_status s = task_settle(&w, root, sets, n_sets, &task);
    if (s) return s;
    train_config_defaults(task, out);
    free(out->source);
    out->source = strdup(path);
    PETAL_CHECK(out->source != NULL, "train_config: out of host memory");
    s = walk_mapping(&w, root, "");
    for (int i = 0; i < n_sets && !s; i++) s = set_apply(out, sets[i], origins, true);
    return s ? s : config_check(out, origins);
}

petal_status train_config_load(const char *path, const char *const *sets, int n_sets,
                               train_config *out) {
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    petal_status s = buffer_read_file(path, &text, &len);
    if (s) return s;
    config_origin whole = {.file = path};
    yaml_document_t doc;
    yaml_node_t *root;
    s = document_load(text, len, &whole, &doc, &root);
    free(text);
    if (s) return s;
    s = load_document(path, &doc, root, sets, n_sets, out);
    yaml_document_delete(&doc);
    if (s) train_config_free(out);
    return s;
}

petal_status train_config_set(train_config *c, const char *assignment) {
    return set_apply(c, assignment, NULL, false);
}

// ---- whole-config checks ----

// The shortest of %.15g, %.16g and %.17g that reads back as x.
static const char *double_text(double x, char *buf, size_t size) {
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, size, "%.*g", digits, x);
        if (strtod(buf, NULL) == x) break;
    }
    return buf;
}

static size_t key_index(const char *name) {
    const config_key *k = key_find(name);
    PETAL_CHECK(k != NULL, "key_index: no key '%s'", name);
    return (size_t)(k - config_keys);
}

// Records "<where>: KEY: <message>" for a rule between key and `other` (NULL: none), at the
// line or --set that gave key, or else the one that gave other.
static petal_status rule_error(const train_config *c, const config_origin *origins, const char *key,
                               const char *other, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static petal_status rule_error(const train_config *c, const config_origin *origins, const char *key,
                               const char *other, const char *fmt, ...) {
    config_origin o = {.file = c->source};
    if (origins) {
        o = origins[key_index(key)];
        if (!o.line && !o.set && other) o = origins[key_index(other)];
    }
    char body[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    return origin_error(&o, PETAL_ERR_ARG, "%s: %s", key, body);
}

static petal_status check_required(const train_config *c) {
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const config_key *k = &config_keys[i];
        if (k->required && k->type == KEY_STRING && !*(char *const *)key_field(c, k))
            return petal_error(PETAL_ERR_KEY, "%s: missing required key '%s'", c->source, k->name);
    }
    if (!*c->pretrained && !c->vocab)
        return petal_error(PETAL_ERR_KEY,
                           "%s: missing required key 'vocab' (pretrained is empty, so the model is "
                           "built from arch and needs a vocabulary)",
                           c->source);
    return PETAL_OK;
}

// The architecture is known only when the model is built from scratch.
static petal_status check_arch(const train_config *c, const config_origin *origins) {
    const train_arch *a = &c->arch;
    if (a->vision_width % a->vision_heads)
        return rule_error(c, origins, "arch.vision_heads", "arch.vision_width",
                          "expected a divisor of arch.vision_width (%lld), found '%lld'",
                          (long long)a->vision_width, (long long)a->vision_heads);
    if (a->text_hidden % a->text_heads)
        return rule_error(c, origins, "arch.text_heads", "arch.text_hidden",
                          "expected a divisor of arch.text_hidden (%lld), found '%lld'",
                          (long long)a->text_hidden, (long long)a->text_heads);
    if (c->image_size % a->patch)
        return rule_error(c, origins, "image_size", "arch.patch",
                          "expected a multiple of arch.patch (%lld), found '%lld'",
                          (long long)a->patch, (long long)c->image_size);
    if (c->vit_grad_ckpt && c->vit_ckpt_layer > a->vision_depth)
        return rule_error(c, origins, "vit_ckpt_layer", "arch.vision_depth",
                          "expected at most arch.vision_depth (%lld), found '%lld'",
                          (long long)a->vision_depth, (long long)c->vit_ckpt_layer);
    return PETAL_OK;
}

static petal_status check_rules(const train_config *c, const config_origin *origins) {
    char a[32], b[32];
    if (c->min_lr > c->init_lr)
        return rule_error(
            c, origins, "min_lr", "init_lr", "expected at most init_lr (%s), found '%s'",
            double_text(c->init_lr, a, sizeof a), double_text(c->min_lr, b, sizeof b));
    if (c->min_length > c->max_length)
        return rule_error(c, origins, "min_length", "max_length",
                          "expected at most max_length (%lld), found '%lld'",
                          (long long)c->max_length, (long long)c->min_length);
    if (c->lr_schedule == TRAIN_SCHEDULE_STEP_COSINE && c->max_steps > 0 &&
        c->warmup_steps > c->max_steps)
        return rule_error(c, origins, "warmup_steps", "max_steps",
                          "expected at most max_steps (%lld), found '%lld'",
                          (long long)c->max_steps, (long long)c->warmup_steps);
    // blip_retrieval.py asserts it when it enqueues a gathered batch.
    bool queued = c->task == TRAIN_TASK_RETRIEVAL || c->task == TRAIN_TASK_PRETRAIN;
    if (queued && c->queue_size % c->batch_size_train)
        return rule_error(c, origins, "queue_size", "batch_size_train",
                          "expected a multiple of batch_size_train (%lld), found '%lld'",
                          (long long)c->batch_size_train, (long long)c->queue_size);
    if (c->media == TRAIN_MEDIA_VIDEO && c->task != TRAIN_TASK_RETRIEVAL &&
        c->task != TRAIN_TASK_VQA)
        return rule_error(c, origins, "media", "task",
                          "video needs task retrieval or vqa, found task '%s'",
                          train_task_name(c->task));
    if (c->paragraph && c->task != TRAIN_TASK_RETRIEVAL)
        return rule_error(c, origins, "paragraph", "task",
                          "paragraphs need task retrieval, found task '%s'",
                          train_task_name(c->task));
    if (c->dtype == TRAIN_DTYPE_F64 && c->precision != PETAL_PRECISION_F32)
        return rule_error(c, origins, "precision", "dtype",
                          "%s rounds the inputs of f32 products; dtype f64 has none, found "
                          "dtype 'f64'",
                          precision_name(c->precision));
    if (c->dtype == TRAIN_DTYPE_F64 && *c->pretrained)
        return rule_error(c, origins, "dtype", "pretrained",
                          "f64 needs a model built from arch (pretrained files are f32), found "
                          "pretrained '%s'",
                          c->pretrained);
    petal_device device;
    if (device_parse(c->device, &device))
        return rule_error(c, origins, "device", NULL, "%s", petal_error_message());
    return *c->pretrained ? PETAL_OK : check_arch(c, origins);
}

// The petl_config of c's petl: block; errors name the key at fault and where it was given.
static petal_status petl_resolve(const train_config *c, const config_origin *origins,
                                 petl_config *out, bool *full) {
    const char *methods = c->petl.methods;
    bool whole = strcmp(methods, "full") == 0;
    petl_config p = petl_config_none();
    if (!whole && strcmp(methods, "frozen") != 0 &&
        petl_config_parse(methods, c->petl.variant, c->petl.rank, &p) != PETAL_OK) {
        char why[2048];
        snprintf(why, sizeof why, "%s", petal_error_message());
        return rule_error(c, origins, "petl.methods", NULL, "%s", why);
    }
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const config_key *k = &config_keys[i];
        if (!k->petl.used || !key_given(c, k)) continue;
        if (k->needs.used && !*(const bool *)((const char *)&p + k->needs.offset)) {
            const char *method = strchr(k->name, '.') + 1;
            return rule_error(c, origins, k->name, NULL, "given, but petl.methods '%s' has no %.*s",
                              methods, (int)(strchr(method, '.') - method), method);
        }
        memcpy((char *)&p + k->petl.offset, key_field(c, k), key_size(k->type));
    }
    if (whole && p.share_decoder)
        return rule_error(c, origins, "petl.share_decoder", NULL,
                          "true, but petl.methods 'full' trains every parameter: there are no "
                          "PETL tensors to share");
    p.seed = (uint64_t)c->seed;
    *out = p;
    *full = whole;
    return PETAL_OK;
}

static petal_status config_check(const train_config *c, const config_origin *origins) {
    petal_status s = check_required(c);
    if (!s) s = check_rules(c, origins);
    petl_config p;
    bool full;
    return s ? s : petl_resolve(c, origins, &p, &full);
}

petal_status train_config_check(const train_config *c) {
    return config_check(c, NULL);
}

petal_status train_config_petl(const train_config *c, petl_config *out, bool *full) {
    return petl_resolve(c, NULL, out, full);
}

// ---- YAML and JSON output ----

typedef enum { STYLE_YAML, STYLE_JSON } emit_style;

#define EMIT_DEPTH 4

// Writes keys in table order, opening and closing the nested blocks between them.
typedef struct {
    emit_style style;
    strbuf out;
    char block[SUGGEST_MAX + 1]; // the open block ("petl.cp"); "" at the top level
    int depth;
    bool first[EMIT_DEPTH]; // JSON: nothing written yet at this depth
} emitter;

static void emit_indent(emitter *e, int depth) {
    for (int i = 0; i < depth + (e->style == STYLE_JSON); i++) strbuf_printf(&e->out, "  ");
}

// JSON members after the first take a comma.
static void emit_member_start(emitter *e) {
    if (e->style == STYLE_JSON) {
        strbuf_printf(&e->out, "%s\n", e->first[e->depth] ? "" : ",");
        e->first[e->depth] = false;
    }
    emit_indent(e, e->depth);
}

static void emit_open(emitter *e, const char *name, size_t len) {
    emit_member_start(e);
    size_t from = *e->block ? strlen(e->block) + 1 : 0;
    if (e->style == STYLE_JSON)
        strbuf_printf(&e->out, "\"%.*s\": {", (int)(len - from), name + from);
    else
        strbuf_printf(&e->out, "%.*s:\n", (int)(len - from), name + from);
    snprintf(e->block, sizeof e->block, "%.*s", (int)len, name);
    PETAL_CHECK(++e->depth < EMIT_DEPTH, "emit_open: blocks nest deeper than %d", EMIT_DEPTH);
    e->first[e->depth] = true;
}

static void emit_close(emitter *e) {
    e->depth--;
    if (e->style == STYLE_JSON) {
        strbuf_printf(&e->out, "\n");
        emit_indent(e, e->depth);
        strbuf_printf(&e->out, "}");
    }
    char *dot = strrchr(e->block, '.');
    *(dot ? dot : e->block) = '\0';
}

// Whether the open block holds (or is) the block of key `name`, whose block is len bytes long.
static bool emit_block_holds(const emitter *e, const char *name, size_t len) {
    size_t n = strlen(e->block);
    return n == 0 || (n <= len && strncmp(e->block, name, n) == 0 && name[n] == '.');
}

// Opens the blocks of `name` and starts its member line; returns its leaf name.
static const char *emit_key(emitter *e, const char *name) {
    const char *l = leaf(name);
    size_t len = l == name ? 0 : (size_t)(l - name - 1);
    while (!emit_block_holds(e, name, len)) emit_close(e);
    while (strlen(e->block) < len) {
        const char *end = strchr(name + (*e->block ? strlen(e->block) + 1 : 0), '.');
        emit_open(e, name, (size_t)(end - name));
    }
    emit_member_start(e);
    return l;
}

static void write_value(strbuf *b, const train_config *c, const config_key *k, emit_style style) {
    const void *field = key_field(c, k);
    const char *null = style == STYLE_JSON ? "null" : "~";
    char num[32];
    if (k->has.used && !key_given(c, k)) {
        strbuf_printf(b, "%s", null);
        return;
    }
    switch (k->type) {
    case KEY_STRING:
        if (*(char *const *)field)
            json_write_string(b, *(char *const *)field);
        else
            strbuf_printf(b, "%s", null);
        return;
    case KEY_INT:
        strbuf_printf(b, "%lld", (long long)*(const int64_t *)field);
        return;
    case KEY_DOUBLE:
        strbuf_printf(b, "%s", double_text(*(const double *)field, num, sizeof num));
        return;
    case KEY_BOOL:
        strbuf_printf(b, "%s", *(const bool *)field ? "true" : "false");
        return;
    case KEY_ENUM:
        strbuf_printf(b, style == STYLE_JSON ? "\"%s\"" : "%s", k->names[*(const int *)field]);
        return;
    }
}

// Every key of c; JSON leaves out the petl overrides that were not given.
static char *config_emit(const train_config *c, emit_style style) {
    emitter e = {.style = style, .first = {true}};
    strbuf_printf(&e.out, style == STYLE_JSON ? "{"
                                              : "# Every key with its effective value, defaults "
                                                "included (docs/config.md).\n");
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const config_key *k = &config_keys[i];
        if (style == STYLE_JSON && k->petl.used && !key_given(c, k)) continue;
        const char *name = emit_key(&e, k->name);
        if (style == STYLE_JSON)
            strbuf_printf(&e.out, "\"%s\": ", name);
        else
            strbuf_printf(&e.out, "%s: ", name);
        write_value(&e.out, c, k, style);
        if (style == STYLE_YAML) strbuf_printf(&e.out, "\n");
    }
    while (*e.block) emit_close(&e);
    if (style == STYLE_JSON) strbuf_printf(&e.out, "\n}");
    return strbuf_take(&e.out);
}

void train_config_write_yaml(const train_config *c, FILE *out) {
    char *text = config_emit(c, STYLE_YAML);
    fputs(text, out);
    free(text);
}

char *train_config_to_json(const train_config *c) {
    return config_emit(c, STYLE_JSON);
}

// ---- the key reference of docs/config.md ----

static void schema_default_text(strbuf *b, const config_key *k, const char *text) {
    if (!text) {
        strbuf_printf(b, "none");
        return;
    }
    strbuf_printf(b, "`");
    if (k->type == KEY_STRING)
        json_write_string(b, text);
    else
        strbuf_printf(b, "%s", text);
    strbuf_printf(b, "`");
}

static void schema_default(strbuf *b, const config_key *k) {
    if (k->required) {
        strbuf_printf(b, "required");
        return;
    }
    if (k->petl.used && !k->def) { // a method's option; petl.share_decoder has a default of its own
        strbuf_printf(b, "the preset's");
        return;
    }
    schema_default_text(b, k, k->def);
    for (int t = 0; t < TASK_COUNT; t++) {
        if (!k->task_def[t]) continue;
        strbuf_printf(b, "; %s: ", task_names[t]);
        schema_default_text(b, k, k->task_def[t]);
    }
}

void train_config_write_schema(FILE *out) {
    strbuf b = {0};
    strbuf_printf(&b, "| key | type | default | meaning |\n| --- | --- | --- | --- |\n");
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const config_key *k = &config_keys[i];
        strbuf_printf(&b, "| `%s` | ", k->name);
        key_describe(k, &b);
        strbuf_printf(&b, " | ");
        schema_default(&b, k);
        strbuf_printf(&b, " | %s |\n", k->doc);
    }
    fputs(b.data, out);
    strbuf_free(&b);
}

petal_dtype train_config_dtype(const train_config *c) {
    return c->dtype == TRAIN_DTYPE_F64 ? PETAL_F64 : PETAL_F32;
}

petal_device train_config_device(const train_config *c) {
    petal_device d = DEVICE_CPU;
    PETAL_CHECK(device_parse(c->device, &d) == PETAL_OK, "%s: device '%s' was not checked",
                c->source, c->device);
    return d;
}
