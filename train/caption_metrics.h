// Caption metrics as the COCO caption evaluation computes them: pycocoevalcap 1.2, which BLIP's
// train_caption.py runs through coco_caption_eval. BLEU-1..4, ROUGE-L and CIDEr-D after PTB
// tokenization, each written from pycocoevalcap's code (METEOR and SPICE, which run Java
// programs of their own, are not computed).
//
// Tokenization (train/caption_tokenize.c) is pycocoevalcap's PTBTokenizer: Stanford CoreNLP
// 3.4.1's PTBTokenizer run with -preserveLines -lowerCase on the captions joined by newlines, then
// the punctuation tokens '' ' `` ` . ? ! , : - -- ... ; dropped. Every rule of CoreNLP's
// PTBLexer.flex at v3.4.1 is transcribed, in its order, with JFlex's matching (longest match, a
// trailing context counted in the length but not consumed, the first rule on ties, units given
// back to be scanned again) on Java's UTF-16 text, under the options that command line sets: the
// PTB3 normalizations on, no Americanizing, no escaped / and *. So: lowercasing as Java's
// toLowerCase, "don't" -> "do n't", "cannot" -> "can not", "gonna" -> "gon na", 's 're 'll split
// off, quotes -> `` '' ` ' (then dropped), ( ) [ ] { } -> -lrb- -rrb- -lsb- -rsb- -lcb- -rcb-
// (kept: pycocoevalcap's list has the upper-case -LRB-), "1,000.5", "3/4" and "re-use" kept whole,
// "2 1/2" one token with a no-break space (BLEU and CIDEr split it there, ROUGE-L does not),
// abbreviations ("mr.", "etc.", "u.s.") keeping their period, dashes -> "--", ellipses -> "...",
// &amp; -> &, currency and fraction characters, URLs, e-mail addresses, smileys, and characters no
// rule covers (emoji among them) deleted. As in pycocoevalcap, one caption's tokens can depend on
// the next caption, since the list is one text: "the letter a." loses its period before "A dog" and
// keeps it before "two dogs". What differs:
//   - Unicode data are utf8proc's (Unicode 15), where PTBLexer's classes are Java 7's letters,
//     digits and capitals, and a capital sigma is final by Python's rule (str.lower), where Java
//     asks a word-boundary iterator: they disagree on a sigma between letters and digits;
//   - a carriage return, vertical tab, form feed, U+2028 or U+2029 inside a caption (but not
//     just before the newline that ends it) is white space here; CoreNLP ends a line there,
//     which moves every later caption onto the wrong image in pycocoevalcap.
// Checked against the jar on about 35,000 generated strings: no other difference.
//
// The scores are pycocoevalcap's, to rounding: BLEU with the "closest" reference length, clipped
// n-gram counts summed over the corpus, the brevity penalty on the summed lengths and its
// 1e-15 / 1e-9 guards; ROUGE-L with beta 1.2 on the best precision and the best recall over the
// references; CIDEr-D with n-grams up to 4, document frequencies over the references of the
// images scored, log(number of images), counts clipped by the reference's, the Gaussian length
// penalty (sigma 6) and the factor 10. BLEU and CIDEr split the tokenized caption on whitespace
// (Python's str.split()), ROUGE-L on single spaces (str.split(" ")), as pycocoevalcap does.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tensor/error.h"

typedef struct {
    double bleu[4]; // Bleu_1 .. Bleu_4
    double rouge_l; // ROUGE_L
    double cider;   // CIDEr (CIDEr-D)
} caption_scores;

// PTBTokenizer's output for n captions (UTF-8) tokenized as one text, as pycocoevalcap tokenizes
// all the references, or all the candidates, of an evaluation. out[i] (malloc'd) is caption i's
// tokens joined by single spaces; free them with caption_tokens_free. PETAL_ERR_ARG naming the
// caption when one is not valid UTF-8.
petal_status caption_tokenize(const char *const *text, int64_t n, char **out);
void caption_tokens_free(char **tokens, int64_t n);

// The scores of n images: pred[i] the candidate caption of image i, refs[i][0, n_refs[i]) its
// references (raw text, tokenized as pycocoevalcap does: the references of all images as one
// text, the candidates as another). PETAL_ERR_ARG when n < 1, an image has no reference or a
// caption is not valid UTF-8.
petal_status caption_metrics_score(const char *const *pred, const char *const *const *refs,
                                   const int *n_refs, int64_t n, caption_scores *out);
// The same for captions already tokenized (what pycocoevalcap's scorers receive).
petal_status caption_metrics_score_tokenized(const char *const *pred,
                                             const char *const *const *refs, const int *n_refs,
                                             int64_t n, caption_scores *out);

// A COCO results file [{"image_id": ..., "caption": "..."}, ...] against a COCO ground truth
// {"images": [{"id": ...}], "annotations": [{"image_id": ..., "caption": "..."}]}, as BLIP's
// coco_caption_eval scores it: the images of the results (each must be in the ground truth's
// "images" and have at least one annotation, and have one result), in the ground truth's order,
// with the annotations' captions as references. Image ids are integers or strings. Errors name
// the file, the entry and the field.
petal_status caption_metrics_score_files(const char *pred_json, const char *ann_json,
                                         caption_scores *out);

// The scores as one JSON object with pycocoevalcap's names, each "%.9g":
//     {"Bleu_1": ..., "Bleu_2": ..., "Bleu_3": ..., "Bleu_4": ..., "ROUGE_L": ..., "CIDEr": ...}
// into buf (snprintf's contract: returns the length it needs).
int caption_scores_format(const caption_scores *s, char *buf, size_t size);
