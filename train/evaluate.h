// Evaluation of an experiment's model on a split, with the metrics papers report:
//   retrieval, pretrain  ITC similarities, ITM rerank of the k_test best (+ beta x ITC),
//                        txt_r1 txt_r5 txt_r10 txt_mdr img_r1 img_r5 img_r10 img_mdr r_mean
//   vqa                  answers ranked over the answer list (k_test) or generated; vqa_acc
//                        (the official VQA accuracy) and the results file in the official format
//   caption              beam search; Bleu_1..Bleu_4, ROUGE_L, CIDEr against the split's COCO
//                        ground-truth file, and the results file [{"image_id", "caption"}]
#pragma once

#include <stdint.h>

#include "train/config.h"
#include "train/dist.h"
#include "train/model.h"
#include "train/splits.h"

#define EVAL_MAX_METRICS 12

typedef struct {
    int n;
    const char *names[EVAL_MAX_METRICS];
    double values[EVAL_MAX_METRICS];
    const char *score_name; // what best.h5 is chosen by: r_mean, vqa_acc or CIDEr
    double score;
} eval_result;

// Evaluates tm on the split. results_dir (may be NULL) receives the VQA and caption results files
// as <split>_step<step>.json.
petal_status evaluate_split(const train_config *c, const train_model *tm, train_split split,
                            const char *results_dir, int64_t step, eval_result *out);
// The same with every rank of a data-parallel run calling it (comm NULL: evaluate_split).
// Retrieval's ITM rerank, where the time goes, is split over the ranks by rows and the score
// matrices summed (the features are computed on every rank). VQA and captioning split the split's
// batches over the ranks (train/eval_shard.h) and gather the answers and captions, in the split's
// order, to every rank, which computes the metrics; results_dir's files need be rank 0's only
// (the others may pass NULL). Every rank gets the same result, the one process's to the bit.
petal_status evaluate_split_on(const train_config *c, const train_model *tm, train_split split,
                               const char *results_dir, int64_t step, dist_comm *comm,
                               eval_result *out);
// {"step": s, "epoch": e, "split": "val", "<metric>": %.9g, ...} (malloc'd)
char *eval_result_json(const eval_result *r, int64_t step, int64_t epoch, const char *split);
