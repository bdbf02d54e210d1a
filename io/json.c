// The parser is a recursive descent over the bytes. Children of the open arrays and objects wait on
// two shared stacks; when a container closes, its children move to their final place in the
// document's arena, so a whole document is a handful of large blocks freed at once.
#include "io/json.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "io/buffer.h"

// ---- the document: the root, its source name and the arena holding everything else ----

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    max_align_t data[];
} arena_chunk;

typedef struct {
    json_value root; // first: a root pointer is a document pointer
    char *source;
    arena_chunk *chunks;
} json_doc;

enum { ARENA_CHUNK_BYTES = 1 << 16 };

static void *arena_alloc(json_doc *doc, size_t n) {
    const size_t align = sizeof(max_align_t);
    n = (n + align - 1) / align * align;
    arena_chunk *c = doc->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK_BYTES ? n : ARENA_CHUNK_BYTES;
        c = buffer_alloc(sizeof *c + cap, "json_parse");
        c->used = 0;
        c->cap = cap;
        c->next = doc->chunks;
        doc->chunks = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

static void doc_free(json_doc *doc) {
    for (arena_chunk *c = doc->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(doc->source);
    free(doc);
}

void json_free(json_value *root) {
    if (root) doc_free((json_doc *)root);
}

// ---- the parser state ----

typedef struct {
    const unsigned char *text;
    size_t len, pos;
    const char *source;
    int depth;
    json_limits limits;
    size_t n_values; // parsed so far
    json_doc *doc;
    json_value *vals; // items of the open arrays, innermost last
    size_t n_vals, cap_vals;
    json_member *mems; // members of the open objects, innermost last
    size_t n_mems, cap_mems;
    strbuf str; // the string being decoded
} parser;

// Line and column (in code points, from 1) of byte `at`.
static void text_position(const parser *ps, size_t at, size_t *line, size_t *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < at && i < ps->len; i++) {
        if (ps->text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else if ((ps->text[i] & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

// What is at byte `at`, for "found ..." in messages.
static const char *describe_at(const parser *ps, size_t at, char *buf, size_t size) {
    if (at >= ps->len) return "end of input";
    unsigned char c = ps->text[at];
    if (c >= 0x20 && c < 0x7F)
        snprintf(buf, size, "'%c'", c);
    else
        snprintf(buf, size, "byte 0x%02x", c);
    return buf;
}

__attribute__((format(printf, 3, 4))) static petal_status parse_fail(const parser *ps, size_t at,
                                                                     const char *fmt, ...) {
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    size_t line, col;
    text_position(ps, at, &line, &col);
    return petal_error(PETAL_ERR_FORMAT, "%s:%zu:%zu (byte %zu): %s", ps->source, line, col, at,
                       what);
}

// " (<note>)" after the message of a bound of json_limits, when the caller gave one: three %s.
#define NOTE(ps)                                                                                   \
    (ps)->limits.note ? " (" : "", (ps)->limits.note ? (ps)->limits.note : "",                     \
        (ps)->limits.note ? ")" : ""

// "expected <what>, found <the byte at pos>"
static petal_status parse_expected(const parser *ps, const char *what) {
    char found[32];
    return parse_fail(ps, ps->pos, "expected %s, found %s", what,
                      describe_at(ps, ps->pos, found, sizeof found));
}

static void skip_space(parser *ps) {
    while (ps->pos < ps->len) {
        unsigned char c = ps->text[ps->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        ps->pos++;
    }
}

static bool at_char(const parser *ps, char c) {
    return ps->pos < ps->len && ps->text[ps->pos] == (unsigned char)c;
}

static bool is_digit(const parser *ps, size_t i) {
    return i < ps->len && ps->text[i] >= '0' && ps->text[i] <= '9';
}

// ---- strings ----

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Reads the 4 hex digits of a \u escape whose backslash is at ps->pos.
static petal_status read_u_escape(parser *ps, int32_t *out) {
    int32_t u = 0;
    for (size_t i = 2; i < 6; i++) {
        int h = ps->pos + i < ps->len ? hex_value(ps->text[ps->pos + i]) : -1;
        if (h < 0) {
            char found[32];
            return parse_fail(ps, ps->pos + i, "expected 4 hex digits after \\u, found %s",
                              describe_at(ps, ps->pos + i, found, sizeof found));
        }
        u = u * 16 + h;
    }
    ps->pos += 6;
    *out = u;
    return PETAL_OK;
}

// A \uXXXX escape, or a surrogate pair of two, into ps->str.
static petal_status parse_u_escape(parser *ps) {
    size_t start = ps->pos;
    int32_t u, low;
    petal_status st = read_u_escape(ps, &u);
    if (st) return st;
    if (u >= 0xDC00 && u <= 0xDFFF)
        return parse_fail(ps, start,
                          "lone low surrogate \\u%04X: expected a high surrogate \\uD800-\\uDBFF "
                          "before it",
                          (unsigned)u);
    if (u >= 0xD800 && u <= 0xDBFF) {
        if (!(ps->pos + 1 < ps->len && ps->text[ps->pos] == '\\' && ps->text[ps->pos + 1] == 'u'))
            return parse_fail(ps, start,
                              "lone high surrogate \\u%04X: expected a low surrogate escape "
                              "\\uDC00-\\uDFFF after it",
                              (unsigned)u);
        size_t second = ps->pos;
        if ((st = read_u_escape(ps, &low))) return st;
        if (low < 0xDC00 || low > 0xDFFF)
            return parse_fail(ps, second,
                              "expected a low surrogate \\uDC00-\\uDFFF after \\u%04X, found "
                              "\\u%04X",
                              (unsigned)u, (unsigned)low);
        u = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00);
    }
    strbuf_push_cp(&ps->str, u);
    return PETAL_OK;
}

static petal_status parse_escape(parser *ps) {
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    unsigned char c = ps->pos + 1 < ps->len ? ps->text[ps->pos + 1] : 0;
    if (c == 'u') return parse_u_escape(ps);
    const char *hit = c ? strchr(from, c) : NULL;
    if (!hit) {
        char found[32];
        return parse_fail(
            ps, ps->pos + 1,
            "expected an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX), found %s",
            describe_at(ps, ps->pos + 1, found, sizeof found));
    }
    strbuf_push(&ps->str, to[hit - from]);
    ps->pos += 2;
    return PETAL_OK;
}

// A string at ps->pos (on its opening quote), copied into the arena.
static petal_status parse_string(parser *ps, char **chars, size_t *len) {
    size_t start = ps->pos++;
    strbuf_clear(&ps->str);
    for (;;) {
        if (ps->pos >= ps->len) {
            size_t line, col;
            text_position(ps, start, &line, &col);
            return parse_fail(ps, ps->pos,
                              "expected '\"' to close the string opened at line %zu column %zu, "
                              "found end of input",
                              line, col);
        }
        unsigned char c = ps->text[ps->pos];
        if (c == '"') break;
        petal_status st = PETAL_OK;
        if (c == '\\') {
            st = parse_escape(ps);
        } else if (c < 0x20) {
            st = parse_fail(ps, ps->pos,
                            "expected an escape (\\n, \\t, \\u00XX) for control character 0x%02x "
                            "in a string",
                            c);
        } else {
            size_t run = ps->pos;
            while (run < ps->len && ps->text[run] >= 0x20 && ps->text[run] < 0x80 &&
                   ps->text[run] != '"' && ps->text[run] != '\\')
                run++;
            if (run == ps->pos) { // a multi-byte character
                int32_t cp;
                utf8proc_ssize_t n =
                    utf8proc_iterate(ps->text + run, (utf8proc_ssize_t)(ps->len - run), &cp);
                if (n < 0)
                    return parse_fail(ps, ps->pos, "expected UTF-8, found invalid byte 0x%02x", c);
                run += (size_t)n;
            }
            strbuf_append(&ps->str, (const char *)ps->text + ps->pos, run - ps->pos);
            ps->pos = run;
        }
        if (st) return st;
    }
    ps->pos++;
    *len = ps->str.len;
    *chars = arena_alloc(ps->doc, ps->str.len + 1);
    memcpy(*chars, ps->str.len ? ps->str.data : "", ps->str.len + 1);
    return PETAL_OK;
}

// ---- numbers ----

// The exact value of the literal when it is an integer that fits in int64: the digits (integer and
// fraction parts, without the point) times 10^exp10 must have no fractional part.
static bool exact_integer(const char *digits, size_t n, int64_t exp10, bool negative,
                          int64_t *out) {
    while (n > 0 && *digits == '0') digits++, n--;
    while (n > 0 && digits[n - 1] == '0') n--, exp10++;
    if (n == 0) {
        *out = 0;
        return true;
    }
    if (exp10 < 0 || (int64_t)n + exp10 > 19) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = v * 10 + (uint64_t)(digits[i] - '0');
    for (int64_t i = 0; i < exp10; i++) {
        if (v > UINT64_MAX / 10) return false;
        v *= 10;
    }
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (v > limit) return false;
    *out = negative ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;
static void c_locale_init(void) {
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

// strtod in the C locale (a program may have set one where the decimal point is ',').
static double parse_double(const char *s) {
    pthread_once(&c_locale_once, c_locale_init);
    PETAL_CHECK(c_locale, "json_parse: cannot create the C locale");
    return strtod_l(s, NULL, c_locale);
}

// Scans -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? and collects its digits.
static petal_status scan_number(parser *ps, strbuf *digits, int64_t *exp10) {
    size_t i = ps->pos;
    if (ps->text[i] == '-') i++;
    if (!is_digit(ps, i)) {
        ps->pos = i;
        return parse_expected(ps, "a digit after '-'");
    }
    size_t int_start = i;
    while (is_digit(ps, i)) i++;
    if (ps->text[int_start] == '0' && i - int_start > 1)
        return parse_fail(ps, int_start, "expected a number without leading zeros, found '0%c'",
                          ps->text[int_start + 1]);
    strbuf_append(digits, (const char *)ps->text + int_start, i - int_start);
    int64_t frac = 0, exp = 0;
    if (i < ps->len && ps->text[i] == '.') {
        size_t frac_start = ++i;
        while (is_digit(ps, i)) i++;
        if (i == frac_start) {
            ps->pos = i;
            return parse_expected(ps, "a digit after the decimal point");
        }
        strbuf_append(digits, (const char *)ps->text + frac_start, i - frac_start);
        frac = (int64_t)(i - frac_start);
    }
    if (i < ps->len && (ps->text[i] == 'e' || ps->text[i] == 'E')) {
        i++;
        bool negative = i < ps->len && ps->text[i] == '-';
        if (i < ps->len && (ps->text[i] == '-' || ps->text[i] == '+')) i++;
        if (!is_digit(ps, i)) {
            ps->pos = i;
            return parse_expected(ps, "a digit in the exponent");
        }
        for (; is_digit(ps, i); i++)
            if (exp < 1000000000) exp = exp * 10 + (ps->text[i] - '0'); // saturates: still exact
        if (negative) exp = -exp;
    }
    *exp10 = exp - frac;
    ps->pos = i;
    return PETAL_OK;
}

static petal_status parse_number(parser *ps, json_value *out) {
    size_t start = ps->pos;
    strbuf digits = {0};
    int64_t exp10 = 0;
    petal_status st = scan_number(ps, &digits, &exp10);
    if (st) {
        strbuf_free(&digits);
        return st;
    }
    bool negative = ps->text[start] == '-';
    out->type = JSON_NUMBER;
    out->number.is_int =
        exact_integer(digits.data, digits.len, exp10, negative, &out->number.exact);
    if (!out->number.is_int) out->number.exact = 0;
    strbuf_clear(&digits);
    strbuf_append(&digits, (const char *)ps->text + start, ps->pos - start);
    out->number.value = parse_double(digits.data);
    strbuf_free(&digits);
    if (isinf(out->number.value))
        return parse_fail(ps, start, "expected a number within the range of a double, found %.*s",
                          (int)(ps->pos - start > 40 ? 40 : ps->pos - start),
                          (const char *)ps->text + start);
    return PETAL_OK;
}

// ---- values, arrays, objects ----

static petal_status parse_value(parser *ps, json_value *out);

// Points the children of v (now at its final address) back at it.
static void adopt_children(json_value *v) {
    if (v->type == JSON_ARRAY)
        for (size_t i = 0; i < v->array.len; i++) v->array.items[i].parent = v;
    if (v->type == JSON_OBJECT)
        for (size_t i = 0; i < v->object.len; i++) v->object.members[i].value.parent = v;
}

// The elements of an array or object after its opening bracket, up to `close`: element() parses
// one and leaves it on the parser's stack.
static petal_status parse_sequence(parser *ps, char close, petal_status (*element)(parser *),
                                   const char *after_comma, size_t max_len) {
    if (++ps->depth > ps->limits.max_depth)
        return parse_fail(ps, ps->pos,
                          "expected at most %d nested arrays and objects, found more%s%s%s",
                          ps->limits.max_depth, NOTE(ps));
    ps->pos++;
    skip_space(ps);
    if (at_char(ps, close)) {
        ps->pos++;
        ps->depth--;
        return PETAL_OK;
    }
    for (size_t n = 0;; n++) {
        if (n == max_len)
            return parse_fail(ps, ps->pos,
                              "expected at most %zu items in an array, found more%s%s%s", max_len,
                              NOTE(ps));
        petal_status st = element(ps);
        if (st) return st;
        skip_space(ps);
        if (at_char(ps, close)) break;
        if (!at_char(ps, ',')) {
            char what[48];
            snprintf(what, sizeof what, "',' or '%c' after %s", close,
                     close == ']' ? "an array element" : "an object member");
            return parse_expected(ps, what);
        }
        ps->pos++;
        skip_space(ps);
        if (at_char(ps, close)) return parse_expected(ps, after_comma);
    }
    ps->pos++;
    ps->depth--;
    return PETAL_OK;
}

static petal_status parse_item(parser *ps) {
    json_value v = {0};
    petal_status st = parse_value(ps, &v);
    if (st) return st;
    ps->vals = buffer_grow(ps->vals, &ps->cap_vals, ps->n_vals + 1, sizeof *ps->vals);
    ps->vals[ps->n_vals++] = v;
    return PETAL_OK;
}

static petal_status parse_array(parser *ps, json_value *out) {
    size_t base = ps->n_vals;
    petal_status st = parse_sequence(ps, ']', parse_item, "a value after ',' (no trailing commas)",
                                     ps->limits.max_array_len);
    if (st) return st;
    size_t n = ps->n_vals - base;
    out->type = JSON_ARRAY;
    out->array.len = n;
    out->array.items = arena_alloc(ps->doc, n * sizeof(json_value));
    if (n) memcpy(out->array.items, ps->vals + base, n * sizeof(json_value));
    for (size_t i = 0; i < n; i++) {
        out->array.items[i].index = i;
        adopt_children(&out->array.items[i]);
    }
    ps->n_vals = base;
    return PETAL_OK;
}

static int compare_keys(const void *a, const void *b) {
    const json_member *x = *(const json_member *const *)a, *y = *(const json_member *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

// A key for messages: printable ASCII as is, other bytes as \xNN, cut at 64 bytes.
static const char *describe_key(const char *key, size_t len, char *buf, size_t size) {
    size_t o = 0;
    for (size_t i = 0; i < len && i < 64 && o + 5 < size; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
    }
    if (len > 64 && o + 4 < size) o += (size_t)snprintf(buf + o, size - o, "...");
    buf[o] = '\0';
    return buf;
}

static petal_status check_unique_keys(parser *ps, const json_member *m, size_t n, size_t start) {
    const json_member **sorted = buffer_alloc(n * sizeof *sorted, "json_parse");
    for (size_t i = 0; i < n; i++) sorted[i] = &m[i];
    qsort(sorted, n, sizeof *sorted, compare_keys);
    petal_status st = PETAL_OK;
    for (size_t i = 1; i < n && !st; i++)
        if (compare_keys(&sorted[i - 1], &sorted[i]) == 0) {
            char key[300];
            st = parse_fail(ps, start, "expected unique keys in this object, found \"%s\" twice",
                            describe_key(sorted[i]->key, sorted[i]->key_len, key, sizeof key));
        }
    free(sorted);
    return st;
}

static petal_status parse_member(parser *ps) {
    json_member m = {0};
    if (!at_char(ps, '"')) return parse_expected(ps, "a string key");
    petal_status st = parse_string(ps, &m.key, &m.key_len);
    if (st) return st;
    skip_space(ps);
    if (!at_char(ps, ':')) return parse_expected(ps, "':' after an object key");
    ps->pos++;
    if ((st = parse_value(ps, &m.value))) return st;
    ps->mems = buffer_grow(ps->mems, &ps->cap_mems, ps->n_mems + 1, sizeof *ps->mems);
    ps->mems[ps->n_mems++] = m;
    return PETAL_OK;
}

static petal_status parse_object(parser *ps, json_value *out) {
    size_t base = ps->n_mems, start = ps->pos;
    petal_status st = parse_sequence(ps, '}', parse_member,
                                     "a string key after ',' (no trailing commas)", SIZE_MAX);
    size_t n = ps->n_mems - base;
    if (!st && n > 1) st = check_unique_keys(ps, ps->mems + base, n, start);
    if (st) return st;
    out->type = JSON_OBJECT;
    out->object.len = n;
    out->object.members = arena_alloc(ps->doc, n * sizeof(json_member));
    if (n) memcpy(out->object.members, ps->mems + base, n * sizeof(json_member));
    for (size_t i = 0; i < n; i++) {
        out->object.members[i].value.index = i;
        adopt_children(&out->object.members[i].value);
    }
    ps->n_mems = base;
    return PETAL_OK;
}

static petal_status parse_literal(parser *ps, json_value *out) {
    static const struct {
        const char *word;
        json_type type;
        bool value;
    } literals[] = {
        {"true", JSON_BOOL, true}, {"false", JSON_BOOL, false}, {"null", JSON_NULL, false}};
    for (size_t i = 0; i < sizeof literals / sizeof *literals; i++) {
        size_t n = strlen(literals[i].word);
        if (ps->text[ps->pos] != (unsigned char)literals[i].word[0]) continue;
        if (ps->len - ps->pos < n || memcmp(ps->text + ps->pos, literals[i].word, n) != 0) {
            char what[16];
            snprintf(what, sizeof what, "'%s'", literals[i].word);
            return parse_expected(ps, what);
        }
        out->type = literals[i].type;
        out->boolean = literals[i].value;
        ps->pos += n;
        return PETAL_OK;
    }
    return parse_expected(ps, "a value (object, array, string, number, true, false or null)");
}

static petal_status parse_value(parser *ps, json_value *out) {
    skip_space(ps);
    if (ps->pos >= ps->len)
        return parse_expected(ps, "a value (object, array, string, number, true, false or null)");
    if (++ps->n_values > ps->limits.max_values)
        return parse_fail(ps, ps->pos,
                          "expected at most %zu values in the document, found more%s%s%s",
                          ps->limits.max_values, NOTE(ps));
    unsigned char c = ps->text[ps->pos];
    if (c == '{') return parse_object(ps, out);
    if (c == '[') return parse_array(ps, out);
    if (c == '"') {
        out->type = JSON_STRING;
        return parse_string(ps, &out->string.chars, &out->string.len);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(ps, out);
    return parse_literal(ps, out);
}

petal_status json_parse(const char *text, size_t len, const char *source, json_value **out) {
    json_limits none = {JSON_MAX_DEPTH, SIZE_MAX, SIZE_MAX, NULL};
    return json_parse_limited(text, len, source, &none, out);
}

petal_status json_parse_limited(const char *text, size_t len, const char *source,
                                const json_limits *limits, json_value **out) {
    PETAL_CHECK(text || len == 0, "json_parse: NULL text with length %zu", len);
    PETAL_CHECK(limits->max_depth <= JSON_MAX_DEPTH, "json_parse_limited: max_depth %d over %d",
                limits->max_depth, JSON_MAX_DEPTH);
    *out = NULL;
    json_doc *doc = buffer_alloc(sizeof *doc, "json_parse");
    *doc = (json_doc){
        .source = buffer_strndup(source ? source : "(json)", strlen(source ? source : "(json)"))};
    parser ps = {.text = (const unsigned char *)(text ? text : ""),
                 .len = len,
                 .source = doc->source,
                 .limits = *limits,
                 .doc = doc};
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) ps.pos = 3; // a byte order mark
    petal_status st = parse_value(&ps, &doc->root);
    if (!st) {
        skip_space(&ps);
        if (ps.pos < ps.len) st = parse_expected(&ps, "the end of input after the top-level value");
    }
    free(ps.vals);
    free(ps.mems);
    strbuf_free(&ps.str);
    if (st) {
        doc_free(doc);
        return st;
    }
    adopt_children(&doc->root);
    *out = &doc->root;
    return PETAL_OK;
}

petal_status json_parse_file(const char *path, json_value **out) {
    char *data;
    size_t len;
    petal_status st = buffer_read_file(path, &data, &len);
    if (st) return st;
    st = json_parse(data, len, path, out);
    free(data);
    return st;
}

// ---- lookup ----

const json_value *json_get(const json_value *object, const char *key) {
    if (!object || object->type != JSON_OBJECT) return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < object->object.len; i++) {
        const json_member *m = &object->object.members[i];
        if (m->key_len == n && memcmp(m->key, key, n) == 0) return &m->value;
    }
    return NULL;
}

const json_value *json_at(const json_value *array, size_t i) {
    if (!array || array->type != JSON_ARRAY || i >= array->array.len) return NULL;
    return &array->array.items[i];
}

size_t json_len(const json_value *v) {
    if (v && v->type == JSON_ARRAY) return v->array.len;
    if (v && v->type == JSON_OBJECT) return v->object.len;
    return 0;
}

const char *json_type_name(json_type type) {
    switch (type) {
    case JSON_NULL:
        return "null";
    case JSON_BOOL:
        return "a boolean";
    case JSON_NUMBER:
        return "a number";
    case JSON_STRING:
        return "a string";
    case JSON_ARRAY:
        return "an array";
    case JSON_OBJECT:
        return "an object";
    }
    return "an unknown value";
}

const char *json_source(const json_value *v) {
    while (v->parent) v = v->parent;
    return ((const json_doc *)v)->source;
}

static bool is_identifier(const char *s, size_t n) {
    if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

const char *json_path(const json_value *v, char *buf, size_t size) {
    const json_value *chain[JSON_MAX_DEPTH + 1];
    int n = 0;
    for (const json_value *u = v; u->parent && n <= JSON_MAX_DEPTH; u = u->parent) chain[n++] = u;
    size_t o = 0;
    buf[0] = '\0';
    if (n == 0) snprintf(buf, size, "(root)");
    for (int i = n - 1; i >= 0 && o < size; i--) {
        const json_value *u = chain[i];
        int wrote;
        if (u->parent->type == JSON_ARRAY) {
            wrote = snprintf(buf + o, size - o, "[%zu]", u->index);
        } else {
            const json_member *m = &u->parent->object.members[u->index];
            char key[300];
            describe_key(m->key, m->key_len, key, sizeof key);
            if (is_identifier(m->key, m->key_len))
                wrote = snprintf(buf + o, size - o, "%s%s", o ? "." : "", key);
            else
                wrote = snprintf(buf + o, size - o, "[\"%s\"]", key);
        }
        o += wrote > 0 ? (size_t)wrote : 0;
    }
    return buf;
}

// ---- typed access ----

// "a number (3.5)", "a string ("abc")", for "found ..." in messages.
static const char *describe_value(const json_value *v, char *buf, size_t size) {
    char key[300];
    switch (v->type) {
    case JSON_NUMBER:
        snprintf(buf, size, "a number (%.17g)", v->number.value);
        break;
    case JSON_STRING:
        snprintf(buf, size, "a string (\"%s\")",
                 describe_key(v->string.chars, v->string.len, key, sizeof key));
        break;
    case JSON_BOOL:
        snprintf(buf, size, "a boolean (%s)", v->boolean ? "true" : "false");
        break;
    default:
        snprintf(buf, size, "%s", json_type_name(v->type));
    }
    return buf;
}

petal_status json_type_error(const json_value *v, const char *expected) {
    char path[512], found[400];
    return petal_error(PETAL_ERR_FORMAT, "%s: %s: expected %s, found %s", json_source(v),
                       json_path(v, path, sizeof path), expected,
                       describe_value(v, found, sizeof found));
}

static petal_status expect_type(const json_value *v, json_type type) {
    PETAL_CHECK(v, "json: typed access to a NULL value (expected %s)", json_type_name(type));
    return v->type == type ? PETAL_OK : json_type_error(v, json_type_name(type));
}

petal_status json_as_bool(const json_value *v, bool *out) {
    petal_status st = expect_type(v, JSON_BOOL);
    if (!st) *out = v->boolean;
    return st;
}

petal_status json_as_number(const json_value *v, double *out) {
    petal_status st = expect_type(v, JSON_NUMBER);
    if (!st) *out = v->number.value;
    return st;
}

petal_status json_as_int(const json_value *v, int64_t *out) {
    PETAL_CHECK(v, "json_as_int: NULL value");
    if (v->type != JSON_NUMBER || !v->number.is_int)
        return json_type_error(v, "an integer (exact in 64 bits)");
    *out = v->number.exact;
    return PETAL_OK;
}

petal_status json_as_string(const json_value *v, const char **out, size_t *len) {
    petal_status st = expect_type(v, JSON_STRING);
    if (st) return st;
    *out = v->string.chars;
    if (len) *len = v->string.len;
    return PETAL_OK;
}

petal_status json_as_array(const json_value *v, const json_value **out) {
    petal_status st = expect_type(v, JSON_ARRAY);
    if (!st) *out = v;
    return st;
}

petal_status json_as_object(const json_value *v, const json_value **out) {
    petal_status st = expect_type(v, JSON_OBJECT);
    if (!st) *out = v;
    return st;
}

petal_status json_member_get(const json_value *obj, const char *key, const json_value **out) {
    petal_status st = expect_type(obj, JSON_OBJECT);
    if (st) return st;
    *out = json_get(obj, key);
    if (*out) return PETAL_OK;
    char path[512];
    return petal_error(PETAL_ERR_KEY, "%s: %s: missing key \"%s\"", json_source(obj),
                       json_path(obj, path, sizeof path), key);
}

petal_status json_get_bool(const json_value *obj, const char *key, bool *out) {
    const json_value *v;
    petal_status st = json_member_get(obj, key, &v);
    return st ? st : json_as_bool(v, out);
}

petal_status json_get_number(const json_value *obj, const char *key, double *out) {
    const json_value *v;
    petal_status st = json_member_get(obj, key, &v);
    return st ? st : json_as_number(v, out);
}

petal_status json_get_int(const json_value *obj, const char *key, int64_t *out) {
    const json_value *v;
    petal_status st = json_member_get(obj, key, &v);
    return st ? st : json_as_int(v, out);
}

petal_status json_get_string(const json_value *obj, const char *key, const char **out,
                             size_t *len) {
    const json_value *v;
    petal_status st = json_member_get(obj, key, &v);
    return st ? st : json_as_string(v, out, len);
}

petal_status json_get_array(const json_value *obj, const char *key, const json_value **out) {
    const json_value *v;
    petal_status st = json_member_get(obj, key, &v);
    return st ? st : json_as_array(v, out);
}

petal_status json_get_object(const json_value *obj, const char *key, const json_value **out) {
    const json_value *v;
    petal_status st = json_member_get(obj, key, &v);
    return st ? st : json_as_object(v, out);
}

void json_write_string(strbuf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    strbuf_push(b, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = c == '"'    ? "\\\""
                          : c == '\\' ? "\\\\"
                          : c == '\n' ? "\\n"
                          : c == '\r' ? "\\r"
                          : c == '\t' ? "\\t"
                                      : NULL;
        if (esc)
            strbuf_append(b, esc, 2);
        else if (c < 0x20 || c == 0x7f) {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            strbuf_append(b, u, 6);
        } else
            strbuf_push(b, (char)c);
    }
    strbuf_push(b, '"');
}
