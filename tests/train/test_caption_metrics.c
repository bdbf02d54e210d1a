// train/caption_metrics: the PTB tokenizer and BLEU / ROUGE-L / CIDEr-D against pycocoevalcap 1.2
// (fixtures and expected values from tools/make_caption_metric_fixtures.py), cases small enough
// to check by hand, and errors that name the file, the entry and the field.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "tests/test_util.h"
#include "train/caption_metrics.h"

#define DATA      PETAL_TEST_DATA "/caption_metrics/"
#define SCORE_TOL 1e-6 // pycocoevalcap's scores, absolute
#define HAND_TOL  1e-9 // hand-computed scores (BLEU's guards move them by ~1e-10)

static json_value *expected_root;

static void load_expected(void) {
    ck_assert_msg(json_parse_file(DATA "expected.json", &expected_root) == PETAL_OK, "%s",
                  petal_error_message());
}

static void free_expected(void) {
    json_free(expected_root);
}

static const char *text_at(const json_value *obj, const char *key) {
    const char *s;
    ck_assert_msg(json_get_string(obj, key, &s, NULL) == PETAL_OK, "%s", petal_error_message());
    return s;
}

// ---- the fixture's captions, grouped as the scorers take them ----

typedef struct {
    int64_t n; // images
    const char **pred_raw, **pred_tok;
    const char ***refs_raw, ***refs_tok; // per image
    int *n_refs;
    int64_t n_flat; // every reference, image after image: one tokenizer input
    const char **flat_raw, **flat_tok;
} fixture;

static fixture fixture_load(void) {
    const json_value *images = json_get(expected_root, "images");
    fixture f = {.n = (int64_t)json_len(images)};
    f.pred_raw = calloc((size_t)f.n, sizeof *f.pred_raw);
    f.pred_tok = calloc((size_t)f.n, sizeof *f.pred_tok);
    f.refs_raw = calloc((size_t)f.n, sizeof *f.refs_raw);
    f.refs_tok = calloc((size_t)f.n, sizeof *f.refs_tok);
    f.n_refs = calloc((size_t)f.n, sizeof *f.n_refs);
    for (int64_t i = 0; i < f.n; i++)
        f.n_flat += (int64_t)json_len(json_get(json_at(images, (size_t)i), "refs"));
    f.flat_raw = calloc((size_t)f.n_flat, sizeof *f.flat_raw);
    f.flat_tok = calloc((size_t)f.n_flat, sizeof *f.flat_tok);
    for (int64_t i = 0, k = 0; i < f.n; i++) {
        const json_value *img = json_at(images, (size_t)i), *refs = json_get(img, "refs");
        f.pred_raw[i] = text_at(json_get(img, "pred"), "raw");
        f.pred_tok[i] = text_at(json_get(img, "pred"), "tok");
        f.n_refs[i] = (int)json_len(refs);
        f.refs_raw[i] = f.flat_raw + k;
        f.refs_tok[i] = f.flat_tok + k;
        for (int r = 0; r < f.n_refs[i]; r++, k++) {
            f.flat_raw[k] = text_at(json_at(refs, (size_t)r), "raw");
            f.flat_tok[k] = text_at(json_at(refs, (size_t)r), "tok");
        }
    }
    return f;
}

static void fixture_free(fixture *f) {
    free(f->pred_raw);
    free(f->pred_tok);
    free(f->refs_raw);
    free(f->refs_tok);
    free(f->n_refs);
    free(f->flat_raw);
    free(f->flat_tok);
}

// Tokenizes raw[0, n) as one input and compares each caption with PTBTokenizer's output.
static void check_tokenized(const char *what, const char *const *raw, const char *const *want,
                            int64_t n) {
    char **got = calloc((size_t)n, sizeof *got);
    ck_assert_msg(caption_tokenize(raw, n, got) == PETAL_OK, "%s", petal_error_message());
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; i++)
        if (strcmp(got[i], want[i]) != 0 && wrong++ < 5)
            fprintf(stderr, "%s %lld: '%s' -> '%s', PTBTokenizer '%s'\n", what, (long long)i,
                    raw[i], got[i], want[i]);
    caption_tokens_free(got, n);
    free(got);
    ck_assert_msg(wrong == 0, "%s: %lld of %lld captions tokenized differently", what,
                  (long long)wrong, (long long)n);
}

