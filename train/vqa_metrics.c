#include "train/vqa_metrics.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

#include "io/buffer.h"
#include "io/files.h"
#include "io/json.h"

// processPunctuation's marks. Periods are not among them: periodStrip handles those.
static const char punctuation_marks[] = ";/[]\"{}()=+\\_-><@`,?!";

// processDigitArticle's manualMap, articles and contractions, in the official order. Lookups
// happen after lowercasing, so the keys with capitals ("Im", "Ive", ...) never match; they are
// kept so the table reads as the official one.
static const char *const number_words[][2] = {
    {"none", "0"}, {"zero", "0"}, {"one", "1"},   {"two", "2"},   {"three", "3"}, {"four", "4"},
    {"five", "5"}, {"six", "6"},  {"seven", "7"}, {"eight", "8"}, {"nine", "9"},  {"ten", "10"},
};
static const char *const articles[] = {"a", "an", "the"};
static const char *const contractions[][2] = {
    {"aint", "ain't"},
    {"arent", "aren't"},
    {"cant", "can't"},
    {"couldve", "could've"},
    {"couldnt", "couldn't"},
    {"couldn'tve", "couldn't've"},
    {"couldnt've", "couldn't've"},
    {"didnt", "didn't"},
    {"doesnt", "doesn't"},
    {"dont", "don't"},
    {"hadnt", "hadn't"},
    {"hadnt've", "hadn't've"},
    {"hadn'tve", "hadn't've"},
    {"hasnt", "hasn't"},
    {"havent", "haven't"},
    {"hed", "he'd"},
    {"hed've", "he'd've"},
    {"he'dve", "he'd've"},
    {"hes", "he's"},
    {"howd", "how'd"},
    {"howll", "how'll"},
    {"hows", "how's"},
    {"Id've", "I'd've"},
    {"I'dve", "I'd've"},
    {"Im", "I'm"},
    {"Ive", "I've"},
    {"isnt", "isn't"},
    {"itd", "it'd"},
    {"itd've", "it'd've"},
    {"it'dve", "it'd've"},
    {"itll", "it'll"},
    {"let's", "let's"},
    {"maam", "ma'am"},
    {"mightnt", "mightn't"},
    {"mightnt've", "mightn't've"},
    {"mightn'tve", "mightn't've"},
    {"mightve", "might've"},
    {"mustnt", "mustn't"},
    {"mustve", "must've"},
    {"neednt", "needn't"},
    {"notve", "not've"},
    {"oclock", "o'clock"},
    {"oughtnt", "oughtn't"},
    {"ow's'at", "'ow's'at"},
    {"'ows'at", "'ow's'at"},
    {"'ow'sat", "'ow's'at"},
    {"shant", "shan't"},
    {"shed've", "she'd've"},
    {"she'dve", "she'd've"},
    {"she's", "she's"},
    {"shouldve", "should've"},
    {"shouldnt", "shouldn't"},
    {"shouldnt've", "shouldn't've"},
    {"shouldn'tve", "shouldn't've"},
    {"somebody'd", "somebodyd"},
    {"somebodyd've", "somebody'd've"},
    {"somebody'dve", "somebody'd've"},
    {"somebodyll", "somebody'll"},
    {"somebodys", "somebody's"},
    {"someoned", "someone'd"},
    {"someoned've", "someone'd've"},
    {"someone'dve", "someone'd've"},
    {"someonell", "someone'll"},
    {"someones", "someone's"},
    {"somethingd", "something'd"},
    {"somethingd've", "something'd've"},
    {"something'dve", "something'd've"},
    {"somethingll", "something'll"},
    {"thats", "that's"},
    {"thered", "there'd"},
    {"thered've", "there'd've"},
    {"there'dve", "there'd've"},
    {"therere", "there're"},
    {"theres", "there's"},
    {"theyd", "they'd"},
    {"theyd've", "they'd've"},
    {"they'dve", "they'd've"},
    {"theyll", "they'll"},
    {"theyre", "they're"},
    {"theyve", "they've"},
    {"twas", "'twas"},
    {"wasnt", "wasn't"},
    {"wed've", "we'd've"},
    {"we'dve", "we'd've"},
    {"weve", "we've"},
    {"werent", "weren't"},
    {"whatll", "what'll"},
    {"whatre", "what're"},
    {"whats", "what's"},
    {"whatve", "what've"},
    {"whens", "when's"},
    {"whered", "where'd"},
    {"wheres", "where's"},
    {"whereve", "where've"},
    {"whod", "who'd"},
    {"whod've", "who'd've"},
    {"who'dve", "who'd've"},
    {"wholl", "who'll"},
    {"whos", "who's"},
    {"whove", "who've"},
    {"whyll", "why'll"},
    {"whyre", "why're"},
    {"whys", "why's"},
    {"wont", "won't"},
    {"wouldve", "would've"},
    {"wouldnt", "wouldn't"},
    {"wouldnt've", "wouldn't've"},
    {"wouldn'tve", "wouldn't've"},
    {"yall", "y'all"},
    {"yall'll", "y'all'll"},
    {"y'allll", "y'all'll"},
    {"yall'd've", "y'all'd've"},
    {"y'alld've", "y'all'd've"},
    {"y'all'dve", "y'all'd've"},
    {"youd", "you'd"},
    {"youd've", "you'd've"},
    {"you'dve", "you'd've"},
    {"youll", "you'll"},
    {"youre", "you're"},
    {"youve", "you've"},
};

