// The parameter registry (docs/architecture.md "nn/ and the parameter registry").
//
// Every parameter of a model lives here under its hierarchical name, the Salesforce checkpoint
// name ("visual_encoder.blocks.3.attn.qkv.weight"), with flags. Loaders, PETL attachment (by name
// pattern), parameter counting, optimizers and checkpoint writers all walk the registry; nothing
// walks a model by hand. The registry owns its tensors.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tensor/tensor.h"

typedef enum {
    MODALITY_NONE,       // task heads, shared PETL factors
    MODALITY_VISION,     // the ViT
    MODALITY_TEXT,       // the text encoder in text mode (self-attention, FFN, embeddings)
    MODALITY_MULTIMODAL, // cross-attention of the image-grounded encoder
    MODALITY_DECODER,    // the caption / answer decoder
} modality;

const char *modality_name(modality m);

struct nn_linear;

typedef struct {
    char *name;
    tensor *value;            // owned; requires_grad mirrors `trainable`
    struct nn_linear *linear; // the Linear layer this is the weight of (PETL attaches there)
    bool trainable;           // receives gradients and optimizer updates
    bool decay;               // weight decay applies (off for biases, LayerNorm, embeddings' norms)
    modality tag;
    bool buffer; // state saved with the model but never trained (e.g. momentum queues)
} param_entry;

typedef struct {
    param_entry *items;
    int n, cap;
} param_registry;

param_registry *registry_new(void);
void registry_free(param_registry *r); // frees every tensor it owns

// Adds t under `name` (a copy of the string), taking ownership (t leaves its scope if any).
// Aborts if the name is already taken. New entries are frozen; see registry_set_trainable.
param_entry *registry_add(param_registry *r, const char *name, tensor *t, modality tag, bool decay);
param_entry *registry_find(const param_registry *r, const char *name);
// The entry's tensor, or abort naming the missing key (for model code that knows it exists).
tensor *registry_get(const param_registry *r, const char *name);

// Glob patterns: '*' matches any run of characters (dots included), '?' one character.
bool registry_match(const char *pattern, const char *name);
// Sets trainable (and requires_grad) on every parameter whose name matches (buffers and integer
// tensors are skipped); returns how many.
int registry_set_trainable(param_registry *r, const char *pattern, bool trainable);
void registry_freeze_all(param_registry *r);

int64_t registry_count(const param_registry *r, bool trainable_only); // elements, not entries
// Fills out with the trainable tensors (at most cap); returns how many there are.
int registry_trainable(const param_registry *r, tensor **out, int cap);
