// io/text: BLIP's pre_caption and pre_question against the Python functions (fixture written by
// tools/make_tokenizer_fixtures.py) on 524 strings, and Python's lowercasing rules.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "io/text.h"
#include "tests/test_util.h"

#define CASES PETAL_TEST_DATA "/tokenizer/text_cases.json"

static const char *member(const json_value *obj, const char *key) {
    const char *s;
    ck_assert_msg(json_get_string(obj, key, &s, NULL) == PETAL_OK, "%s", petal_error_message());
    return s;
}

typedef petal_status (*preprocess_fn)(const char *, int, char **);

static const struct {
    const char *key;
    preprocess_fn fn;
    int max_words;
} variants[] = {
    {"caption30", text_pre_caption, TEXT_DATASET_MAX_WORDS},
    {"caption50", text_pre_caption, TEXT_CAPTION_MAX_WORDS},
    {"caption5", text_pre_caption, 5},
    {"question50", text_pre_question, TEXT_QUESTION_MAX_WORDS},
    {"question5", text_pre_question, 5},
};

START_TEST(test_matches_blip) {
    json_value *cases = NULL;
    ck_assert_msg(json_parse_file(CASES, &cases) == PETAL_OK, "%s", petal_error_message());
    ck_assert_uint_ge(json_len(cases), 500);
    size_t mismatches = 0, changed = 0;
    for (size_t i = 0; i < json_len(cases); i++) {
        const json_value *c = json_at(cases, i);
        const char *text = member(c, "text");
        for (size_t v = 0; v < sizeof variants / sizeof *variants; v++) {
            const char *want = member(c, variants[v].key);
            char *got = NULL;
            ck_assert_int_eq(variants[v].fn(text, variants[v].max_words, &got), PETAL_OK);
            changed += strcmp(got, text) != 0;
            if (strcmp(got, want) != 0 && mismatches++ == 0)
                fprintf(stderr,
                        "case %zu (%s) differs from BLIP:\n  text \"%s\"\n  want \"%s\"\n"
                        "  got  \"%s\"\n",
                        i, variants[v].key, text, want, got);
            free(got);
        }
    }
    ck_assert_msg(mismatches == 0, "%zu results differ from BLIP's Python", mismatches);
    ck_assert_uint_gt(changed, 2000); // the cases exercise the rules, not the identity
    json_free(cases);
}
END_TEST

static void check(preprocess_fn fn, const char *in, int max_words, const char *want) {
    char *got = NULL;
    ck_assert_int_eq(fn(in, max_words, &got), PETAL_OK);
    ck_assert_msg(strcmp(got, want) == 0, "\"%s\" -> \"%s\", want \"%s\"", in, got, want);
    free(got);
}

START_TEST(test_rules) {
    check(text_pre_caption, "A Dog (running)!  On   the BEACH.", 50, "a dog running on the beach");
    check(text_pre_caption, "a\tb", 50, "a\tb");     // one whitespace character stays
    check(text_pre_caption, "a\t\tb \n", 50, "a b"); // runs of two or more become a space
    check(text_pre_caption, "one two three four", 2, "one two");
    check(text_pre_caption, "\xce\xa3\xce\x91\xce\xa3.", 50,
          "\xcf\x83\xce\xb1\xcf\x82");                    // ΣΑΣ -> σας
    check(text_pre_caption, "\xc4\xb0", 50, "i\xcc\x87"); // İ -> i + combining dot above
    check(text_pre_question, "What is it?  ", 50, "what is it?");
    check(text_pre_question, "a  b c", 2, "a "); // split(' ') counts the empty word
    check(text_pre_question, "Why (not)...", 50, "why not");
    char *out = NULL;
    ck_assert_int_eq(text_pre_caption("bad \xff", 30, &out), PETAL_ERR_ARG);
    ck_assert_str_eq(petal_error_message(), "text: expected UTF-8, found byte 0xff at offset 4");
    ck_assert_ptr_null(out);
    ck_assert_int_eq(text_pre_question("\xc3", 30, &out), PETAL_ERR_ARG);
}
END_TEST

START_TEST(test_python_string_helpers) {
    ck_assert(text_is_space(' ') && text_is_space('\x1c') && text_is_space(0x85));
    ck_assert(text_is_space(0xA0) && text_is_space(0x2028) && text_is_space(0x3000));
    ck_assert(!text_is_space(0x200B) && !text_is_space('a') && !text_is_space(0));
    size_t start, end;
    const char *s = "\xe3\x80\x80 a b\n\xc2\xa0";
    text_strip(s, strlen(s), &start, &end);
    ck_assert(start == 4 && end == 7);
    ck_assert_uint_eq(text_utf8_prefix("ab\xe2\x82", 4), 2);
    ck_assert_uint_eq(text_utf8_prefix("ab", 2), 2);
}
END_TEST

static void zero_words(void) {
    char *out;
    text_pre_caption("a", 0, &out);
}

START_TEST(test_misuse_aborts) {
    ck_assert(aborts_with(zero_words, "text_pre_caption: max_words must be at least 1, got 0"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("io_text");
    TCase *tc = tcase_with_timeout("text", 60);
    tcase_add_test(tc, test_matches_blip);
    tcase_add_test(tc, test_rules);
    tcase_add_test(tc, test_python_string_helpers);
    tcase_add_test(tc, test_misuse_aborts);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