// got against pycocoevalcap's scores in expected.json; prints the worst metric.
static void check_scores(const char *what, const caption_scores *got) {
    static const char *const names[] = {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"};
    const json_value *want = json_get(expected_root, "scores");
    double values[] = {got->bleu[0], got->bleu[1], got->bleu[2],
                       got->bleu[3], got->rouge_l, got->cider};
    double worst = 0, w;
    int worst_k = 0;
    for (int k = 0; k < 6; k++) {
        ck_assert_msg(json_get_number(want, names[k], &w) == PETAL_OK, "%s", petal_error_message());
        double err = isnan(values[k]) ? INFINITY : fabs(values[k] - w);
        if (err > worst) {
            worst = err;
            worst_k = k;
        }
    }
    json_get_number(want, names[worst_k], &w);
    ck_assert_msg(worst <= SCORE_TOL, "%s: worst %s = %.12g, pycocoevalcap %.12g (|diff| %.3g)",
                  what, names[worst_k], values[worst_k], w, worst);
}

// ---- tokenizer ----

START_TEST(test_tokenizer_matches_ptbtokenizer) {
    fixture f = fixture_load();
    check_tokenized("reference", f.flat_raw, f.flat_tok, f.n_flat);
    check_tokenized("candidate", f.pred_raw, f.pred_tok, f.n);
    const json_value *cases = json_get(expected_root, "tokenizer_cases");
    int64_t n = (int64_t)json_len(cases);
    const char **raw = calloc((size_t)n, sizeof *raw), **tok = calloc((size_t)n, sizeof *tok);
    for (int64_t i = 0; i < n; i++) {
        raw[i] = text_at(json_at(cases, (size_t)i), "raw");
        tok[i] = text_at(json_at(cases, (size_t)i), "tok");
    }
    check_tokenized("tokenizer case", raw, tok, n);
    free(raw);
    free(tok);
    fixture_free(&f);
}
END_TEST

// What each kind of text becomes, on its own (as the only caption).
START_TEST(test_tokenizer_examples) {
    static const char *const cases[][2] = {
        {"Don't go (now)!", "do n't go -lrb- now -rrb-"},
        {"A man's \"big\" dog, isn't it?", "a man 's big dog is n't it"},
        {"I cannot wait; we're gonna go.", "i can not wait we 're gon na go"},
        {"1,000.5 dogs -- 3/4 re-use", "1,000.5 dogs 3/4 re-use"},
        {"Mr. Smith in the U.S. etc.", "mr. smith in the u.s. etc."},
        {"\u201cQuoted\u201d \u2018text\u2019 \u2014 here\u2026", "quoted text here"},
        {"[a] {b} & &amp; \u00bd", "-lsb- a -rsb- -lcb- b -rcb- & & 1/2"},
        {"...", ""},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_tokenized("example", &cases[i][0], &cases[i][1], 1);
}
END_TEST

// The captions are one text, so a caption's last token can depend on the next caption: "a."
// before a capitalised pronoun or article ends a sentence (its period is split off and dropped).
START_TEST(test_tokenizer_reads_across_captions) {
    const char *raw[] = {"the letter a.", "A dog", "the letter a.", "two dogs"};
    const char *want[] = {"the letter a", "a dog", "the letter a.", "two dogs"};
    check_tokenized("across captions", raw, want, 4);
}
END_TEST

// ---- scores ----

START_TEST(test_scores_of_files) {
    caption_scores s;
    ck_assert_msg(caption_metrics_score_files(DATA "pred.json", DATA "ann.json", &s) == PETAL_OK,
                  "%s", petal_error_message());
    check_scores("pred.json against ann.json", &s);
}
END_TEST

START_TEST(test_scores_of_captions) {
    fixture f = fixture_load();
    caption_scores s;
    ck_assert_msg(caption_metrics_score(f.pred_raw, (const char *const *const *)f.refs_raw,
                                        f.n_refs, f.n, &s) == PETAL_OK,
                  "%s", petal_error_message());
    check_scores("raw captions", &s);
    // PTBTokenizer's own output: the scorers alone
    ck_assert_msg(caption_metrics_score_tokenized(f.pred_tok,
                                                  (const char *const *const *)f.refs_tok, f.n_refs,
                                                  f.n, &s) == PETAL_OK,
                  "%s", petal_error_message());
    check_scores("PTBTokenizer's tokens", &s);
    fixture_free(&f);
}
END_TEST

static caption_scores score(const char *const *pred, const char *const *const *refs,
                            const int *n_refs, int64_t n) {
    caption_scores s;
    ck_assert_msg(caption_metrics_score(pred, refs, n_refs, n, &s) == PETAL_OK, "%s",
                  petal_error_message());
    return s;
}

static void assert_near(const char *what, double got, double want) {
    ck_assert_msg(fabs(got - want) <= HAND_TOL, "%s = %.12g, want %.12g", what, got, want);
}

// Each candidate equals its only reference and the two images share no word: every n-gram has
// document frequency 1 of 2 images, so each cosine is 1 and CIDEr-D is 10 times their mean.
START_TEST(test_identical_captions) {
    const char *pred[] = {"A red bus on the street.", "Two dogs play in grass"};
    const char *r0[] = {"a red bus on the street"}, *r1[] = {"two dogs play in the grass!"};
    const char *r1_same[] = {"Two dogs play in grass"};
    const char *const *refs[] = {r0, r1_same};
    caption_scores s = score(pred, refs, (int[]){1, 1}, 2);
    for (int k = 0; k < 4; k++) assert_near("BLEU", s.bleu[k], 1);
    assert_near("ROUGE-L", s.rouge_l, 1);
    assert_near("CIDEr-D", s.cider, 10);
    // one image: idf = log(1 image / 1) = 0 makes every weight 0, whatever the captions
    s = score(pred, refs, (int[]){1}, 1);
    assert_near("CIDEr-D of one image", s.cider, 0);
    refs[1] = r1; // "the" is in both images now, and the second candidate misses it
    s = score(pred, refs, (int[]){1, 1}, 2);
    ck_assert_msg(s.cider < 10 && s.bleu[0] < 1, "CIDEr-D %g, BLEU-1 %g", s.cider, s.bleu[0]);
}
END_TEST

// "a cat" against "a cat sat on the mat": every n-gram of the candidate matches (2 unigrams, 1
// bigram, no 3- or 4-grams), the brevity penalty is exp(1 - 6/2), and the missing 3- and
// 4-grams each count (1e-15 / 1e-9), pycocoevalcap's guards. ROUGE-L: LCS 2, P = 1, R = 1/3.
START_TEST(test_short_candidate) {
    const char *pred[] = {"a cat"}, *r0[] = {"a cat sat on the mat"};
    const char *const *refs[] = {r0};
    caption_scores s = score(pred, refs, (int[]){1}, 1);
    double bp = exp(-2);
    assert_near("BLEU-1", s.bleu[0], bp);
    assert_near("BLEU-2", s.bleu[1], bp);
    assert_near("BLEU-3", s.bleu[2], bp * 1e-2);
    assert_near("BLEU-4", s.bleu[3], bp * 1e-3);
    assert_near("ROUGE-L", s.rouge_l, 2.44 / 5.32); // (1 + 1.2^2) P R / (R + 1.2^2 P)
    assert_near("CIDEr-D", s.cider, 0);
}
END_TEST

START_TEST(test_format) {
    caption_scores s = {{0.5, 0.25, 1.0 / 3, 0}, 0.125, 10};
    char line[256];
    int n = caption_scores_format(&s, line, sizeof line);
    ck_assert_str_eq(line, "{\"Bleu_1\": 0.5, \"Bleu_2\": 0.25, \"Bleu_3\": 0.333333333, "
                           "\"Bleu_4\": 0, \"ROUGE_L\": 0.125, \"CIDEr\": 10}");
    ck_assert_int_eq(n, (int)strlen(line));
}
END_TEST

// ---- errors ----

static const char *const ann_ok =
    "{\"images\": [{\"id\": 1}, {\"id\": \"two\"}, {\"id\": 3}], \"annotations\": ["
    "{\"image_id\": 1, \"caption\": \"a dog\", \"id\": 1},"
    "{\"image_id\": \"two\", \"caption\": \"a cat\", \"id\": 2}]}";

// Writes a results file and a ground truth and scores them.
static petal_status score_texts(const char *pred, const char *ann, const char **pred_path,
                                const char **ann_path, caption_scores *s) {
    *pred_path = test_dir_write("pred.json", pred);
    *ann_path = test_dir_write("ann.json", ann);
    return caption_metrics_score_files(*pred_path, *ann_path, s);
}

// Scores pred (a results file's text) against ann (a ground truth's); expects status and a
// message naming the file `blame` ("pred" or "ann") and saying `message`.
static void check_error(const char *pred, const char *ann, petal_status status, const char *blame,
                        const char *message) {
    const char *pred_path, *ann_path;
    caption_scores s;
    petal_status got = score_texts(pred, ann, &pred_path, &ann_path, &s);
    const char *msg = petal_error_message();
    ck_assert_msg(got == status, "status %s, want %s (%s)", petal_status_name(got),
                  petal_status_name(status), msg);
    ck_assert_msg(strstr(msg, strcmp(blame, "pred") == 0 ? pred_path : ann_path) &&
                      strstr(msg, message),
                  "message '%s' should name the %s file and say '%s'", msg, blame, message);
}

START_TEST(test_file_errors) {
    const char *pred_path, *ann_path;
    caption_scores s;
    ck_assert_msg(score_texts("[{\"image_id\": \"two\", \"caption\": \"a cat\"}, "
                              "{\"image_id\": 1, \"caption\": \"a dog\"}]",
                              ann_ok, &pred_path, &ann_path, &s) == PETAL_OK,
                  "%s", petal_error_message()); // the valid base the cases below break
    check_error("[{\"image_id\": 1, \"caption\": \"x\"}, {\"image_id\": 7, \"caption\": \"y\"}]",
                ann_ok, PETAL_ERR_KEY, "pred", "[1].image_id: image 7 is not among the images of");
    check_error("[{\"image_id\": 1, \"caption\": \"x\"}, {\"image_id\": 1, \"caption\": \"y\"}]",
                ann_ok, PETAL_ERR_FORMAT, "pred",
                "[1].image_id: a second result for image 1 (the first is [0])");
    check_error("[{\"image_id\": \"two\", \"caption\": 5}]", ann_ok, PETAL_ERR_FORMAT, "pred",
                "[0].caption: expected a string, found a number");
    check_error("[{\"image_id\": 1.5, \"caption\": \"x\"}]", ann_ok, PETAL_ERR_FORMAT, "pred",
                "[0].image_id: expected an integer or a string (an image id)");
    check_error("[{\"caption\": \"x\"}]", ann_ok, PETAL_ERR_KEY, "pred",
                "[0]: missing key \"image_id\"");
    check_error("[{\"image_id\": 1, \"caption\": \"a\\u0000b\"}]", ann_ok, PETAL_ERR_FORMAT, "pred",
                "[0].caption: expected a caption without NUL characters");
    check_error("{\"image_id\": 1}", ann_ok, PETAL_ERR_FORMAT, "pred", "expected an array");
    check_error("[]", ann_ok, PETAL_ERR_FORMAT, "pred", "no results");
    check_error("[{\"image_id\": 3, \"caption\": \"x\"}]", ann_ok, PETAL_ERR_FORMAT, "ann",
                "image 3 (result [0] of");
    check_error("[{\"image_id\": 1, \"caption\": \"x\"}]", "{\"images\": [{\"id\": 1}]}",
                PETAL_ERR_KEY, "ann", "missing key \"annotations\"");
    check_error("[{\"image_id\": 1, \"caption\": \"x\"}]",
                "{\"images\": [{\"id\": 1}], \"annotations\": [{\"image_id\": 1, "
                "\"caption\": [\"x\"]}]}",
                PETAL_ERR_FORMAT, "ann",
                "annotations[0].caption: expected a string, found an array");
    check_error("[{\"image_id\": 1, \"caption\": \"x\"}]", "{\"images\": [{\"id\": 1}],",
                PETAL_ERR_FORMAT, "ann", "");
    ck_assert_int_eq(caption_metrics_score_files("/nonexistent/pred.json", DATA "ann.json", &s),
                     PETAL_ERR_IO);
    ck_assert(strstr(petal_error_message(), "/nonexistent/pred.json"));
}
END_TEST

// The images are scored in the ground truth's order (an id listed twice counts where it first
// appears), whatever the results' order, and that order is the tokenizer's: "a." ends a
// sentence before the next image's "A dog." and keeps its period at the end of the text.
START_TEST(test_ground_truth_order) {
    const char *pred_path, *ann_path;
    caption_scores s;
    ck_assert_int_eq(
        score_texts("[{\"image_id\": 2, \"caption\": \"a dog\"}, "
                    "{\"image_id\": 1, \"caption\": \"the letter a\"}]",
                    "{\"images\": [{\"id\": 1}, {\"id\": 2}, {\"id\": 1}], \"annotations\": ["
                    "{\"image_id\": 2, \"caption\": \"A dog.\"},"
                    "{\"image_id\": 1, \"caption\": \"the letter a.\"}]}",
                    &pred_path, &ann_path, &s),
        PETAL_OK);
    assert_near("ROUGE-L", s.rouge_l, 1); // both references tokenize to their candidate
    assert_near("BLEU-1", s.bleu[0], 1);
}
END_TEST

START_TEST(test_argument_errors) {
    const char *pred[] = {"a dog", "a cat"}, *r0[] = {"a dog"}, *bad[] = {"a \xff dog"};
    const char *const *refs[] = {r0, r0};
    caption_scores s;
    ck_assert_int_eq(caption_metrics_score(pred, refs, (int[]){1, 1}, 0, &s), PETAL_ERR_ARG);
    ck_assert(strstr(petal_error_message(), "no images"));
    ck_assert_int_eq(caption_metrics_score(pred, refs, (int[]){1, 0}, 2, &s), PETAL_ERR_ARG);
    ck_assert(strstr(petal_error_message(), "image 1 has 0 references"));
    refs[1] = bad;
    ck_assert_int_eq(caption_metrics_score(pred, refs, (int[]){1, 1}, 2, &s), PETAL_ERR_ARG);
    ck_assert(strstr(petal_error_message(), "reference 0 of image 1 is not valid UTF-8 (byte 2)"));
    ck_assert_int_eq(caption_metrics_score_tokenized(bad, refs, (int[]){1}, 1, &s), PETAL_ERR_ARG);
    ck_assert(strstr(petal_error_message(), "the candidate of image 0 is not valid UTF-8"));
    char *out[1];
    ck_assert_int_eq(caption_tokenize(bad, 1, out), PETAL_ERR_ARG);
    ck_assert(strstr(petal_error_message(), "caption 0 is not valid UTF-8 (byte 2)"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("caption_metrics");
    TCase *tc = tcase_create("caption_metrics");
    tcase_add_checked_fixture(tc, load_expected, free_expected);
    tcase_add_checked_fixture(tc, test_dir_make, test_dir_remove);
    tcase_add_test(tc, test_tokenizer_matches_ptbtokenizer);
    tcase_add_test(tc, test_tokenizer_examples);
    tcase_add_test(tc, test_tokenizer_reads_across_captions);
    tcase_add_test(tc, test_scores_of_files);
    tcase_add_test(tc, test_scores_of_captions);
    tcase_add_test(tc, test_identical_captions);
    tcase_add_test(tc, test_short_candidate);
    tcase_add_test(tc, test_format);
    tcase_add_test(tc, test_file_errors);
    tcase_add_test(tc, test_ground_truth_order);
    tcase_add_test(tc, test_argument_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
