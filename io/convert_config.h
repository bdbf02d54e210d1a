// Internal to io/convert.c: the config JSON of a converted checkpoint, inferred from the shapes of
// its tensors (already under Salesforce names).
#pragma once

#include <stdbool.h>
#include <string.h>

#include "io/tensor_list.h"
#include "tensor/error.h"

static inline bool convert_starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

typedef struct {
    int vision_heads, text_heads; // 0: width / 64
    double text_eps;              // 0: 1e-12
    // A BlipConfig's vision_config.layer_norm_eps when it is not BLIP's 1e-6 (which petal's ViT
    // keeps: the Salesforce weights were trained with it; HF's BlipVisionConfig defaults to
    // 1e-5); 0 otherwise.
    double vision_eps_overridden;
} convert_hints;

// Head counts and eps from an HF config.json beside `src` (BertConfig or BlipConfig), when there
// is one; `heads` (0: none) overrides every head count, the eps values are read either way.
petal_status convert_read_hints(const char *src, int heads, convert_hints *hints);

// {"model": "blip", "task": ..., "image_size": ..., "vision": {...}, "text": {...},
//  "decoder": {...}, "embed_dim": ...}: *json is malloc'd. Errors name src and the missing or
// inconsistent tensor.
petal_status convert_blip_config(const char *src, const tensor_list *l, const char *task,
                                 int image_size, const convert_hints *hints, char **json);
// {"model": "bert", "text": {...}} for tensors under text_encoder.
petal_status convert_bert_config(const char *src, const tensor_list *l, const convert_hints *hints,
                                 char **json);