#define COUNT(table) (sizeof(table) / sizeof(table[0]))

// The official periodStrip call passes re.UNICODE (32) where re.sub takes its count: at most 32
// periods are removed.
#define PERIOD_STRIP_COUNT 32

// Python 2's str whitespace (strip, split) and digits (\d without re.UNICODE): ASCII only.
static bool is_space(char c) {
    return c == ' ' || (c >= '\t' && c <= '\r');
}
static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

static const char *table_lookup(const char *const (*table)[2], size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i][0], key) == 0) return table[i][1];
    return NULL;
}

static bool is_article(const char *word) {
    for (size_t i = 0; i < COUNT(articles); i++)
        if (strcmp(articles[i], word) == 0) return true;
    return false;
}

// answer.replace('\n', ' ').replace('\t', ' ').strip(), malloc'd.
static char *clean_answer(const char *answer) {
    const char *end = answer + strlen(answer);
    while (is_space(*answer)) answer++;
    while (end > answer && is_space(end[-1])) end--;
    char *out = buffer_strndup(answer, (size_t)(end - answer));
    for (char *c = out; *c; c++)
        if (*c == '\n' || *c == '\t') *c = ' ';
    return out;
}

// processPunctuation. A mark is deleted wherever it occurs when the text has it next to a space,
// or has a comma between two digits anywhere; otherwise it becomes a space. Then every period
// not followed by a digit goes (the first PERIOD_STRIP_COUNT of them).
static char *process_punctuation(const char *in) {
    bool delete_mark[256] = {false}, comma_in_number = false;
    for (size_t i = 0; in[i]; i++) {
        unsigned char c = (unsigned char)in[i];
        if (strchr(punctuation_marks, c) && (in[i + 1] == ' ' || (i > 0 && in[i - 1] == ' ')))
            delete_mark[c] = true;
        if (i > 0 && c == ',' && is_digit(in[i - 1]) && is_digit(in[i + 1])) comma_in_number = true;
    }
    strbuf marked = {0}; // the text with the marks deleted or blanked
    for (const char *c = in; *c; c++) {
        if (!strchr(punctuation_marks, *c))
            strbuf_push(&marked, *c);
        else if (!comma_in_number && !delete_mark[(unsigned char)*c])
            strbuf_push(&marked, ' ');
    }
    char *text = strbuf_take(&marked);
    strbuf out = {0};
    int periods_removed = 0;
    for (const char *c = text; *c; c++) {
        bool strip = *c == '.' && !is_digit(c[1]) && periods_removed < PERIOD_STRIP_COUNT;
        periods_removed += strip;
        if (!strip) strbuf_push(&out, *c);
    }
    free(text);
    return strbuf_take(&out);
}

