// The vocabulary of a generated data set (train/synth.c, train/synth_video.c): every BERT basic
// token of the texts the set can hold, so that WordPiece never splits or drops a word of it.
#pragma once

#include <stddef.h>

#include "io/buffer.h"
#include "io/strmap.h"

typedef struct {
    strmap seen;
    char **tokens; // malloc'd, in order of first appearance
    size_t n, cap;
} synth_vocab;

// BERT's basic tokens of an ASCII text, lowercased (runs of letters and digits, and single
// punctuation marks), each added once. Tokens of the raw text cover those of BLIP's
// preprocessed text, which only lowercases, drops punctuation and truncates.
void synth_vocab_add(synth_vocab *v, const char *text);
// vocab.txt into out: [PAD] [UNK] [CLS] [SEP] [MASK] at ids 0-4, then the tokens sorted. Frees
// the vocabulary and returns the number of lines.
int synth_vocab_take_text(synth_vocab *v, strbuf *out);
