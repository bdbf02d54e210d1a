// VQA accuracy as the official evaluation computes it (vqaEval.py of the VQA API,
// GT-Vision-Lab/VQA, as of its 2021 fix that normalises the ground truth too), and the results
// file the evaluation server takes.
//
// Normalisation (vqa_normalize_answer) is the official sequence: '\n' and '\t' become spaces and
// the ends are stripped; processPunctuation removes or blanks 21 punctuation marks and drops
// periods not followed by a digit; processDigitArticle lowercases, maps number words to digits
// ("two" -> "2", "none" -> "0"), removes the articles a/an/the and expands the contractions table
// ("dont" -> "don't"). The official code is Python 2 and works on bytes; so does this code:
// lowercasing and whitespace are ASCII only, and other UTF-8 bytes pass through unchanged.
#pragma once

#include <stdint.h>

#include "tensor/error.h"

// The normalised answer, malloc'd (the caller frees it).
char *vqa_normalize_answer(const char *answer);

// The official accuracy of `pred` against the human answers (n_answers >= 1; VQA has 10):
// the mean over the n leave-one-out subsets of min(1, matches among the other n - 1 / 3). With 10
// answers of which k equal pred this is 0, 0.3, 0.6, 0.9 and 1 for k = 0..4 (and 1 above): the
// familiar min(k / 3, 1), lowered by the averaging where k is 1, 2 or 3.
// As in the official code, answers and pred are only normalised when the (stripped) human
// answers are not all identical: if every annotator wrote "yes", "Yes." scores 0.
double vqa_accuracy(const char *pred, const char *const *answers, int n_answers);

// Writes the submission format [{"question_id": int, "answer": str}, ...] to `path` atomically
// (a temporary file in the same directory, renamed over path). Answers must be valid UTF-8.
petal_status vqa_results_write(const char *path, const int64_t *question_ids,
                               const char *const *answers, int64_t n);
