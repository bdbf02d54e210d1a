// petl/: parameter-efficient transfer learning methods, attachable to a BLIP model in one call
// and composable (docs/architecture.md "petl/", docs/reference.md sections 2-4).
//
//     petl_config cfg = petl_config_aurora(PETL_CODE, 32);  // CP + ICE + GQT as released
//     petl_handle *h = petl_attach(model, &cfg);             // freezes the rest, adds the method
//     petl_print_trainable(h, stdout);                       // PEFT-style counts
//
// Methods live in their own files (cp.c, lora.c, ...) and join the model through the Linear
// delta hook (nn/linear.h), the layer hooks (models/blip/hooks.h), ITM's positive-[CLS] hook, or
// as an extra loss (MCAM). Their parameters are registered in the model's registry under
// Aurora-style names ("CP_U.weight", "visual_encoder.blocks.3.attn.CP_attention", ...). Where the
// paper and the released code differ, both are options of one implementation.
#pragma once

#include <stdio.h>

#include "io/convert.h"
#include "models/blip/blip.h"

typedef enum { PETL_PAPER, PETL_CODE } petl_variant;
typedef enum { CP_CORE_DIAGONAL, CP_CORE_DENSE } cp_core;
typedef enum { ICE_OFF, ICE_SOFTMAX, ICE_MEAN } ice_mode;
typedef enum { GQT_OFF, GQT_GATE, GQT_AFFINE } gqt_mode;
typedef enum { PETL_ACT_GELU, PETL_ACT_RELU, PETL_ACT_SIGMOID, PETL_ACT_TANH } petl_activation;

// Which deltas share one In / Out pair of CP factors (docs/petl.md, "CP sharing scopes").
typedef enum {
    CP_SHARE_GLOBAL,   // one pair for every modality (Aurora, both presets)
    CP_SHARE_MODALITY, // one pair each for vision, text, multimodal and decoder deltas
    CP_SHARE_LAYER,    // one pair per ViT block, BERT layer and decoder layer
} cp_sharing;

typedef struct {
    bool enabled;
    int64_t rank;
    cp_core core;   // DIAGONAL: the paper's lambda (x) p;  DENSE: the code's R x R x R core
    double dropout; // on the rank-R vectors, when training (code: 0.1)
    double scale;   // s, the delta's scale (1)
    // Comma-separated globs over the main encoders' Linear names ("*.attn.qkv,*.self.query"), or
    // NULL for the preset set that attention_only picks (petl_cp_default_targets).
    const char *targets;
    bool attention_only; // deprecated alias, read only when targets is NULL: true leaves out the
                         // ViT MLP (paper), false adds it (code)
    cp_sharing sharing;
    bool momentum_copies; // code: momentum encoders carry deltas too, with EMA'd coefficients
    // The released decoder (CP/med.py) computes the self-attention keys and values of a KV-cached
    // generation step without CP (models/blip/generate.h); true does the same, and those deltas
    // then never merge. false (default, both presets): CP on every step, so generating with the
    // cache gives what generating without it would (docs/petl.md "Released Aurora protocol").
    bool plain_cached_kv;
} cp_options;

typedef struct {
    bool enabled;
    int64_t rank;
    double alpha, dropout;
    const char *targets; // comma-separated globs over Linear names
} lora_options;

typedef struct {
    bool enabled;
    int64_t rank;
    double d_init, dropout; // lambda_d init (0.1), dropout on x
    uint64_t seed;          // the frozen shared A, B (peft: seed 0)
    const char *targets;
} vera_options;

typedef struct {
    bool enabled;
    int64_t rank;
    uint64_t seed; // the frozen shared A, B
} vcra_options;

typedef struct {
    bool enabled;
    int64_t rank;
    petl_activation activation; // the filter f(h) = act(alpha h + beta) - act(0)
    uint64_t seed;              // its own frozen A, B
} qasn_options;

typedef struct {
    bool enabled;
    double tau, weight;
} mcam_options;

typedef struct {
    bool enabled;
    int64_t rank;
    double scale; // 0.1
} adapter_options;

typedef struct {
    cp_options cp;
    ice_mode ice;
    double ice_scale; // the code's 0.1
    gqt_mode gqt;
    lora_options lora;
    vera_options vera;
    vcra_options vcra;
    qasn_options qasn;
    mcam_options mcam;
    adapter_options adapter;
    const char *extra_trainable; // comma-separated globs of backbone heads trained too
    uint64_t seed;
    // (Video)QA, as the Aurora paper trains it: the answer decoder's layer i adapts with the very
    // tensors of the question encoder's layer i (one registry entry, under the encoder's name,
    // whose gradient sums both uses), for every method (docs/petl.md "Sharing the decoder's
    // parameters"). Needs a model with both, of one shape, and the same targets in both.
    bool share_decoder;
} petl_config;

