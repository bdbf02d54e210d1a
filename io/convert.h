// Released weights -> petal checkpoints (`petal convert`, docs/checkpoint-format.md "Converting").
//
// Reads a .pth or .safetensors state dict and recognises its naming:
// - Salesforce BLIP (visual_encoder.*, text_encoder.*, text_decoder.*): names kept;
// - HF BLIP (vision_model.*): renamed to Salesforce's (docs/reference.md "Released weights");
// - a plain BERT (embeddings.*, encoder.layer.*, as all-MiniLM-L6-v2): put under text_encoder.,
//   token_type_embeddings kept, pooler and MLM heads dropped;
// - anything else: every tensor kept under its own name, config "{}".
// For BLIP it keeps the modules the task uses, drops momentum encoders and queues (unless asked to
// keep them, as buffers), position_ids buffers and the decoder weight and bias tied to the word
// embeddings and cls.predictions.bias; resizes pos_embed to the image size; infers the config
// JSON (the schema of docs/checkpoint-format.md) from the shapes; embeds a vocabulary; and writes
// the checkpoint atomically.
//
// A released Aurora training checkpoint (docs/petl.md "Released Aurora protocol") also holds
// Aurora's tensors beside BLIP's: a name component CP_* or *_CP (CP_U.weight, CP_C,
// ...attn.CP_attention, ...mlp.mlp_CP, ...self.q_CP, GQT's ...layer.<i>.CP_scaleself). With
// split_petl those of the main modules go to report->petl (petl_convert_aurora writes them as a
// PETL file); their copies in the momentum encoders are dropped (petl_load restarts them from
// their twins, and text_encoder_m's GQT vectors are never read: it runs in text mode only).
// Without split_petl such a state dict is refused rather than written with tensors no model has.
#pragma once

#include <stdbool.h>

#include "io/tensor_list.h"
#include "tensor/error.h"

typedef struct {
    const char *task;       // "retrieval", "itm", "vqa", "caption", "pretrain"; NULL: inferred
    int image_size;         // 0: the image size pos_embed was trained at
    const char *vocab_path; // one token per line; NULL: no vocabulary
    bool keep_momentum;     // keep momentum encoders and queues (as buffers)
    int heads;              // 0: from config.json beside the source, else width / 64
    bool split_petl;        // Aurora's tensors -> report->petl (see above); false: refused
} convert_options;

typedef struct {
    char *name;         // the source's name
    const char *reason; // "momentum copy", "queue", "position_ids buffer", ...
} convert_drop;

typedef struct {
    const char *style; // "Salesforce BLIP", "HF BLIP", "BERT", "unrecognised"
    const char *task;  // the BLIP task written to the config; NULL otherwise
    int n_read, n_written, n_renamed;
    convert_drop *dropped;
    int n_dropped;
    char resized[160]; // "visual_encoder.pos_embed [1, 577, 768] -> [1, 901, 768]", or ""
    char *config;      // the config JSON written
    int vocab_tokens;  // lines of the embedded vocabulary; 0 when none
    bool vocab_kept;   // it is the source checkpoint's own (no --vocab given)
    tensor_list petl;  // split_petl: Aurora's tensors of the main modules, not written to dst
    // config.json values petal does not follow: "vision_config.layer_norm_eps 1e-05 (petal's ViT
    // keeps BLIP's 1e-06)", or "".
    char overridden[160];
} convert_report;

// Converts src into a petal checkpoint at dst. The report (may be NULL) says what was done; free
// it with convert_report_free whatever the status. Errors name the file and the tensor or option.
petal_status convert_file(const char *src, const char *dst, const convert_options *opts,
                          convert_report *report);
void convert_report_free(convert_report *report);
