#include "train/synth_vocab.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

void synth_vocab_add(synth_vocab *v, const char *text) {
    for (const char *p = text; *p;) {
        size_t n = 1;
        if (*p == ' ') {
            p++;
            continue;
        }
        while (isalnum((unsigned char)*p) && isalnum((unsigned char)p[n])) n++;
        char *token = buffer_strndup(p, n);
        for (size_t i = 0; i < n; i++) token[i] = (char)tolower((unsigned char)token[i]);
        if (strmap_get(&v->seen, token, n) < 0) {
            strmap_set(&v->seen, token, n, (int64_t)v->n);
            v->tokens = buffer_grow(v->tokens, &v->cap, v->n + 1, sizeof *v->tokens);
            v->tokens[v->n++] = token;
        } else {
            free(token);
        }
        p += n;
    }
}

static int compare_tokens(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int synth_vocab_take_text(synth_vocab *v, strbuf *out) {
    static const char *const specials = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
    qsort(v->tokens, v->n, sizeof *v->tokens, compare_tokens);
    strbuf_clear(out);
    strbuf_append(out, specials, strlen(specials));
    for (size_t i = 0; i < v->n; i++) {
        strbuf_printf(out, "%s\n", v->tokens[i]);
        free(v->tokens[i]);
    }
    int lines = 5 + (int)v->n;
    free(v->tokens);
    strmap_free(&v->seen);
    *v = (synth_vocab){0};
    return lines;
}