// Presets. Aurora: CP + ICE + GQT (paper or released code); UniTrans: VCRA + QASN + MCAM.
petl_config petl_config_none(void);
petl_config petl_config_aurora(petl_variant variant, int64_t rank);
petl_config petl_config_cp(petl_variant variant, int64_t rank);
petl_config petl_config_lora(int64_t rank);
petl_config petl_config_vera(int64_t rank);
petl_config petl_config_unitrans(int64_t rank);
petl_config petl_config_adapter(int64_t rank);
// "aurora", "cp", "lora", "vera", "unitrans", "vcra", "adapter", or a '+'-joined mix of method
// names ("cp+mcam", "cp+ice+gqt"); the variant and rank apply to every part.
petal_status petl_config_parse(const char *methods, petl_variant variant, int64_t rank,
                               petl_config *out);
// The Linear globs CP targets when cp.targets is NULL: the attention projections (ViT qkv and
// proj; BERT query, key, value, and with the diagonal core the attention output dense), plus the
// ViT MLP unless attention_only.
const char *petl_cp_default_targets(const cp_options *o);

typedef enum {
    PETL_GROUP_SHARED, // factors shared across modalities (CP_U, CP_V, CP_C, VCRA's scale,
                       // the adapters' down projections)
    PETL_GROUP_VISION,
    PETL_GROUP_TEXT,
    PETL_GROUP_MULTIMODAL,
    PETL_GROUP_DECODER,
    PETL_GROUP_GQT,   // GQT's vectors (per multimodal and decoder layer)
    PETL_GROUP_HEADS, // backbone heads trained with the method (vision_proj, itm_head)
    PETL_GROUP_COUNT
} petl_group;

typedef struct petl_handle petl_handle;

// Freezes every parameter, attaches the configured methods and marks their parameters (and the
// extra heads) trainable. The model owns the handle and frees it; returns NULL with a
// petal_error message when the configuration cannot apply to this model (the model is then
// left as it was).
petl_handle *petl_attach(blip_model *m, const petl_config *cfg);
// Removes what petl_attach added and frees the handle: unmerges, unlinks the deltas and hooks,
// drops the methods' registry entries, restores every trainable flag and the values of what
// training with the method could change in the backbone (the extra heads, their momentum copies,
// the queues), bit for bit. A model without methods is left alone. One model can then serve a
// grid of runs: attach, train, detach, attach the next.
void petl_detach(blip_model *m);

int64_t petl_count(const petl_handle *h);                     // the methods' own trainable params
int64_t petl_count_group(const petl_handle *h, petl_group g); // trainable params of one group
// "trainable params: 324,098 || all params: 224,068,357 || trainable%: 0.1446" (PEFT's line), then
// one line per group: its count and the kinds of tensor it holds ("CP_U, CP_V, CP_C").
void petl_print_trainable(const petl_handle *h, FILE *out);
// n with thousands separators ("125,696"), as PEFT prints counts; returns buf.
const char *petl_format_count(int64_t n, char *buf, size_t size);
// MCAM's rank-consistency loss term () over a batch's ITC features (B, E), or NULL when MCAM is
// off (petl/mcam.c). A retrieval model already adds it to blip_retrieval_losses' ITC loss (reported
// as itc_extra); this is for features computed elsewhere.
tensor *petl_extra_loss(const petl_handle *h, tensor *image_feat, tensor *text_feat);

// PETL-only checkpoints (kind "petl", io/checkpoint.h): the trainable tensors (the methods' and
// the extra heads), the fingerprint of the frozen backbone, and the model and PETL options as the
// config attribute. petl_load needs the same configuration attached to a model with the same
// backbone; another backbone is refused (naming both fingerprints) unless force_base. Both refuse
// a merged handle (petl_merge): its weights are not the backbone's, and loading would leave the
// merged deltas stale.
petal_status petl_save(const petl_handle *h, const char *path);
// petl_save with the experiment's config (JSON, train/config.h) embedded under "train".
petal_status petl_save_with(const petl_handle *h, const char *path, const char *train_json);
petal_status petl_load(petl_handle *h, const char *path, bool force_base);

// Released Aurora training checkpoints (train_retrieval.py's checkpoint_<epoch>.pth, docs/petl.md
// "Released Aurora protocol"): `petal convert SRC DST --petl FILE`. Converts the BLIP part of
// src into a petal checkpoint at dst (convert_file, with opts->split_petl set) and writes Aurora's
// CP and GQT tensors as a PETL file at petl_path: the released-code configuration
// (petl_config_aurora(PETL_CODE, R), R from CP_C, GQT off when the file has no GQT vectors)
// attached to that backbone, its tensors loaded from the file by name. Each of them must be a
// tensor of that configuration, of its shape, and each tensor the configuration trains must be in
// the file (errors name src, the tensor, the shapes); the trained heads (vision_proj, itm_head)
// come from the backbone the file also holds. report->petl lists the tensors written. On failure
// neither file is left.
petal_status petl_convert_aurora(const char *src, const char *dst, const char *petl_path,
                                 const convert_options *opts, convert_report *report);

// Folds every linear delta into its Linear's weight (W += dW) so inference runs at the backbone's
// cost; unmerge puts back the weights as they were, bit for bit. Non-linear methods (ICE, GQT,
// QASN, adapters) stay active.
void petl_merge(petl_handle *h);
void petl_unmerge(petl_handle *h);
bool petl_is_merged(const petl_handle *h);
