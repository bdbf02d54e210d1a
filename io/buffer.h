// Growable byte strings and arrays, and whole-file reads, for the io/ parsers.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tensor/error.h"

// A byte string that is always NUL-terminated once anything was appended. Zero-initialise it.
typedef struct {
    char *data;
    size_t len, cap;
} strbuf;

void strbuf_append(strbuf *b, const char *s, size_t n);
void strbuf_push(strbuf *b, char c);
void strbuf_push_cp(strbuf *b, int32_t cp); // appends the UTF-8 encoding of a code point
void strbuf_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_clear(strbuf *b); // keeps the memory
char *strbuf_take(strbuf *b); // the malloc'd string ("" if empty); b is emptied
void strbuf_free(strbuf *b);

// Reallocates p to hold at least `need` elements of `elem` bytes, growing geometrically; updates
// *cap. Aborts when memory runs out (inputs are bounded by the file being read).
void *buffer_grow(void *p, size_t *cap, size_t need, size_t elem);
// malloc and calloc that abort naming `what` when memory runs out.
void *buffer_alloc(size_t n, const char *what);
void *buffer_calloc(size_t n, size_t elem, const char *what);
char *buffer_strndup(const char *s, size_t n); // NUL-terminated copy of n bytes

// Reads a whole file into a malloc'd buffer with a NUL after the last byte (*len excludes it).
petal_status buffer_read_file(const char *path, char **data, size_t *len);
