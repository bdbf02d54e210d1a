// Retrieval metrics from score matrices: BLIP's itm_eval (train_retrieval.py) plus the median rank.
//
// A query's rank is the 0-based position of its ground truth in the row ordered as
// np.argsort(score, kind="stable")[::-1]: scores descending, among equal scores the higher index
// first, NaN above every number (numpy sorts it last). BLIP writes np.argsort(score)[::-1], whose
// default kind leaves the order among equal scores to numpy's version and the CPU (numpy 2.4
// keeps index order only on CPUs without AVX2, for rows of at most 16 scores, which insertion
// sort handles), so the stable order is the reproducible one. Ties are common: BLIP fills the
// scores outside each query's k_test candidates with -100.
//
// Image -> text (txt_*): an image's rank is the best among its captions. Text -> image (img_*).
// R@K is 100 * (fraction of queries with rank < K), as BLIP reports it; *_r_mean is the mean of
// R@1, R@5 and R@10, r_mean the mean of the two. The median rank (MdR, as video retrieval papers
// report it) is the median of rank + 1 over the queries, 1-based; with an even number of queries
// it is the mean of the two middle values, like numpy.median. An image with no captions ranks
// +infinity: a miss for every R@K (BLIP gives it 1e20), the worst for the median.
#pragma once

#include <stdint.h>

#include "tensor/error.h"
#include "tensor/tensor.h"

typedef struct {
    double txt_r1, txt_r5, txt_r10, txt_r_mean, txt_mdr; // image -> text
    double img_r1, img_r5, img_r10, img_r_mean, img_mdr; // text -> image
    double r_mean;
} rank_metrics;

// i2t (I, T) and t2i (T, I) scores (any dtype and device; compared as f32, as BLIP's are);
// image_texts (I + 1,): the captions of image i are texts [image_texts[i], image_texts[i + 1]);
// text_image (T,): the image of each text (BLIP's img2txt and txt2img; io/annotations.h's
// ann_retrieval_set has both). Errors name what does not fit: shapes, or ground truth out of range.
petal_status rank_metrics_compute(const tensor *i2t, const tensor *t2i, const int64_t *image_texts,
                                  const int64_t *text_image, rank_metrics *out);
