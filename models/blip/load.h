// BLIP models from petal checkpoints (docs/checkpoint-format.md): the file's config attribute
// gives the architecture, its vocabulary the special-token ids, and every parameter the model has
// is loaded and checked by name, dtype and shape.
//
//     blip_loaded l;
//     if (blip_load("model_base_retrieval_coco.h5", NULL, &l) != PETAL_OK)
//         fprintf(stderr, "%s\n", petal_error_message()); // names the file and the keys
//     ... l.model, l.tok ...
//     blip_loaded_free(&l);
#pragma once

#include "io/checkpoint.h"
#include "io/tokenizer.h"
#include "models/blip/blip.h"

// The config JSON of a checkpoint -> *out. Keys the JSON leaves out keep BLIP-base's values;
// every key present is type-checked (messages name `source` and the key path). "model": "bert"
// gives the BLIP_TEXT task. A "pretrain" file has no single task: *out gets `fallback`'s.
petal_status blip_config_from_json(const char *json, const char *source, blip_task fallback,
                                   bool *pretrain, blip_config *out);

// The special-token ids a model uses with this tokenizer ([DEC] and [ENC] 0 when it lacks them).
blip_tokens blip_tokens_of(const tokenizer *tok);

// cfg -> the config JSON petal convert writes (malloc'd; free it).
char *blip_config_to_json(const blip_config *cfg);
// Saves the model atomically with its config and `vocab` (one token per line, may be NULL): a
// FULL file has every parameter and buffer, a PETL file the trainable ones (checkpoint.h).
petal_status blip_save(const char *path, const blip_model *m, checkpoint_kind kind,
                       const char *vocab);
// blip_save with the experiment's config (a JSON object, train/config.h) embedded under "train"
// in the file's config attribute; readers of the model config ignore it.
petal_status blip_save_with(const char *path, const blip_model *m, checkpoint_kind kind,
                            const char *vocab, const char *train_json);
// A JSON object's text with `"train": train_json` added as its last key (malloc'd).
char *blip_config_json_with(const char *config_json, const char *train_json);

typedef struct {
    const char *task;  // load as this task ("retrieval", "vqa", ...); NULL: the file's own
    petal_dtype dtype; // the model's dtype (default f32)
    // Retrieval: build the momentum encoders and queues. Loaded from the file when it has them,
    // else copied from the main encoders with fresh queues, as blip_retrieval.py starts.
    bool momentum;
} blip_load_options;

typedef struct {
    blip_model *model;
    tokenizer *tok;       // the file's vocabulary (+ [DEC], [ENC] for BLIP); NULL if it has none
    checkpoint_info info; // version, kind, config text, fingerprint
} blip_loaded;

// Builds the model the file describes and loads it. Keys the file has beyond the model's are
// accepted only when they belong to modules the requested task does not use (a pretraining file
// loaded for retrieval) or to momentum encoders not asked for; a key the model needs and the file
// lacks is an error, except momentum copies and queues (see `momentum`). opts may be NULL.
petal_status blip_load(const char *path, const blip_load_options *opts, blip_loaded *out);
void blip_loaded_free(blip_loaded *l);
