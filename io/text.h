// BLIP's text preprocessing (salesforce/BLIP data/utils.py) and the pieces of Python's string
// semantics it and the tokenizer rely on, on UTF-8 text.
//
//     pre_caption: re.sub(r"([.!\"()*#:;~])", ' ', caption.lower()); re.sub(r"\s{2,}", ' ', ...);
//                  rstrip('\n'); strip(' '); keep the first max_words of split(' ')
//     pre_question: re.sub(r"([.!\"()*#:;~])", '', question.lower()); rstrip(' ');
//                  keep the first max_words of split(' ')
//
// Lowercasing is Python's str.lower(): full case mapping (U+0130 becomes "i" + U+0307) and the
// final sigma rule; whitespace is Python's str.isspace(). Unicode data come from utf8proc (Unicode
// 15), so characters new in Unicode 15 behave as in a Python built on Unicode 15.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/buffer.h"
#include "tensor/error.h"

#define TEXT_CAPTION_MAX_WORDS  50 // pre_caption's default
#define TEXT_DATASET_MAX_WORDS  30 // what BLIP's caption and retrieval datasets pass
#define TEXT_QUESTION_MAX_WORDS 50 // pre_question's default (the VQA dataset uses it)

// pre_caption / pre_question into *out (malloc'd). PETAL_ERR_ARG if the text is not valid UTF-8.
petal_status text_pre_caption(const char *caption, int max_words, char **out);
petal_status text_pre_question(const char *question, int max_words, char **out);

// Python's str.lower() of len bytes of UTF-8, appended to out. PETAL_ERR_ARG if not valid UTF-8.
petal_status text_lower(const char *s, size_t len, strbuf *out);
// Python's c.lower() for one character on its own (so never a final sigma), appended to out.
void text_append_lower(strbuf *out, int32_t cp);
// Python's str.isspace() for one character.
bool text_is_space(int32_t cp);
// The bounds [start, end) of Python's s.strip() (whitespace by str.isspace) in valid UTF-8.
void text_strip(const char *s, size_t len, size_t *start, size_t *end);
// What is left of caption after as many characters as `prompt` has (UTF-8 code points): BLIP's
// caption[len(prompt):], which drops the prompt from a decoded caption.
const char *text_after_prompt(const char *caption, const char *prompt);
// The offset of the first byte that is not valid UTF-8, or len if all of it is.
size_t text_utf8_prefix(const char *s, size_t len);
