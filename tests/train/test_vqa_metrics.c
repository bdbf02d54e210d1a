// train/vqa_metrics: normalisation and accuracy against the official vqaEval.py (fixture written
// by tools/make_vqa_metric_fixtures.py), the leave-one-out values in closed form, and the results
// file read back.
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "tests/test_util.h"
#include "train/vqa_metrics.h"

static json_value *load_cases(void) {
    json_value *root;
    petal_status st = json_parse_file(PETAL_TEST_DATA "/vqa_metrics/cases.json", &root);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
    return root;
}

static const char *string_at(const json_value *v) {
    const char *s;
    ck_assert_int_eq(json_as_string(v, &s, NULL), PETAL_OK);
    return s;
}

START_TEST(test_normalize_matches_official) {
    json_value *root = load_cases();
    const json_value *cases = json_get(root, "normalize");
    ck_assert_uint_ge(json_len(cases), 60);
    int wrong = 0;
    for (size_t i = 0; i < json_len(cases); i++) {
        const char *answer = string_at(json_get(json_at(cases, i), "answer"));
        const char *want = string_at(json_get(json_at(cases, i), "expected"));
        char *got = vqa_normalize_answer(answer);
        if (strcmp(got, want) != 0) {
            fprintf(stderr, "normalize \"%s\": got \"%s\", want \"%s\"\n", answer, got, want);
            wrong++;
        }
        free(got);
    }
    json_free(root);
    ck_assert_int_eq(wrong, 0);
}
END_TEST

START_TEST(test_accuracy_matches_official) {
    json_value *root = load_cases();
    const json_value *cases = json_get(root, "accuracy");
    ck_assert_uint_ge(json_len(cases), 20);
    int wrong = 0;
    for (size_t i = 0; i < json_len(cases); i++) {
        const json_value *c = json_at(cases, i), *list = json_get(c, "answers");
        const char *answers[16];
        ck_assert_uint_le(json_len(list), 16);
        for (size_t k = 0; k < json_len(list); k++) answers[k] = string_at(json_at(list, k));
        double want,
            got = vqa_accuracy(string_at(json_get(c, "pred")), answers, (int)json_len(list));
        ck_assert_int_eq(json_get_number(c, "expected", &want), PETAL_OK);
        if (got != want) { // the same sums in the same order: bitwise equal
            fprintf(stderr, "accuracy case %zu (pred \"%s\"): got %.17g, want %.17g\n", i,
                    string_at(json_get(c, "pred")), got, want);
            wrong++;
        }
    }
    json_free(root);
    ck_assert_int_eq(wrong, 0);
}
END_TEST

// 10 answers, k of them "2": the mean over leave-one-out subsets of min(1, matches / 3).
START_TEST(test_accuracy_leave_one_out_values) {
    const double want[] = {0, 0.3, 0.6, 0.9, 1.0, 1.0};
    const char *others[] = {"1", "3", "4", "5", "6", "7", "8", "9", "10", "many"};
    for (int k = 0; k <= 5; k++) {
        const char *answers[10];
        for (int i = 0; i < 10; i++) answers[i] = i < k ? "2" : others[i];
        double got = vqa_accuracy("two", answers, 10); // normalised: the answers differ
        ck_assert_msg(fabs(got - want[k]) < 1e-12, "%d agree: got %.17g, want %g", k, got, want[k]);
    }
}
END_TEST

// The official code works on bytes (Python 2): only ASCII letters are lowercased.
START_TEST(test_normalize_is_bytewise) {
    char *got = vqa_normalize_answer("The CAF\xc3\x89, Two");
    ck_assert_str_eq(got, "caf\xc3\x89 2");
    free(got);
}
END_TEST

static size_t directory_entries(const char *path) {
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

START_TEST(test_results_round_trip) {
    const char *path = test_dir_path("results.json");
    const int64_t ids[] = {1, 262148000, -3};
    const char *answers[] = {"yes", "say \"cheese\"\n\\ \x01", "caf\xc3\xa9"};
    ck_assert_int_eq(vqa_results_write(path, ids, answers, 3), PETAL_OK);
    ck_assert_int_eq(vqa_results_write(path, ids + 1, answers + 1, 1), PETAL_OK); // replaces
    ck_assert_int_eq(vqa_results_write(path, ids, answers, 3), PETAL_OK);
    ck_assert_uint_eq(directory_entries(test_dir_path("")), 1); // no temporary file left
    json_value *root;
    ck_assert_msg(json_parse_file(path, &root) == PETAL_OK, "%s", petal_error_message());
    ck_assert_uint_eq(json_len(root), 3);
    for (size_t i = 0; i < 3; i++) {
        const json_value *e = json_at(root, i);
        int64_t id;
        const char *answer;
        ck_assert_uint_eq(json_len(e), 2);
        ck_assert_int_eq(json_get_int(e, "question_id", &id), PETAL_OK);
        ck_assert_int_eq(json_get_string(e, "answer", &answer, NULL), PETAL_OK);
        ck_assert_int_eq(id, ids[i]);
        ck_assert_str_eq(answer, answers[i]);
    }
    json_free(root);
}
END_TEST

START_TEST(test_results_errors) {
    const char *path = test_dir_path("results.json");
    const int64_t ids[] = {7, 8};
    const char *answers[] = {"ok", "bad \xff byte"};
    ck_assert_int_eq(vqa_results_write(path, ids, answers, 2), PETAL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "question 8"));
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "UTF-8"));
    ck_assert_uint_eq(directory_entries(test_dir_path("")), 0);

    const char *missing = test_dir_path("no/such/dir/results.json");
    ck_assert_int_eq(vqa_results_write(missing, ids, answers, 1), PETAL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), missing));
}
END_TEST

int main(void) {
    Suite *s = suite_create("vqa_metrics");
    TCase *tc = tcase_create("vqa_metrics");
    tcase_add_checked_fixture(tc, test_dir_make, test_dir_remove);
    tcase_add_test(tc, test_normalize_matches_official);
    tcase_add_test(tc, test_accuracy_matches_official);
    tcase_add_test(tc, test_accuracy_leave_one_out_values);
    tcase_add_test(tc, test_normalize_is_bytewise);
    tcase_add_test(tc, test_results_round_trip);
    tcase_add_test(tc, test_results_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
