#include "io/buffer.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *buffer_alloc(size_t n, const char *what) {
    void *p = malloc(n ? n : 1);
    PETAL_CHECK(p, "%s: out of memory allocating %zu bytes", what, n);
    return p;
}

void *buffer_calloc(size_t n, size_t elem, const char *what) {
    void *p = calloc(n ? n : 1, elem);
    PETAL_CHECK(p, "%s: out of memory allocating %zu elements of %zu bytes", what, n, elem);
    return p;
}

void *buffer_grow(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return p;
    size_t cap2 = *cap ? *cap : 8;
    while (cap2 < need) {
        PETAL_CHECK(cap2 <= SIZE_MAX / 2 / elem, "buffer_grow: %zu elements of %zu bytes overflow",
                    need, elem);
        cap2 *= 2;
    }
    p = realloc(p, cap2 * elem);
    PETAL_CHECK(p, "buffer_grow: out of memory growing to %zu elements of %zu bytes", cap2, elem);
    *cap = cap2;
    return p;
}

char *buffer_strndup(const char *s, size_t n) {
    char *d = buffer_alloc(n + 1, "buffer_strndup");
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void strbuf_append(strbuf *b, const char *s, size_t n) {
    b->data = buffer_grow(b->data, &b->cap, b->len + n + 1, 1);
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void strbuf_push(strbuf *b, char c) {
    strbuf_append(b, &c, 1);
}

void strbuf_push_cp(strbuf *b, int32_t cp) {
    char s[4];
    if (cp < 0x80) {
        s[0] = (char)cp;
        strbuf_append(b, s, 1);
    } else if (cp < 0x800) {
        s[0] = (char)(0xC0 | (cp >> 6));
        s[1] = (char)(0x80 | (cp & 0x3F));
        strbuf_append(b, s, 2);
    } else if (cp < 0x10000) {
        s[0] = (char)(0xE0 | (cp >> 12));
        s[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        s[2] = (char)(0x80 | (cp & 0x3F));
        strbuf_append(b, s, 3);
    } else {
        s[0] = (char)(0xF0 | (cp >> 18));
        s[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        s[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        s[3] = (char)(0x80 | (cp & 0x3F));
        strbuf_append(b, s, 4);
    }
}

void strbuf_clear(strbuf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

char *strbuf_take(strbuf *b) {
    char *s = b->data ? b->data : buffer_strndup("", 0);
    *b = (strbuf){0};
    return s;
}

void strbuf_free(strbuf *b) {
    free(b->data);
    *b = (strbuf){0};
}

petal_status buffer_read_file(const char *path, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return petal_error(PETAL_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    strbuf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) strbuf_append(&b, chunk, got);
    bool failed = ferror(f);
    int err = errno;
    fclose(f);
    if (failed) {
        strbuf_free(&b);
        return petal_error(PETAL_ERR_IO, "cannot read '%s': %s", path, strerror(err));
    }
    *len = b.len;
    *data = strbuf_take(&b);
    return PETAL_OK;
}

void strbuf_printf(strbuf *b, const char *fmt, ...) {
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    PETAL_CHECK(n >= 0, "strbuf_printf: bad format '%s'", fmt);
    b->data = buffer_grow(b->data, &b->cap, b->len + (size_t)n + 1, 1);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, again);
    va_end(again);
    b->len += (size_t)n;
}
