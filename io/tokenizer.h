// The bert-base-uncased WordPiece tokenizer, as HF transformers' (slow) BertTokenizer with
// do_lower_case=True, tokenize_chinese_chars=True, strip_accents=None, plus BLIP's added special
// tokens (models/blip.py init_tokenizer: [DEC] as bos, [ENC] as an additional special token).
//
// Text to ids, in HF's order:
//  1. every character outside a special token is lowercased on its own (Python's c.lower());
//  2. the text is split at special tokens ([PAD] [UNK] [CLS] [SEP] [MASK] and added ones), which
//     are matched whole (the longest one starting at a position) and become their own ids;
//  3. each other piece: drop NUL, U+FFFD and control characters (category C*, except \t \n \r),
//     whitespace (\t \n \r, Zs) becomes a space, CJK ideographs get spaces around them, NFC,
//     split on Python whitespace; each word: NFD, drop Mn (accents), split off every punctuation
//     character (ASCII non-alphanumerics and Unicode P*);
//  4. WordPiece: greedy longest match first, "##" on continuations; a word of more than 100
//     characters, or one that cannot be covered, becomes [UNK].
// Unicode data come from utf8proc (Unicode 15): characters new in Unicode 15 tokenize as under a
// Python built on Unicode 15 (Python 3.11 is on Unicode 14 and drops them as unassigned).
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/error.h"
#include "tensor/tensor.h"

#define TOKENIZER_MAX_WORD_CHARS  100 // longer words become [UNK]
#define BLIP_RETRIEVAL_MAX_LENGTH 35  // retrieval and ITM: pad to max_length
#define BLIP_CAPTION_MAX_LENGTH   40  // caption training: pad to the longest
#define BLIP_QUESTION_MAX_LENGTH  35  // VQA questions: pad to the longest

typedef struct tokenizer tokenizer;

typedef struct {
    int32_t pad, unk, cls, sep, mask; // from the vocabulary
    int32_t bos, enc;                 // BLIP's [DEC] and [ENC]; -1 unless added
} tokenizer_special_ids;

// Loads a vocab.txt (one token per line, the line number is the id; \n, \r\n or \r ends a line).
// It must hold [PAD], [UNK], [CLS], [SEP] and [MASK]. Errors name the path and the line.
petal_status tokenizer_load(const char *vocab_path, tokenizer **out);
// The same from the text of a vocabulary (a checkpoint's `vocab` attribute); `source` names it
// in error messages.
petal_status tokenizer_load_text(const char *text, size_t len, const char *source, tokenizer **out);
// tokenizer_load, then [DEC] (bos) and [ENC] as BLIP adds them: 30524 ids for bert-base-uncased.
petal_status tokenizer_load_blip(const char *vocab_path, tokenizer **out);
void tokenizer_add_blip_specials(tokenizer *t); // [DEC] and [ENC] onto a loaded vocabulary
void tokenizer_free(tokenizer *t);

// Adds a special token: matched whole in input text, skipped by decode(skip_special). A token
// already in the vocabulary keeps its id; a new one gets the next id, which is returned.
// `additional` marks HF's additional_special_tokens: decode keeps those beyond the vocabulary
// apart from their neighbours, as HF does.
int32_t tokenizer_add_special(tokenizer *t, const char *token, bool additional);

int32_t tokenizer_size(const tokenizer *t);                    // vocabulary plus added tokens
int32_t tokenizer_find(const tokenizer *t, const char *token); // its id, or -1
const char *tokenizer_token(const tokenizer *t, int32_t id);   // NULL when out of range
const tokenizer_special_ids *tokenizer_specials(const tokenizer *t);

// A growable list of ids. Zero-initialise it.
typedef struct {
    int32_t *ids;
    size_t len, cap;
} token_ids;
void token_ids_free(token_ids *v);

// Appends the ids of text's tokens (no [CLS]/[SEP]): HF's convert_tokens_to_ids(tokenize(text)).
// PETAL_ERR_ARG when the len bytes of text are not valid UTF-8.
petal_status tokenizer_tokenize(const tokenizer *t, const char *text, size_t len, token_ids *out);

typedef enum {
    TOKENIZER_PAD_LONGEST,    // to the longest sequence of the batch (HF padding='longest')
    TOKENIZER_PAD_MAX_LENGTH, // to max_length (HF padding='max_length')
} tokenizer_padding;

typedef enum {
    TOKENIZER_FIRST_CLS, // [CLS]: the unimodal text encoder
    TOKENIZER_FIRST_ENC, // [ENC]: image-grounded encoding (ITM, VQA questions)
    TOKENIZER_FIRST_BOS, // [DEC]: the decoder
} tokenizer_first;

typedef struct {
    int max_length; // truncate to this many ids, [CLS] and [SEP] included (0: no limit)
    tokenizer_padding padding;
    tokenizer_first first; // what replaces [CLS], as BLIP does after tokenizing
} tokenizer_options;

// Encodes n texts into *ids (n, L) and *mask (n, L), both i64: first token, the text's ids
// (truncated to max_length - 2), [SEP], then [PAD] with mask 0. PETAL_ERR_ARG names the text
// that is not valid UTF-8.
petal_status tokenizer_encode_batch(const tokenizer *t, const char *const *texts, int n,
                                    const tokenizer_options *opt, tensor **ids, tensor **mask);

// HF's decode(ids, skip_special_tokens, clean_up_tokenization_spaces=True): tokens joined by
// spaces, "##" continuations glued on, " ." " ," " 's" ... tightened. Ids out of range decode as
// [UNK]. Returns a malloc'd string.
char *tokenizer_decode(const tokenizer *t, const int64_t *ids, size_t n, bool skip_special);
