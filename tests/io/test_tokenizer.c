// io/tokenizer: the same ids as HF's BertTokenizer (with BLIP's [DEC] and [ENC]) on 1,200 varied
// sentences, BLIP's retrieval encoding (max_length 35) and padding to the longest, HF's decode, and
// the errors of vocabulary files and text. Fixtures: tools/make_tokenizer_fixtures.py.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/json.h"
#include "io/tokenizer.h"
#include "petal.h"
#include "tests/test_util.h"

#define VOCAB PETAL_TEST_DATA "/tokenizer/vocab.txt"
#define CASES PETAL_TEST_DATA "/tokenizer/tokenizer_cases.json"

static tokenizer *load_blip(void) {
    tokenizer *t = NULL;
    ck_assert_msg(tokenizer_load_blip(VOCAB, &t) == PETAL_OK, "%s", petal_error_message());
    return t;
}

// The BLIP tokenizer and the HF reference cases, for the tests that compare with HF.
static tokenizer *blip;
static json_value *cases;

static void load_reference(void) {
    blip = load_blip();
    ck_assert_msg(json_parse_file(CASES, &cases) == PETAL_OK, "%s", petal_error_message());
}

static void free_reference(void) {
    tokenizer_free(blip);
    json_free(cases);
}

static const char *str(const json_value *obj, const char *key) {
    const char *s;
    ck_assert_msg(json_get_string(obj, key, &s, NULL) == PETAL_OK, "%s", petal_error_message());
    return s;
}

static const json_value *arr(const json_value *obj, const char *key) {
    const json_value *a;
    ck_assert_msg(json_get_array(obj, key, &a) == PETAL_OK, "%s", petal_error_message());
    return a;
}

static int64_t int_at(const json_value *a, size_t i) {
    int64_t x;
    ck_assert_msg(json_as_int(json_at(a, i), &x) == PETAL_OK, "%s", petal_error_message());
    return x;
}

// Text with non-printable and non-ASCII bytes escaped, for failure messages.
static void print_escaped(const char *label, const char *s, size_t n) {
    fprintf(stderr, "%s\"", label);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '"')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
}

static void print_ids(const char *label, const json_value *want, const token_ids *got) {
    fprintf(stderr, "%s want [", label);
    for (size_t i = 0; i < json_len(want); i++)
        fprintf(stderr, "%s%lld", i ? ", " : "", (long long)int_at(want, i));
    fprintf(stderr, "]\n%s got  [", label);
    for (size_t i = 0; i < got->len; i++) fprintf(stderr, "%s%d", i ? ", " : "", got->ids[i]);
    fprintf(stderr, "]\n");
}

static bool same_ids(const json_value *want, const token_ids *got) {
    if (json_len(want) != got->len) return false;
    for (size_t i = 0; i < got->len; i++)
        if (int_at(want, i) != got->ids[i]) return false;
    return true;
}

START_TEST(test_vocabulary) {
    tokenizer *t = load_blip();
    const tokenizer_special_ids *s = tokenizer_specials(t);
    ck_assert_int_eq(tokenizer_size(t), 30524);
    ck_assert_int_eq(s->pad, 0);
    ck_assert_int_eq(s->unk, 100);
    ck_assert_int_eq(s->cls, 101);
    ck_assert_int_eq(s->sep, 102);
    ck_assert_int_eq(s->mask, 103);
    ck_assert_int_eq(s->bos, 30522);
    ck_assert_int_eq(s->enc, 30523);
    ck_assert_str_eq(tokenizer_token(t, 30522), "[DEC]");
    ck_assert_str_eq(tokenizer_token(t, 1996), "the");
    ck_assert_str_eq(tokenizer_token(t, 30521), "##\xef\xbd\x9e");
    ck_assert_ptr_null(tokenizer_token(t, 30524));
    ck_assert_ptr_null(tokenizer_token(t, -1));
    ck_assert_int_eq(tokenizer_find(t, "##ing"), 2075);
    ck_assert_int_eq(tokenizer_find(t, "not-a-token"), -1);
    // adding again keeps the id; a new special token gets the next one and is matched whole
    ck_assert_int_eq(tokenizer_add_special(t, "[ENC]", true), 30523);
    ck_assert_int_eq(tokenizer_add_special(t, "<img>", false), 30524);
    token_ids ids = {0};
    ck_assert_int_eq(tokenizer_tokenize(t, "A<img>b", 7, &ids), PETAL_OK);
    ck_assert_uint_eq(ids.len, 3);
    ck_assert(ids.ids[0] == 1037 && ids.ids[1] == 30524 && ids.ids[2] == 1038);
    token_ids_free(&ids);
    tokenizer_free(t);
}
END_TEST