// processDigitArticle: lowercase, split on whitespace, number words to digits, articles dropped,
// contractions expanded, words joined by single spaces.
static char *process_digit_article(const char *in) {
    strbuf out = {0}, word = {0};
    for (const char *p = in;;) {
        while (is_space(*p)) p++;
        if (!*p) break;
        strbuf_clear(&word);
        for (; *p && !is_space(*p); p++)
            strbuf_push(&word, *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p);
        const char *w = table_lookup(number_words, COUNT(number_words), word.data);
        if (!w) w = word.data;
        if (is_article(w)) continue;
        const char *expanded = table_lookup(contractions, COUNT(contractions), w);
        if (out.len) strbuf_push(&out, ' ');
        strbuf_append(&out, expanded ? expanded : w, strlen(expanded ? expanded : w));
    }
    strbuf_free(&word);
    return strbuf_take(&out);
}

// processPunctuation then processDigitArticle, on a cleaned answer.
static char *normalize_cleaned(const char *cleaned) {
    char *punctuated = process_punctuation(cleaned);
    char *out = process_digit_article(punctuated);
    free(punctuated);
    return out;
}

char *vqa_normalize_answer(const char *answer) {
    char *cleaned = clean_answer(answer);
    char *out = normalize_cleaned(cleaned);
    free(cleaned);
    return out;
}

// Replaces the malloc'd *text by its normalised form.
static void normalize_in_place(char **text) {
    char *out = normalize_cleaned(*text);
    free(*text);
    *text = out;
}

double vqa_accuracy(const char *pred, const char *const *answers, int n_answers) {
    PETAL_CHECK(n_answers >= 1, "vqa_accuracy: %d human answers; at least one is needed",
                n_answers);
    char **truth = buffer_alloc((size_t)n_answers * sizeof *truth, "VQA answers"); // cleaned
    bool agree = true;
    for (int i = 0; i < n_answers; i++) {
        truth[i] = clean_answer(answers[i]);
        agree = agree && strcmp(truth[i], truth[0]) == 0;
    }
    char *res = clean_answer(pred);
    if (!agree) {
        for (int i = 0; i < n_answers; i++) normalize_in_place(&truth[i]);
        normalize_in_place(&res);
    }
    double sum = 0;
    for (int left_out = 0; left_out < n_answers; left_out++) {
        int matches = 0;
        for (int i = 0; i < n_answers; i++) matches += i != left_out && strcmp(truth[i], res) == 0;
        sum += matches >= 3 ? 1.0 : matches / 3.0;
    }
    for (int i = 0; i < n_answers; i++) free(truth[i]);
    free(truth);
    free(res);
    return sum / n_answers;
}

// ---- results file ----

static bool is_utf8(const char *s) {
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    utf8proc_int32_t cp;
    for (utf8proc_ssize_t n; *p; p += n)
        if ((n = utf8proc_iterate(p, -1, &cp)) < 0) return false;
    return true;
}

petal_status vqa_results_write(const char *path, const int64_t *question_ids,
                               const char *const *answers, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!is_utf8(answers[i]))
            return petal_error(PETAL_ERR_ARG,
                               "VQA results '%s': the answer to question %lld (entry %lld) is not "
                               "valid UTF-8",
                               path, (long long)question_ids[i], (long long)i);
    strbuf json = {0};
    strbuf_push(&json, '[');
    for (int64_t i = 0; i < n; i++) {
        strbuf_printf(&json, "%s\n{\"question_id\": %lld, \"answer\": ", i ? "," : "",
                      (long long)question_ids[i]);
        json_write_string(&json, answers[i]);
        strbuf_push(&json, '}');
    }
    strbuf_append(&json, "\n]\n", 3);
    petal_status st = file_write_atomic(path, json.data, json.len, "VQA results");
    strbuf_free(&json);
    return st;
}
