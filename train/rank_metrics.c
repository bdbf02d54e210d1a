#include "train/rank_metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "io/buffer.h"

// Whether score a (column ia) comes before score b (column ib) in
// np.argsort(row, kind="stable")[::-1]: higher first, NaN highest, the higher column first on ties.
static bool comes_before(float a, int64_t ia, float b, int64_t ib) {
    if (isnan(a) || isnan(b)) return isnan(a) && (!isnan(b) || ia > ib);
    return a > b || (a == b && ia > ib);
}

// The 0-based position of column `target` in the row's order: how many columns come before it.
static int64_t position_of(const float *row, int64_t n, int64_t target) {
    int64_t before = 0;
    for (int64_t c = 0; c < n; c++) before += comes_before(row[c], c, row[target], target);
    return before;
}

// The best rank among columns [first, last) of the row: that of the column coming first, found in
// one pass instead of one position per column. +infinity for an empty range.
static double best_rank(const float *row, int64_t n, int64_t first, int64_t last) {
    if (first == last) return INFINITY;
    int64_t best = first;
    for (int64_t c = first + 1; c < last; c++)
        if (comes_before(row[c], c, row[best], best)) best = c;
    return (double)position_of(row, n, best);
}

static double recall_at(const double *ranks, int64_t n, int k) {
    int64_t hits = 0;
    for (int64_t i = 0; i < n; i++) hits += ranks[i] < k;
    return 100.0 * (double)hits / (double)n; // BLIP: 100.0 * len(np.where(ranks < k)[0]) / n
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// numpy.median of rank + 1.
static double median_rank(const double *ranks, int64_t n) {
    double *sorted = buffer_alloc((size_t)n * sizeof *sorted, "median rank"); // (n,) rank + 1
    for (int64_t i = 0; i < n; i++) sorted[i] = ranks[i] + 1;
    qsort(sorted, (size_t)n, sizeof *sorted, compare_doubles);
    double m = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    free(sorted);
    return m;
}

static void summarize(const double *ranks, int64_t n, double *r1, double *r5, double *r10,
                      double *r_mean, double *mdr) {
    *r1 = recall_at(ranks, n, 1);
    *r5 = recall_at(ranks, n, 5);
    *r10 = recall_at(ranks, n, 10);
    *r_mean = (*r1 + *r5 + *r10) / 3;
    *mdr = median_rank(ranks, n);
}

static petal_status check_shapes(const tensor *i2t, const tensor *t2i) {
    char a[SHAPE_STR_MAX], b[SHAPE_STR_MAX];
    if (i2t->ndim != 2 || t2i->ndim != 2 || i2t->shape[0] != t2i->shape[1] ||
        i2t->shape[1] != t2i->shape[0] || tensor_numel(i2t) == 0)
        return petal_error(PETAL_ERR_SHAPE,
                           "rank metrics: expected i2t scores (images, texts) and t2i scores "
                           "(texts, images), both non-empty; found i2t %s and t2i %s",
                           shape_str(i2t->ndim, i2t->shape, a, sizeof a),
                           shape_str(t2i->ndim, t2i->shape, b, sizeof b));
    return PETAL_OK;
}

static petal_status check_truth(int64_t n_images, int64_t n_texts, const int64_t *image_texts,
                                const int64_t *text_image) {
    for (int64_t i = 0; i < n_images; i++)
        if (image_texts[i] < 0 || image_texts[i] > image_texts[i + 1] ||
            image_texts[i + 1] > n_texts)
            return petal_error(PETAL_ERR_ARG,
                               "rank metrics: image %lld: expected its texts to be a range within "
                               "the %lld texts, found [%lld, %lld)",
                               (long long)i, (long long)n_texts, (long long)image_texts[i],
                               (long long)image_texts[i + 1]);
    for (int64_t t = 0; t < n_texts; t++)
        if (text_image[t] < 0 || text_image[t] >= n_images)
            return petal_error(PETAL_ERR_ARG,
                               "rank metrics: text %lld: expected an image index below %lld, "
                               "found %lld",
                               (long long)t, (long long)n_images, (long long)text_image[t]);
    return PETAL_OK;
}

// The scores as a contiguous f32 host array: t's own memory when it is one (a COCO i2t matrix is
// 500 MB), else a copy made into *copy.
static const float *host_scores(const tensor *t, tensor **copy) {
    *copy = NULL;
    if (t->device.type == PETAL_CPU && t->dtype == PETAL_F32 && tensor_is_contiguous(t))
        return tensor_data_f32(t);
    tensor *cpu = tensor_to(t, DEVICE_CPU);
    *copy = tensor_cast(cpu, PETAL_F32);
    tensor_free(cpu);
    return tensor_data_f32(*copy);
}

petal_status rank_metrics_compute(const tensor *i2t, const tensor *t2i, const int64_t *image_texts,
                                  const int64_t *text_image, rank_metrics *out) {
    petal_status st = check_shapes(i2t, t2i);
    if (st) return st;
    int64_t n_img = i2t->shape[0], n_txt = i2t->shape[1];
    if ((st = check_truth(n_img, n_txt, image_texts, text_image))) return st;
    tensor *copy_i2t, *copy_t2i;
    const float *s_i2t = host_scores(i2t, &copy_i2t), *s_t2i = host_scores(t2i, &copy_t2i);
    double *ranks = buffer_alloc((size_t)(n_img > n_txt ? n_img : n_txt) * sizeof *ranks,
                                 "retrieval ranks"); // (max(I, T),) one per query
    for (int64_t i = 0; i < n_img; i++)
        ranks[i] = best_rank(s_i2t + i * n_txt, n_txt, image_texts[i], image_texts[i + 1]);
    summarize(ranks, n_img, &out->txt_r1, &out->txt_r5, &out->txt_r10, &out->txt_r_mean,
              &out->txt_mdr);
    for (int64_t t = 0; t < n_txt; t++)
        ranks[t] = (double)position_of(s_t2i + t * n_img, n_img, text_image[t]);
    summarize(ranks, n_txt, &out->img_r1, &out->img_r5, &out->img_r10, &out->img_r_mean,
              &out->img_mdr);
    out->r_mean = (out->txt_r_mean + out->img_r_mean) / 2;
    free(ranks);
    tensor_free(copy_i2t);
    tensor_free(copy_t2i);
    return PETAL_OK;
}