START_TEST(test_sentences_match_hf) {
    tokenizer *t = blip;
    int64_t size;
    ck_assert_int_eq(json_get_int(cases, "vocab_size", &size), PETAL_OK);
    ck_assert_int_eq(size, tokenizer_size(t));
    const json_value *sentences = arr(cases, "sentences");
    ck_assert_uint_ge(json_len(sentences), 1000);
    size_t mismatches = 0, tokens = 0;
    for (size_t i = 0; i < json_len(sentences); i++) {
        const json_value *c = json_at(sentences, i), *want = arr(c, "ids");
        const char *text;
        size_t len;
        ck_assert_int_eq(json_get_string(c, "text", &text, &len), PETAL_OK);
        token_ids got = {0};
        ck_assert_int_eq(tokenizer_tokenize(t, text, len, &got), PETAL_OK);
        tokens += got.len;
        if (!same_ids(want, &got) && mismatches++ == 0) {
            fprintf(stderr, "sentence %zu differs from HF:\n", i);
            print_escaped("  text ", text, len);
            print_ids("  ids", want, &got);
        }
        token_ids_free(&got);
    }
    ck_assert_msg(mismatches == 0, "%zu of %zu sentences differ from HF", mismatches,
                  json_len(sentences));
    ck_assert_uint_gt(tokens, 10000);
}
END_TEST

// Compares an (n, L) i64 tensor with rows of a fixture (each row a JSON array, or a member).
static bool rows_match(const char *what, const tensor *got, const json_value *rows,
                       const char *member) {
    int64_t n = got->shape[0], L = got->shape[1];
    if (got->ndim != 2 || (size_t)n != json_len(rows)) {
        fprintf(stderr, "%s: %lld rows, want %zu\n", what, (long long)n, json_len(rows));
        return false;
    }
    for (int64_t b = 0; b < n; b++) {
        const json_value *row =
            member ? arr(json_at(rows, (size_t)b), member) : json_at(rows, (size_t)b);
        if ((int64_t)json_len(row) != L) {
            fprintf(stderr, "%s: row %lld has %lld columns, want %zu\n", what, (long long)b,
                    (long long)L, json_len(row));
            return false;
        }
        for (int64_t j = 0; j < L; j++)
            if (tensor_data_i64(got)[b * L + j] != int_at(row, (size_t)j)) {
                fprintf(stderr, "%s: row %lld column %lld is %lld, want %lld\n", what, (long long)b,
                        (long long)j, (long long)tensor_data_i64(got)[b * L + j],
                        (long long)int_at(row, (size_t)j));
                return false;
            }
    }
    return true;
}

START_TEST(test_retrieval_encoding) {
    tokenizer *t = blip;
    const json_value *retrieval = arr(cases, "retrieval");
    size_t n = json_len(retrieval);
    const char **texts = malloc(n * sizeof *texts);
    for (size_t i = 0; i < n; i++) texts[i] = str(json_at(retrieval, i), "text");
    tensor *ids, *mask;
    tokenizer_options opt = {.max_length = BLIP_RETRIEVAL_MAX_LENGTH,
                             .padding = TOKENIZER_PAD_MAX_LENGTH};
    ck_assert_int_eq(tokenizer_encode_batch(t, texts, (int)n, &opt, &ids, &mask), PETAL_OK);
    ck_assert_int_eq(ids->dtype, PETAL_I64);
    ck_assert_int_eq(ids->shape[1], 35);
    ck_assert(rows_match("retrieval ids", ids, retrieval, "ids"));
    ck_assert(rows_match("retrieval mask", mask, retrieval, "mask"));
    tensor_free(ids);
    tensor_free(mask);
    // image-grounded encoding: only the first column changes, to [ENC]
    opt.first = TOKENIZER_FIRST_ENC;
    ck_assert_int_eq(tokenizer_encode_batch(t, texts, (int)n, &opt, &ids, &mask), PETAL_OK);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(tensor_data_i64(ids)[i * 35], 30523);
        tensor_data_i64(ids)[i * 35] = 101;
    }
    ck_assert(rows_match("retrieval ids with [ENC]", ids, retrieval, "ids"));
    tensor_free(ids);
    tensor_free(mask);
    free(texts);
}
END_TEST

