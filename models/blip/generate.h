// Autoregressive decoding with the BLIP text decoder: beam search and greedy search with the
// semantics of HF transformers 4.15's generate (the version BLIP pins), which BLIP's captioning
// and VQA use: log-softmax scores summed along a beam, 2K candidates per step, finished beams
// (EOS) scored by sum / length^length_penalty with the prompt counted in the length, min_length
// by forbidding EOS, and a KV cache for the decoder's self-attention.
#pragma once

#include "models/blip/bert.h"

typedef struct {
    int num_beams;             // 1: greedy search
    int64_t max_length;        // total length, prompt included
    int64_t min_length;        // total length before EOS may appear, prompt included
    double repetition_penalty; // 1.0: off (HF's RepetitionPenaltyLogitsProcessor otherwise)
    double length_penalty;     // 1.0
    int64_t eos, pad;          // [SEP] and [PAD]
} generate_options;

typedef struct {
    int64_t n, len;  // n sequences of len tokens (prompt included, padded with pad)
    int64_t *tokens; // (n, len)
    double *scores;  // the chosen hypothesis' normalised score (beam search; 0 for greedy)
} generate_result;

// prompt (B, P) i64 token ids; encoder_states (B, N, W): what the decoder cross-attends to, one
// row per prompt (replicated here once per beam); encoder_mask (B, N) 0/1 or NULL for ones.
generate_result blip_generate(const bert_model *decoder, tensor *prompt, tensor *encoder_states,
                              tensor *encoder_mask, const generate_options *opt);
void generate_result_free(generate_result *r);

// Whether the calling thread is inside a KV-cached step of blip_generate: a step after the first,
// which feeds each row's last token against the keys and values the cache holds. The released
// Aurora decoder (CP/med.py) leaves CP out of the keys and values such a step computes; CP's
// plain_cached_kv option reads this to do the same (docs/petl.md "Released Aurora protocol").
bool blip_generate_cached_step(void);
