// train/rank_metrics: BLIP's itm_eval with numpy's stable tie order and the median rank, against
// numbers from numpy, closed-form cases, and a literal sort-and-search port on random matrices.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/view.h"
#include "tests/test_util.h"
#include "train/rank_metrics.h"

static rank_metrics compute(const float *i2t, const float *t2i, int64_t n_img, int64_t n_txt,
                            const int64_t *image_texts, const int64_t *text_image) {
    tensor *a = tensor_from_data(PETAL_F32, SHAPE(n_img, n_txt), i2t);
    tensor *b = tensor_from_data(PETAL_F32, SHAPE(n_txt, n_img), t2i);
    rank_metrics m;
    petal_status st = rank_metrics_compute(a, b, image_texts, text_image, &m);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
    tensor_free(a);
    tensor_free(b);
    return m;
}

// Field by field in the order of rank_metrics; prints every mismatch.
static bool metrics_equal(const rank_metrics *got, const double *want) {
    static const char *names[] = {"txt_r1",     "txt_r5",  "txt_r10", "txt_r_mean",
                                  "txt_mdr",    "img_r1",  "img_r5",  "img_r10",
                                  "img_r_mean", "img_mdr", "r_mean"};
    const double g[] = {got->txt_r1,     got->txt_r5,  got->txt_r10, got->txt_r_mean,
                        got->txt_mdr,    got->img_r1,  got->img_r5,  got->img_r10,
                        got->img_r_mean, got->img_mdr, got->r_mean};
    bool ok = true;
    for (int i = 0; i < 11; i++) {
        bool same = g[i] == want[i] || fabs(g[i] - want[i]) <= 1e-12 * fabs(want[i]);
        if (!same) fprintf(stderr, "%s: got %.17g, want %.17g\n", names[i], g[i], want[i]);
        ok = ok && same;
    }
    return ok;
}

// numpy 2.4, itm_eval of BLIP's train_retrieval.py with kind="stable" and np.median(ranks + 1):
//   rng = np.random.default_rng(7); s = rng.integers(0, 6, size=(r, c)).astype(np.float32)
//   s[rng.random((r, c)) < 0.3] = -100   (i2t first, then t2i)
// Image 0's first caption ties at 5 with texts 6 and 11, which come before it: rank 2, not 0.
START_TEST(test_matches_numpy) {
    const float i2t[5 * 12] = {5, -100, -100, -100, 3,    -100, 5, -100, 0,    -100, -100, 5,
                               5, 0,    2,    4,    -100, 4,    0, 2,    4,    1,    -100, 1,
                               4, -100, 5,    2,    2,    3,    3, 3,    3,    -100, 4,    -100,
                               4, -100, 2,    -100, 2,    1,    5, 0,    -100, 3,    0,    0,
                               2, -100, -100, 3,    5,    -100, 4, 5,    4,    3,    2,    -100};
    const float t2i[12 * 5] = {
        -100, 0, 5, 5,    3, -100, -100, 3, -100, 1, 2,    4, 0, -100, 4,    2, 4, 0, 5,    0,
        2,    5, 0, 3,    4, 2,    -100, 3, 2,    5, -100, 2, 0, 3,    1,    4, 5, 2, -100, -100,
        -100, 4, 4, -100, 5, 0,    2,    5, 1,    0, 3,    4, 4, -100, -100, 0, 5, 2, 5,    -100};
    const int64_t image_texts[] = {0, 3, 5, 9, 11, 12};
    const int64_t text_image[] = {0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4};
    // numpy's ranks: image -> text 2 3 3 2 8; text -> image 4 4 2 1 0 1 3 2 1 2 4 4
    const double want[] = {0.0,
                           80.0,
                           100.0,
                           60.0,
                           4.0,
                           8.333333333333334,
                           100.0,
                           100.0,
                           69.44444444444444,
                           3.0,
                           64.72222222222223};
    rank_metrics m = compute(i2t, t2i, 5, 12, image_texts, text_image);
    ck_assert(metrics_equal(&m, want));
}
END_TEST