START_TEST(test_padding_to_longest) {
    tokenizer *t = blip;
    const json_value *groups = arr(cases, "longest");
    ck_assert_uint_eq(json_len(groups), 3);
    for (size_t g = 0; g < json_len(groups); g++) {
        const json_value *group = json_at(groups, g), *texts = arr(group, "texts");
        int64_t max_length;
        ck_assert_int_eq(json_get_int(group, "max_length", &max_length), PETAL_OK);
        const char *list[64];
        for (size_t i = 0; i < json_len(texts); i++)
            ck_assert_int_eq(json_as_string(json_at(texts, i), &list[i], NULL), PETAL_OK);
        tensor *ids, *mask;
        tokenizer_options opt = {.max_length = (int)max_length, .first = TOKENIZER_FIRST_CLS};
        ck_assert_int_eq(tokenizer_encode_batch(t, list, (int)json_len(texts), &opt, &ids, &mask),
                         PETAL_OK);
        char what[64];
        snprintf(what, sizeof what, "longest (max_length %lld) ids", (long long)max_length);
        ck_assert(rows_match(what, ids, arr(group, "ids"), NULL));
        ck_assert(rows_match("longest mask", mask, arr(group, "mask"), NULL));
        tensor_free(ids);
        tensor_free(mask);
    }
}
END_TEST

START_TEST(test_decode_matches_hf) {
    tokenizer *t = blip;
    const json_value *decode = arr(cases, "decode");
    ck_assert_uint_ge(json_len(decode), 500);
    size_t mismatches = 0;
    for (size_t i = 0; i < json_len(decode); i++) {
        const json_value *c = json_at(decode, i), *want_ids = arr(c, "ids");
        int64_t ids[64];
        size_t n = json_len(want_ids);
        for (size_t k = 0; k < n; k++) ids[k] = int_at(want_ids, k);
        for (int skip = 0; skip < 2; skip++) {
            const char *want = str(c, skip ? "skip" : "text");
            char *got = tokenizer_decode(t, ids, n, skip);
            if (strcmp(got, want) != 0 && mismatches++ == 0) {
                fprintf(stderr, "decode case %zu (skip_special %d) differs from HF:\n", i, skip);
                print_escaped("  want ", want, strlen(want));
                print_escaped("  got  ", got, strlen(got));
            }
            free(got);
        }
    }
    ck_assert_msg(mismatches == 0, "%zu decodes differ from HF", mismatches);
    // a caption as BLIP decodes it, then drops the prompt
    int64_t caption[] = {30522, 1037, 3861, 1997, 1037, 3899, 1005, 1055, 9121, 1012, 102, 0};
    char *text = tokenizer_decode(t, caption, 12, true);
    ck_assert_str_eq(text, "a picture of a dog's toy.");
    free(text);
}
END_TEST

static char tmp_path[64];

static const char *write_tmp(const char *data, size_t n) {
    strcpy(tmp_path, "/tmp/petal-vocab-XXXXXX");
    int fd = mkstemp(tmp_path);
    ck_assert(fd >= 0);
    ck_assert(write(fd, data, n) == (ssize_t)n);
    close(fd);
    return tmp_path;
}

START_TEST(test_vocabulary_files) {
    // \r\n and \r end lines too; a repeated token maps to its last line, as in HF's dict
    const char vocab[] = "[PAD]\r\n[UNK]\r[CLS]\n[SEP]\n[MASK]\nhello\nworld\n##s\nhello";
    tokenizer *t = NULL;
    ck_assert_int_eq(tokenizer_load(write_tmp(vocab, sizeof vocab - 1), &t), PETAL_OK);
    unlink(tmp_path);
    ck_assert_int_eq(tokenizer_size(t), 9);
    ck_assert_int_eq(tokenizer_specials(t)->bos, -1);
    ck_assert_int_eq(tokenizer_find(t, "hello"), 8);
    ck_assert_str_eq(tokenizer_token(t, 5), "hello");
    token_ids ids = {0};
    ck_assert_int_eq(tokenizer_tokenize(t, "Hello worlds, [MASK]!", 21, &ids), PETAL_OK);
    int32_t want[] = {8, 6, 7, 1, 4, 1}; // [UNK] is line 1 here
    ck_assert_uint_eq(ids.len, 6);
    for (int i = 0; i < 6; i++) ck_assert_int_eq(ids.ids[i], want[i]);
    token_ids_free(&ids);
    tokenizer_free(t);

    ck_assert_int_eq(tokenizer_load("/nonexistent/vocab.txt", &t), PETAL_ERR_IO);
    ck_assert(strstr(petal_error_message(), "/nonexistent/vocab.txt"));
    ck_assert_ptr_null(t);
    const char no_unk[] = "[PAD]\n[CLS]\n[SEP]\n[MASK]\n";
    ck_assert_int_eq(tokenizer_load(write_tmp(no_unk, sizeof no_unk - 1), &t), PETAL_ERR_KEY);
    ck_assert_msg(strstr(petal_error_message(), tmp_path) &&
                      strstr(petal_error_message(), "expected a line '[UNK]'") &&
                      strstr(petal_error_message(), "found none in 4 lines"),
                  "%s", petal_error_message());
    unlink(tmp_path);
    const char bad_utf8[] = "[PAD]\n[UNK]\nab\xff\n";
    ck_assert_int_eq(tokenizer_load(write_tmp(bad_utf8, sizeof bad_utf8 - 1), &t),
                     PETAL_ERR_FORMAT);
    ck_assert_msg(strstr(petal_error_message(), "line 3: expected UTF-8, found byte 0xff at "
                                                "column 3"),
                  "%s", petal_error_message());
    unlink(tmp_path);
    const char with_nul[] = "[PAD]\n[UNK]\na\0b\n";
    ck_assert_int_eq(tokenizer_load(write_tmp(with_nul, sizeof with_nul - 1), &t),
                     PETAL_ERR_FORMAT);
    ck_assert(strstr(petal_error_message(), "line 3: expected a token without NUL bytes"));
    unlink(tmp_path);
    ck_assert_int_eq(tokenizer_load(write_tmp("", 0), &t), PETAL_ERR_KEY);
    unlink(tmp_path);
}
END_TEST

