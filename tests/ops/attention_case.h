// The attention cases of tests/ops/test_attention_tile.c and test_attention_cpu.c: sizes, mask,
// causal, dropout.
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    MASK_NONE,
    MASK_KEYS,     // (B, 1, 1, S): BERT's padding on the last keys of batch 1
    MASK_FULL,     // (T, S) of random values
    MASK_DEAD_ROW, // (T, S) zeros with row 2 all -inf: a query with no visible key
    MASK_STRIDED,  // (T, S) of random values read through a transposed (S, T) tensor
} mask_kind;

typedef struct {
    const char *name;
    int64_t b, h, t, s, d, dv;
    mask_kind mask;
    bool causal;
    double dropout;
} attn_case;