// One text query per row of t2i, so each rank is read off one metric.
static double text_rank(const float *row, int64_t n_img, int64_t target) {
    float *i2t = calloc((size_t)n_img, sizeof *i2t); // (n_img, 1): every image's one text
    int64_t *image_texts = calloc((size_t)n_img + 1, sizeof *image_texts);
    image_texts[n_img] = 1;
    for (int64_t i = target + 1; i < n_img; i++) image_texts[i] = 1;
    rank_metrics m = compute(i2t, row, n_img, 1, image_texts, &target);
    free(i2t);
    free(image_texts);
    return m.img_mdr - 1; // one query: the median is its rank + 1
}

// np.argsort(s, kind="stable")[::-1]: among equal scores the higher index comes first; NaN sorts
// last ascending, so it comes first here.
START_TEST(test_ties_and_nan) {
    const float row[] = {1, 3, 3, 0, 3};
    ck_assert_double_eq(text_rank(row, 5, 4), 0);
    ck_assert_double_eq(text_rank(row, 5, 2), 1);
    ck_assert_double_eq(text_rank(row, 5, 1), 2); // a strict "how many score higher" says 0
    ck_assert_double_eq(text_rank(row, 5, 0), 3);
    ck_assert_double_eq(text_rank(row, 5, 3), 4);
    const float with_nan[] = {NAN, 2, NAN, 2};
    ck_assert_double_eq(text_rank(with_nan, 4, 2), 0);
    ck_assert_double_eq(text_rank(with_nan, 4, 0), 1);
    ck_assert_double_eq(text_rank(with_nan, 4, 3), 2);
    ck_assert_double_eq(text_rank(with_nan, 4, 1), 3);
    const float filled[] = {-100, -100, -100, -100, -100, -100}; // BLIP's fill outside k_test
    ck_assert_double_eq(text_rank(filled, 6, 0), 5);
}
END_TEST

// Images 0, 1 and 3 have two captions each, image 2 none (rank +inf: a miss, the worst median),
// image 4 the last six.
START_TEST(test_recall_and_median_closed_form) {
    // image -> text ranks 0, 5, inf, 10, 1: R@1 1/5, R@5 2/5, R@10 3/5; MdR the middle of
    // 1, 2, 6, 11, inf
    const float i2t[5 * 12] = {
        0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // text 1 first
        1, 1, 5, 1, 6, 6, 6, 6, 6, 1, 1, 1, // text 2 after texts 4..8
        9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, // no captions
        8, 8, 8, 8, 1, 1, 8, 8, 8, 8, 8, 8, // texts 4, 5 tie at 1 after ten 8s; 5 comes first
        0, 0, 0, 9, 0, 0, 0, 0, 5, 0, 0, 0, // text 8 after text 3
    };
    const int64_t image_texts[] = {0, 2, 4, 4, 6, 12};
    // text -> image ranks 0 4 1 0 1 2 0 4 0 3 2 3: MdR the mean of the 6th and 7th of
    // 1 1 1 1 2 2 3 3 4 4 5 5
    const float t2i[12 * 5] = {
        5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 0, 0, 0, 9, 0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 1, 0, 0,
        0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 3, 3, 3, 3, 3, 9, 9, 9, 0, 1, 9, 9, 0, 0, 1, 9, 9, 9, 0, 1,
    };
    const int64_t text_image[] = {0, 0, 1, 1, 3, 3, 4, 4, 4, 4, 4, 4};
    double txt_r1 = 20, txt_r5 = 40, txt_r10 = 60, img_r1 = 100.0 * 4 / 12, img_r5 = 100;
    double txt_mean = (txt_r1 + txt_r5 + txt_r10) / 3, img_mean = (img_r1 + img_r5 + img_r5) / 3;
    const double want[] = {txt_r1,
                           txt_r5,
                           txt_r10,
                           txt_mean,
                           6,
                           img_r1,
                           img_r5,
                           img_r5,
                           img_mean,
                           2.5,
                           (txt_mean + img_mean) / 2};
    rank_metrics m = compute(i2t, t2i, 5, 12, image_texts, text_image);
    ck_assert(metrics_equal(&m, want));
    // Odd query count: three text queries ranked 4, 0, 7 -> MdR 5.
    const float t2i_odd[3 * 8] = {
        1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    };
    const int64_t odd_texts[] = {0, 1, 2, 3, 3, 3, 3, 3, 3}, odd_images[] = {3, 7, 0};
    float i2t_odd[8 * 3] = {0};
    m = compute(i2t_odd, t2i_odd, 8, 3, odd_texts, odd_images);
    ck_assert_double_eq(m.img_mdr, 5);
    ck_assert_double_eq_tol(m.img_r5, 200.0 / 3, 1e-12);
}
END_TEST