START_TEST(test_bad_text) {
    tokenizer *t = load_blip();
    token_ids ids = {0};
    ck_assert_int_eq(tokenizer_tokenize(t, "ok \xc3(", 5, &ids), PETAL_ERR_ARG);
    ck_assert_str_eq(petal_error_message(),
                     "tokenizer: expected UTF-8 text, found byte 0xc3 at offset 3");
    ck_assert_uint_eq(ids.len, 0);
    const char *texts[] = {"fine", "\xed\xa0\x80 surrogate"};
    tensor *a = NULL, *m = NULL;
    tokenizer_options opt = {.max_length = 35, .padding = TOKENIZER_PAD_MAX_LENGTH};
    ck_assert_int_eq(tokenizer_encode_batch(t, texts, 2, &opt, &a, &m), PETAL_ERR_ARG);
    ck_assert_str_eq(petal_error_message(),
                     "tokenizer_encode_batch: text 1: tokenizer: expected UTF-8 text, found "
                     "byte 0xed at offset 0");
    ck_assert_ptr_null(a);
    // a 1 MB word is one [UNK]; a 1 MB sentence of short words is tokenized in full
    size_t n = 1 << 20;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    big[n] = '\0';
    ck_assert_int_eq(tokenizer_tokenize(t, big, n, &ids), PETAL_OK);
    ck_assert(ids.len == 1 && ids.ids[0] == 100);
    for (size_t i = 1; i < n; i += 2) big[i] = ' ';
    ids.len = 0;
    ck_assert_int_eq(tokenizer_tokenize(t, big, n, &ids), PETAL_OK);
    ck_assert_uint_eq(ids.len, n / 2);
    token_ids_free(&ids);
    free(big);
    tokenizer_free(t);
}
END_TEST

static void enc_without_blip_tokens(void) {
    tokenizer *t = NULL;
    tokenizer_load(VOCAB, &t);
    const char *texts[] = {"a dog"};
    tensor *ids, *mask;
    tokenizer_options opt = {.first = TOKENIZER_FIRST_ENC};
    tokenizer_encode_batch(t, texts, 1, &opt, &ids, &mask);
}

static void max_length_one(void) {
    tokenizer *t = NULL;
    tokenizer_load(VOCAB, &t);
    const char *texts[] = {"a dog"};
    tensor *ids, *mask;
    tokenizer_options opt = {.max_length = 1};
    tokenizer_encode_batch(t, texts, 1, &opt, &ids, &mask);
}

START_TEST(test_misuse_aborts) {
    ck_assert(aborts_with(enc_without_blip_tokens, "load the vocabulary with tokenizer_load_blip"));
    ck_assert(aborts_with(max_length_one, "max_length 1 leaves no room for [CLS] and [SEP]"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("io_tokenizer");
    TCase *hf = tcase_with_timeout("same as HF", 120);
    tcase_add_checked_fixture(hf, load_reference, free_reference);
    tcase_add_test(hf, test_sentences_match_hf);
    tcase_add_test(hf, test_retrieval_encoding);
    tcase_add_test(hf, test_padding_to_longest);
    tcase_add_test(hf, test_decode_matches_hf);
    suite_add_tcase(s, hf);
    TCase *tc = tcase_with_timeout("tokenizer", 60);
    tcase_add_test(tc, test_vocabulary);
    tcase_add_test(tc, test_vocabulary_files);
    tcase_add_test(tc, test_bad_text);
    tcase_add_test(tc, test_misuse_aborts);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
