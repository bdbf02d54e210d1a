#include "io/text.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

// The characters BLIP's regexes replace (pre_caption) or delete (pre_question).
static bool is_blip_punctuation(char c) {
    return c && strchr(".!\"()*#:;~", c);
}

size_t text_utf8_prefix(const char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        int32_t cp;
        utf8proc_ssize_t n =
            utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
        if (n < 0) return i;
        i += (size_t)n;
    }
    return len;
}

// The code point at s[i] (valid UTF-8) and its length.
static size_t next_cp(const char *s, size_t len, size_t i, int32_t *cp) {
    return (size_t)utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(len - i), cp);
}

// The start of the character that ends just before s[i] (valid UTF-8, i > 0).
static size_t prev_cp(const char *s, size_t len, size_t i, int32_t *cp) {
    do i--;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80);
    next_cp(s, len, i, cp);
    return i;
}

bool text_is_space(int32_t cp) {
    const utf8proc_property_t *p = utf8proc_get_property(cp);
    return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
           p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

void text_strip(const char *s, size_t len, size_t *start, size_t *end) {
    int32_t cp;
    size_t i = 0, j = len;
    while (i < len) {
        size_t n = next_cp(s, len, i, &cp);
        if (!text_is_space(cp)) break;
        i += n;
    }
    while (j > i) {
        size_t k = prev_cp(s, len, j, &cp);
        if (!text_is_space(cp)) break;
        j = k;
    }
    *start = i;
    *end = j;
}

// Unicode's Case_Ignorable: Mn, Me, Cf, Lm, Sk and the Word_Break classes MidLetter, MidNumLet
// and Single_Quote (listed, from WordBreakProperty.txt).
static bool is_case_ignorable(int32_t cp) {
    static const int32_t word_break[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,  0x55F,
                                         0x5F4,  0x2018, 0x2019, 0x2024, 0x2027, 0xFE13,
                                         0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
        return true;
    default:
        break;
    }
    for (size_t i = 0; i < sizeof word_break / sizeof *word_break; i++)
        if (cp == word_break[i]) return true;
    return false;
}

// Unicode's Cased: Lu, Ll, Lt, and Other_Lowercase / Other_Uppercase. Those are either
// case-mapped (Roman numerals, circled letters), case-ignorable anyway (modifier letters), or the
// few listed here (ordinal indicators, squared and circled Latin capitals).
static bool is_cased(int32_t cp) {
    utf8proc_category_t c = utf8proc_category(cp);
    if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT)
        return true;
    if (utf8proc_tolower(cp) != cp || utf8proc_toupper(cp) != cp) return true;
    return cp == 0xAA || cp == 0xBA || (cp >= 0x1F130 && cp <= 0x1F149) ||
           (cp >= 0x1F150 && cp <= 0x1F169) || (cp >= 0x1F170 && cp <= 0x1F189);
}

// Python's Final_Sigma test for the capital sigma at s[start, end): a cased letter before it and
// none after it, skipping case-ignorable characters both ways.
static bool is_final_sigma(const char *s, size_t len, size_t start, size_t end) {
    int32_t cp = 0;
    size_t i = start;
    bool before = false;
    while (i > 0) {
        i = prev_cp(s, len, i, &cp);
        if (!is_case_ignorable(cp)) {
            before = is_cased(cp);
            break;
        }
    }
    if (!before) return false;
    for (i = end; i < len;) {
        i += next_cp(s, len, i, &cp);
        if (!is_case_ignorable(cp)) return !is_cased(cp);
    }
    return true;
}

void text_append_lower(strbuf *out, int32_t cp) {
    if (cp == 0x130) { // the one unconditional multi-character lowercase mapping
        strbuf_push(out, 'i');
        strbuf_push_cp(out, 0x307);
        return;
    }
    strbuf_push_cp(out, utf8proc_tolower(cp));
}

petal_status text_lower(const char *s, size_t len, strbuf *out) {
    size_t bad = text_utf8_prefix(s, len);
    if (bad < len)
        return petal_error(PETAL_ERR_ARG, "text: expected UTF-8, found byte 0x%02x at offset %zu",
                           (unsigned char)s[bad], bad);
    for (size_t i = 0; i < len;) {
        int32_t cp;
        size_t n = next_cp(s, len, i, &cp);
        if (cp == 0x3A3)
            strbuf_push_cp(out, is_final_sigma(s, len, i, i + n) ? 0x3C2 : 0x3C3);
        else
            text_append_lower(out, cp);
        i += n;
    }
    return PETAL_OK;
}

// Python's ' '.join(s.split(' ')[:max_words]): cuts s at its max_words-th space.
static void keep_words(strbuf *s, int max_words) {
    int spaces = 0;
    for (size_t i = 0; i < s->len; i++)
        if (s->data[i] == ' ' && ++spaces == max_words) {
            s->len = i;
            s->data[i] = '\0';
            return;
        }
}

// re.sub(r"\s{2,}", ' ', s): runs of two or more whitespace characters become one space.
static void collapse_space_runs(const char *s, size_t len, strbuf *out) {
    for (size_t i = 0; i < len;) {
        int32_t cp;
        size_t n = next_cp(s, len, i, &cp), end = i + n;
        int run = 0;
        while (text_is_space(cp)) {
            run++;
            if (end >= len) break;
            size_t m = next_cp(s, len, end, &cp);
            if (!text_is_space(cp)) break;
            end += m;
        }
        if (run >= 2)
            strbuf_push(out, ' ');
        else
            strbuf_append(out, s + i, end - i);
        i = end;
    }
}

petal_status text_pre_caption(const char *caption, int max_words, char **out) {
    PETAL_CHECK(max_words >= 1, "text_pre_caption: max_words must be at least 1, got %d",
                max_words);
    strbuf low = {0}, col = {0};
    petal_status st = text_lower(caption, strlen(caption), &low);
    if (st) {
        strbuf_free(&low);
        return st;
    }
    for (size_t i = 0; i < low.len; i++)
        if (is_blip_punctuation(low.data[i])) low.data[i] = ' ';
    collapse_space_runs(low.data ? low.data : "", low.len, &col);
    strbuf_free(&low);
    size_t start = 0, end = col.len;
    while (end > 0 && col.data[end - 1] == '\n') end--;
    while (end > 0 && col.data[end - 1] == ' ') end--;
    while (start < end && col.data[start] == ' ') start++;
    strbuf_append(&low, col.data ? col.data + start : "", end - start);
    strbuf_free(&col);
    keep_words(&low, max_words);
    *out = strbuf_take(&low);
    return PETAL_OK;
}

petal_status text_pre_question(const char *question, int max_words, char **out) {
    PETAL_CHECK(max_words >= 1, "text_pre_question: max_words must be at least 1, got %d",
                max_words);
    strbuf low = {0};
    petal_status st = text_lower(question, strlen(question), &low);
    if (st) {
        strbuf_free(&low);
        return st;
    }
    size_t o = 0;
    for (size_t i = 0; i < low.len; i++)
        if (!is_blip_punctuation(low.data[i])) low.data[o++] = low.data[i];
    while (o > 0 && low.data[o - 1] == ' ') o--;
    low.len = o;
    if (low.data) low.data[o] = '\0';
    keep_words(&low, max_words);
    *out = strbuf_take(&low);
    return PETAL_OK;
}

const char *text_after_prompt(const char *caption, const char *prompt) {
    for (const char *p = prompt; *p && *caption; p++)
        if ((*p & 0xC0) != 0x80) { // a code point starts: skip one of caption's
            caption++;
            while ((*caption & 0xC0) == 0x80) caption++;
        }
    return caption;
}
