// The model of an experiment: a BLIP for the config's task, loaded from `pretrained` or built
// from `arch` with fresh weights, with the petl: block attached (or every backbone parameter
// trainable for "full", nothing but the heads' globs for "frozen").
#pragma once

#include "io/tokenizer.h"
#include "models/blip/blip.h"
#include "petl/petl.h"
#include "train/config.h"
#include "train/optim.h"

typedef struct {
    blip_model *m;
    tokenizer *tok;
    char *vocab;        // the vocabulary's text, one token per line: saved with full checkpoints
    petl_handle *petl;  // NULL for "full" (nothing attached)
    bool full;          // every backbone parameter trains; checkpoints are full files
    int64_t prompt_len; // caption: [CLS] and the prompt's tokens, not predicted (prompt_length)
} train_model;

// Loads or builds the model on the CPU, attaches, then moves it to the config's device (the
// device key). Errors name the config key and the file.
petal_status train_model_init(const train_config *c, train_model *out);
// Every registry entry (parameters, buffers such as the momentum encoders and queues, PETL
// tensors) moved to `device` in place: what pointed at them still does.
void train_model_to(train_model *tm, petal_device device);
// The two halves: the model as `pretrained` (or `arch`) gives it, every parameter frozen; then the
// config's ViT options (drop path, checkpointing), prompt and petl: block.
petal_status train_model_load(const train_config *c, train_model *out);
petal_status train_model_attach(const train_config *c, train_model *tm);
// Undoes train_model_attach (petl_detach, and every parameter frozen again): the model can take
// the next configuration of a grid.
void train_model_detach(train_model *tm);
void train_model_free(train_model *tm);

// last.h5 / best.h5: a PETL-only file (a full one when everything trains), with the experiment's
// config embedded (JSON).
petal_status train_model_save(const train_model *tm, const char *path, const char *config_json);

// The trainable tensors in registry order, their registry names and whether weight decay applies
// (registry flag, and only on tensors of 2 or more dimensions unless decay_1d). Returns the count;
// the arrays are malloc'd.
int train_model_trainable(const train_model *tm, bool decay_1d, tensor ***params,
                          const char ***names, bool **decay);

// AdamW over the trainable tensors (train_model_trainable) with the config's init_lr,
// weight_decay and decay_1d. names (may be NULL) gets their registry names, malloc'd.
optim_adamw *train_model_optimizer(const train_model *tm, const train_config *c,
                                   const char ***names);