// ---- a literal port of itm_eval: stable argsort ascending, reversed, then search ----

static const float *sort_row;

static int ascending(const void *pa, const void *pb) {
    int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    float x = sort_row[a], y = sort_row[b];
    if (isnan(x) != isnan(y)) return isnan(x) ? 1 : -1;
    if (!isnan(x) && x != y) return x < y ? -1 : 1;
    return (a > b) - (a < b); // stable: equal keys keep their index order
}

static int64_t literal_position(const float *row, int64_t n, int64_t target) {
    int64_t *inds = malloc((size_t)n * sizeof *inds);
    for (int64_t i = 0; i < n; i++) inds[i] = i;
    sort_row = row;
    qsort(inds, (size_t)n, sizeof *inds, ascending);
    int64_t pos = 0;
    while (inds[n - 1 - pos] != target) pos++; // np.where(inds[::-1] == target)
    free(inds);
    return pos;
}

static double literal_median(double *v, int64_t n) {
    for (int64_t i = 1; i < n; i++) // insertion sort: a different path from the library's qsort
        for (int64_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void literal_direction(const float *s, int64_t rows, int64_t cols, const int64_t *first,
                              const int64_t *last, double *out) {
    double *r1 = calloc((size_t)rows, sizeof *r1); // (rows,) rank + 1
    int64_t hits[3] = {0};
    for (int64_t q = 0; q < rows; q++) {
        double rank = 1e20;
        for (int64_t c = first[q]; c < last[q]; c++) {
            double p = (double)literal_position(s + q * cols, cols, c);
            if (p < rank) rank = p;
        }
        hits[0] += rank < 1;
        hits[1] += rank < 5;
        hits[2] += rank < 10;
        r1[q] = rank + 1;
    }
    for (int k = 0; k < 3; k++) out[k] = 100.0 * (double)hits[k] / (double)rows;
    out[3] = (out[0] + out[1] + out[2]) / 3;
    out[4] = literal_median(r1, rows);
    free(r1);
}

START_TEST(test_random_against_literal_port) {
    const int64_t n_img = 23, n_txt = 97;
    float *i2t = malloc((size_t)(n_img * n_txt) * sizeof *i2t); // (n_img, n_txt)
    float *t2i = malloc((size_t)(n_img * n_txt) * sizeof *t2i); // (n_txt, n_img)
    int64_t image_texts[24], first[97], last[97], text_image[97], img_first[23], img_last[23];
    srand(1234);
    for (int64_t i = 0; i < n_img * n_txt; i++) {
        i2t[i] = rand() % 4 == 0 ? -100.0f : (float)(rand() % 7) / 2;
        t2i[i] = rand() % 50 == 0 ? NAN : (float)(rand() % 5);
    }
    image_texts[0] = 0;
    for (int64_t i = 0; i < n_img; i++) { // 0 to 8 captions each, the rest to the last image
        int64_t k = i == n_img - 1 ? n_txt - image_texts[i] : rand() % 9;
        if (image_texts[i] + k > n_txt) k = n_txt - image_texts[i];
        image_texts[i + 1] = image_texts[i] + k;
        img_first[i] = image_texts[i];
        img_last[i] = image_texts[i + 1];
        for (int64_t t = image_texts[i]; t < image_texts[i + 1]; t++) {
            text_image[t] = first[t] = i;
            last[t] = i + 1;
        }
    }
    double want[11];
    literal_direction(i2t, n_img, n_txt, img_first, img_last, want);
    literal_direction(t2i, n_txt, n_img, first, last, want + 5);
    if (want[4] >= 1e20) want[4] = INFINITY; // BLIP's 1e20 for an image without captions
    want[10] = (want[3] + want[8]) / 2;
    rank_metrics m = compute(i2t, t2i, n_img, n_txt, image_texts, text_image);
    ck_assert(metrics_equal(&m, want));
    ck_assert(want[0] > 0 && want[0] < 100 && want[5] > 0 && want[5] < 100); // not degenerate
    free(i2t);
    free(t2i);
}
END_TEST

// f64 scores, a transposed view and a scope give the same numbers as contiguous f32.
START_TEST(test_tensor_layouts) {
    const float i2t[2 * 3] = {1, 2, 3, 3, 2, 1};
    const double i2t_t[3 * 2] = {1, 3, 2, 2, 3, 1}; // i2t transposed, as t2i
    const int64_t image_texts[] = {0, 2, 3}, text_image[] = {0, 0, 1};
    tensor *a = tensor_from_data(PETAL_F32, SHAPE(2, 3), i2t);
    tensor *b = tensor_from_data(PETAL_F64, SHAPE(3, 2), i2t_t);
    tensor *a_t = view_transpose(b, 0, 1); // (2, 3), not contiguous
    rank_metrics m1, m2;
    ck_assert_int_eq(rank_metrics_compute(a, b, image_texts, text_image, &m1), PETAL_OK);
    ck_assert_int_eq(rank_metrics_compute(a_t, b, image_texts, text_image, &m2), PETAL_OK);
    ck_assert_mem_eq(&m1, &m2, sizeof m1);
    // image -> text ranks 1 (text 1 after text 2) and 2; text -> image 1, 1 (a tie), 1
    ck_assert_double_eq(m1.txt_mdr, 2.5);
    ck_assert_double_eq(m1.txt_r5, 100);
    ck_assert_double_eq(m1.img_mdr, 2);
    ck_assert_double_eq(m1.img_r1, 0);
    tensor_free(a_t);
    tensor_free(a);
    tensor_free(b);
}
END_TEST

START_TEST(test_errors_name_the_problem) {
    tensor *a = tensor_zeros(PETAL_F32, SHAPE(2, 3)), *b = tensor_zeros(PETAL_F32, SHAPE(3, 2));
    tensor *wrong = tensor_zeros(PETAL_F32, SHAPE(2, 3));
    rank_metrics m;
    const int64_t image_texts[] = {0, 2, 3}, text_image[] = {0, 0, 1};
    ck_assert_int_eq(rank_metrics_compute(a, wrong, image_texts, text_image, &m), PETAL_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "t2i [2, 3]"));
    const int64_t bad_image[] = {0, 0, 2};
    ck_assert_int_eq(rank_metrics_compute(a, b, image_texts, bad_image, &m), PETAL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "text 2: expected an image index below 2, "
                                                        "found 2"));
    const int64_t bad_range[] = {0, 2, 1};
    ck_assert_int_eq(rank_metrics_compute(a, b, bad_range, text_image, &m), PETAL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "image 1"));
    const int64_t past_end[] = {0, 2, 4};
    ck_assert_int_eq(rank_metrics_compute(a, b, past_end, text_image, &m), PETAL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "[2, 4)"));
    tensor_free(a);
    tensor_free(b);
    tensor_free(wrong);
}
END_TEST

int main(void) {
    Suite *s = suite_create("rank_metrics");
    TCase *tc = tcase_create("rank_metrics");
    tcase_add_test(tc, test_matches_numpy);
    tcase_add_test(tc, test_ties_and_nan);
    tcase_add_test(tc, test_recall_and_median_closed_form);
    tcase_add_test(tc, test_random_against_literal_port);
    tcase_add_test(tc, test_tensor_layouts);
    tcase_add_test(tc, test_errors_name_the_problem);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
