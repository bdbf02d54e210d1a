#include "io/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "io/buffer.h"
#include "io/strmap.h"
#include "io/text.h"

enum {
    TOKEN_SPECIAL = 1, // in HF's all_special_ids
    TOKEN_APART = 2,   // an additional special token beyond the vocabulary: decoded on its own
};

typedef struct {
    char *text; // NUL-terminated
    size_t len;
    uint8_t flags;
} token_entry;

struct tokenizer {
    token_entry *tokens; // by id
    int32_t n_vocab;     // lines of vocab.txt
    int32_t n;           // ids, with added tokens
    size_t cap;
    strmap ids_by_token;
    int32_t *specials; // matched whole in text, in the order they were added
    size_t n_specials, cap_specials;
    tokenizer_special_ids ids;
};

// ---- the token table ----

static int32_t lookup(const tokenizer *t, const char *s, size_t n) {
    return (int32_t)strmap_get(&t->ids_by_token, s, n);
}

// Appends a token with the next id. A repeated token maps to its last id, as HF's vocab dict does.
static int32_t add_token(tokenizer *t, const char *s, size_t n) {
    t->tokens = buffer_grow(t->tokens, &t->cap, (size_t)t->n + 1, sizeof *t->tokens);
    int32_t id = t->n++;
    t->tokens[id] = (token_entry){.text = buffer_strndup(s, n), .len = n};
    strmap_set(&t->ids_by_token, s, n, id);
    return id;
}

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    for (int32_t i = 0; i < t->n; i++) free(t->tokens[i].text);
    free(t->tokens);
    strmap_free(&t->ids_by_token);
    free(t->specials);
    free(t);
}

int32_t tokenizer_add_special(tokenizer *t, const char *token, bool additional) {
    size_t n = strlen(token);
    PETAL_CHECK(n > 0 && text_utf8_prefix(token, n) == n,
                "tokenizer_add_special: '%s' is not a non-empty UTF-8 token", token);
    int32_t id = lookup(t, token, n);
    if (id < 0) id = add_token(t, token, n);
    if (!(t->tokens[id].flags & TOKEN_SPECIAL)) {
        t->specials =
            buffer_grow(t->specials, &t->cap_specials, t->n_specials + 1, sizeof *t->specials);
        t->specials[t->n_specials++] = id;
        t->tokens[id].flags |= TOKEN_SPECIAL;
    }
    if (additional && id >= t->n_vocab) t->tokens[id].flags |= TOKEN_APART;
    return id;
}

int32_t tokenizer_size(const tokenizer *t) {
    return t->n;
}

int32_t tokenizer_find(const tokenizer *t, const char *token) {
    return lookup(t, token, strlen(token));
}

const char *tokenizer_token(const tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n ? t->tokens[id].text : NULL;
}

const tokenizer_special_ids *tokenizer_specials(const tokenizer *t) {
    return &t->ids;
}

// ---- loading ----

// One token per line, as Python's readlines() in text mode splits them (\n, \r\n or \r).
static petal_status read_vocab_lines(tokenizer *t, const char *data, size_t len, const char *path) {
    size_t start = 0, line = 1;
    for (size_t i = 0; i <= len; i++) {
        bool eol = i < len && (data[i] == '\n' || data[i] == '\r');
        if (!eol && !(i == len && start < len)) continue;
        size_t n = i - start, bad = text_utf8_prefix(data + start, n);
        if (bad < n)
            return petal_error(PETAL_ERR_FORMAT,
                               "%s: line %zu: expected UTF-8, found byte 0x%02x at column %zu",
                               path, line, (unsigned char)data[start + bad], bad + 1);
        if (memchr(data + start, '\0', n)) // decode works on C strings
            return petal_error(PETAL_ERR_FORMAT,
                               "%s: line %zu: expected a token without NUL bytes, found one", path,
                               line);
        if (t->n == INT32_MAX / 4)
            return petal_error(PETAL_ERR_FORMAT, "%s: expected at most %d tokens, found more", path,
                               INT32_MAX / 4);
        add_token(t, data + start, n);
        if (i + 1 < len && data[i] == '\r' && data[i + 1] == '\n') i++;
        start = i + 1;
        line++;
    }
    return PETAL_OK;
}

// The five special tokens of a BERT vocabulary, which HF also matches whole in text.
static petal_status find_bert_specials(tokenizer *t, const char *path) {
    static const char *names[] = {"[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"};
    int32_t *slots[] = {&t->ids.unk, &t->ids.sep, &t->ids.pad, &t->ids.cls, &t->ids.mask};
    for (int i = 0; i < 5; i++) {
        *slots[i] = tokenizer_find(t, names[i]);
        if (*slots[i] < 0)
            return petal_error(PETAL_ERR_KEY,
                               "%s: expected a line '%s' (a BERT vocabulary has [PAD], [UNK], "
                               "[CLS], [SEP] and [MASK]), found none in %d lines",
                               path, names[i], t->n);
        tokenizer_add_special(t, names[i], false);
    }
    return PETAL_OK;
}

petal_status tokenizer_load_text(const char *text, size_t len, const char *source,
                                 tokenizer **out) {
    *out = NULL;
    tokenizer *t = buffer_alloc(sizeof *t, "tokenizer_load");
    *t = (tokenizer){.ids = {.bos = -1, .enc = -1}};
    petal_status st = read_vocab_lines(t, text, len, source);
    t->n_vocab = t->n;
    if (!st) st = find_bert_specials(t, source);
    if (st) {
        tokenizer_free(t);
        return st;
    }
    *out = t;
    return PETAL_OK;
}

petal_status tokenizer_load(const char *vocab_path, tokenizer **out) {
    *out = NULL;
    char *data;
    size_t len;
    petal_status st = buffer_read_file(vocab_path, &data, &len);
    if (st) return st;
    st = tokenizer_load_text(data, len, vocab_path, out);
    free(data);
    return st;
}

void tokenizer_add_blip_specials(tokenizer *t) {
    t->ids.bos = tokenizer_add_special(t, "[DEC]", false);
    t->ids.enc = tokenizer_add_special(t, "[ENC]", true);
}

petal_status tokenizer_load_blip(const char *vocab_path, tokenizer **out) {
    petal_status st = tokenizer_load(vocab_path, out);
    if (!st) tokenizer_add_blip_specials(*out);
    return st;
}

// ---- text to ids ----

void token_ids_free(token_ids *v) {
    free(v->ids);
    *v = (token_ids){0};
}

static void push_id(token_ids *v, int32_t id) {
    v->ids = buffer_grow(v->ids, &v->cap, v->len + 1, sizeof *v->ids);
    v->ids[v->len++] = id;
}

// The special token starting at s[i] (the longest one), or -1.
static int32_t match_special(const tokenizer *t, const char *s, size_t len, size_t i, size_t *n) {
    int32_t best = -1;
    *n = 0;
    for (size_t k = 0; k < t->n_specials; k++) {
        int32_t id = t->specials[k];
        size_t m = t->tokens[id].len;
        if (m > *n && m <= len - i && memcmp(s + i, t->tokens[id].text, m) == 0) {
            best = id;
            *n = m;
        }
    }
    return best;
}

static size_t next_cp(const char *s, size_t len, size_t i, int32_t *cp) {
    return (size_t)utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(len - i), cp);
}

static bool is_cjk(int32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static bool is_punctuation(int32_t cp) {
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
        (cp >= 123 && cp <= 126))
        return true;
    utf8proc_category_t c = utf8proc_category(cp);
    return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

static bool is_control(int32_t cp) {
    if (cp == '\t' || cp == '\n' || cp == '\r') return false;
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_CN || c >= UTF8PROC_CATEGORY_CC;
}

// HF's _clean_text and _tokenize_chinese_chars.
static void clean_text(const char *s, size_t len, strbuf *out) {
    for (size_t i = 0; i < len;) {
        int32_t cp;
        i += next_cp(s, len, i, &cp);
        if (cp == 0 || cp == 0xFFFD || is_control(cp)) continue;
        bool space = cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' ||
                     utf8proc_category(cp) == UTF8PROC_CATEGORY_ZS;
        if (is_cjk(cp)) strbuf_push(out, ' ');
        strbuf_push_cp(out, space ? ' ' : cp);
        if (is_cjk(cp)) strbuf_push(out, ' ');
    }
}

// Applies a utf8proc normalisation (NFC or NFD) to a string without NULs.
static void normalize(const char *s, size_t len, int options, strbuf *out) {
    uint8_t *dst = NULL;
    utf8proc_ssize_t n = utf8proc_map((const uint8_t *)s, (utf8proc_ssize_t)len, &dst,
                                      (utf8proc_option_t)(UTF8PROC_STABLE | options));
    PETAL_CHECK(n >= 0, "tokenizer: utf8proc_map failed on valid UTF-8: %s", utf8proc_errmsg(n));
    strbuf_append(out, (const char *)dst, (size_t)n);
    free(dst);
}

// Greedy longest-match-first WordPiece of one word, against the vocabulary only.
static void wordpiece(const tokenizer *t, const char *w, size_t n, token_ids *out, strbuf *key) {
    size_t offsets[TOKENIZER_MAX_WORD_CHARS + 2], n_chars = 0;
    for (size_t i = 0; i < n && n_chars <= TOKENIZER_MAX_WORD_CHARS; n_chars++) {
        int32_t cp;
        offsets[n_chars] = i;
        i += next_cp(w, n, i, &cp);
    }
    if (n_chars > TOKENIZER_MAX_WORD_CHARS) {
        push_id(out, t->ids.unk);
        return;
    }
    offsets[n_chars] = n;
    size_t mark = out->len;
    for (size_t start = 0; start < n_chars;) {
        int32_t id = -1;
        size_t end = n_chars;
        for (; end > start; end--) {
            strbuf_clear(key);
            if (start > 0) strbuf_append(key, "##", 2);
            strbuf_append(key, w + offsets[start], offsets[end] - offsets[start]);
            id = lookup(t, key->data, key->len);
            if (id >= 0 && id < t->n_vocab) break;
            id = -1;
        }
        if (id < 0) { // no piece covers the rest: the whole word is unknown
            out->len = mark;
            push_id(out, t->ids.unk);
            return;
        }
        push_id(out, id);
        start = end;
    }
}

static bool is_special_text(const tokenizer *t, const char *s, size_t n) {
    size_t m;
    return match_special(t, s, n, 0, &m) >= 0 && m == n;
}

typedef struct {
    strbuf clean, nfc, nfd, piece, key;
} scratch;

static void wordpiece_piece(const tokenizer *t, scratch *sc, token_ids *out) {
    if (sc->piece.len) wordpiece(t, sc->piece.data, sc->piece.len, out, &sc->key);
    strbuf_clear(&sc->piece);
}

// Accent stripping, punctuation splitting and WordPiece of one whitespace-separated word, already
// lowercased (HF lowers it again, which changes nothing: lowercase mappings are idempotent).
static void tokenize_word(const tokenizer *t, const char *w, size_t n, scratch *sc,
                          token_ids *out) {
    if (is_special_text(t, w, n)) { // HF's never_split: WordPiece'd whole
        wordpiece(t, w, n, out, &sc->key);
        return;
    }
    strbuf_clear(&sc->nfd);
    normalize(w, n, UTF8PROC_DECOMPOSE, &sc->nfd);
    for (size_t i = 0; i < sc->nfd.len;) {
        int32_t cp;
        size_t m = next_cp(sc->nfd.data, sc->nfd.len, i, &cp);
        if (utf8proc_category(cp) != UTF8PROC_CATEGORY_MN) {
            bool punct = is_punctuation(cp);
            if (punct || text_is_space(cp)) wordpiece_piece(t, sc, out);
            if (!text_is_space(cp)) strbuf_append(&sc->piece, sc->nfd.data + i, m);
            if (punct) wordpiece_piece(t, sc, out);
        }
        i += m;
    }
    wordpiece_piece(t, sc, out);
}

// HF's BasicTokenizer and WordpieceTokenizer on a piece of text between special tokens.
static void tokenize_piece(const tokenizer *t, const char *s, size_t len, scratch *sc,
                           token_ids *out) {
    strbuf_clear(&sc->clean);
    strbuf_clear(&sc->nfc);
    clean_text(s, len, &sc->clean);
    // HF's NFC step: canonically equivalent to the NFD each word gets below, so it only matters
    // when a word is compared whole with the special tokens
    normalize(sc->clean.data ? sc->clean.data : "", sc->clean.len, UTF8PROC_COMPOSE, &sc->nfc);
    const char *text = sc->nfc.data;
    size_t start = 0;
    for (size_t i = 0; i < sc->nfc.len;) {
        int32_t cp;
        size_t m = next_cp(text, sc->nfc.len, i, &cp);
        if (text_is_space(cp)) {
            if (i > start) tokenize_word(t, text + start, i - start, sc, out);
            start = i + m;
        }
        i += m;
    }
    if (sc->nfc.len > start) tokenize_word(t, text + start, sc->nfc.len - start, sc, out);
}

petal_status tokenizer_tokenize(const tokenizer *t, const char *text, size_t len, token_ids *out) {
    size_t bad = text_utf8_prefix(text, len);
    if (bad < len)
        return petal_error(PETAL_ERR_ARG,
                           "tokenizer: expected UTF-8 text, found byte 0x%02x at offset %zu",
                           (unsigned char)text[bad], bad);
    // HF lowercases every character outside the special tokens first, one at a time
    strbuf low = {0};
    for (size_t i = 0, m; i < len; i += m) {
        int32_t cp;
        if (match_special(t, text, len, i, &m) >= 0) {
            strbuf_append(&low, text + i, m);
        } else {
            m = next_cp(text, len, i, &cp);
            text_append_lower(&low, cp);
        }
    }
    scratch sc = {0};
    size_t piece = 0;
    for (size_t i = 0, m; i < low.len; i += m) {
        int32_t cp, id = match_special(t, low.data, low.len, i, &m);
        if (id < 0) {
            m = next_cp(low.data, low.len, i, &cp);
            continue;
        }
        tokenize_piece(t, low.data + piece, i - piece, &sc, out);
        push_id(out, id);
        piece = i + m;
    }
    tokenize_piece(t, low.data ? low.data + piece : "", low.len - piece, &sc, out);
    strbuf_free(&low);
    strbuf *bufs[] = {&sc.clean, &sc.nfc, &sc.nfd, &sc.piece, &sc.key};
    for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++) strbuf_free(bufs[k]);
    return PETAL_OK;
}

// ---- batches ----

static int32_t first_id(const tokenizer *t, tokenizer_first first) {
    int32_t id = first == TOKENIZER_FIRST_ENC   ? t->ids.enc
                 : first == TOKENIZER_FIRST_BOS ? t->ids.bos
                                                : t->ids.cls;
    PETAL_CHECK(id >= 0,
                "tokenizer_encode_batch: the first token asked for ([ENC] or [DEC]) was never "
                "added; load the vocabulary with tokenizer_load_blip");
    return id;
}

petal_status tokenizer_encode_batch(const tokenizer *t, const char *const *texts, int n,
                                    const tokenizer_options *opt, tensor **ids, tensor **mask) {
    PETAL_CHECK(n > 0, "tokenizer_encode_batch: %d texts", n);
    PETAL_CHECK(opt->max_length == 0 || opt->max_length >= 2,
                "tokenizer_encode_batch: max_length %d leaves no room for [CLS] and [SEP]",
                opt->max_length);
    PETAL_CHECK(opt->padding != TOKENIZER_PAD_MAX_LENGTH || opt->max_length > 0,
                "tokenizer_encode_batch: padding to max_length needs max_length > 0");
    *ids = *mask = NULL;
    int32_t first = first_id(t, opt->first);
    token_ids *seqs = buffer_calloc((size_t)n, sizeof *seqs, "tokenizer_encode_batch");
    size_t longest = 0;
    petal_status st = PETAL_OK;
    for (int b = 0; b < n && !st; b++) {
        if ((st = tokenizer_tokenize(t, texts[b], strlen(texts[b]), &seqs[b]))) {
            char why[1024];
            snprintf(why, sizeof why, "%s", petal_error_message());
            petal_error(st, "tokenizer_encode_batch: text %d: %s", b, why);
        }
        if (opt->max_length && seqs[b].len > (size_t)opt->max_length - 2)
            seqs[b].len = (size_t)opt->max_length - 2;
        if (seqs[b].len + 2 > longest) longest = seqs[b].len + 2;
    }
    if (!st) {
        int64_t L = opt->padding == TOKENIZER_PAD_MAX_LENGTH ? opt->max_length : (int64_t)longest;
        *ids = tensor_full(PETAL_I64, SHAPE(n, L), t->ids.pad);
        *mask = tensor_zeros(PETAL_I64, SHAPE(n, L));
        int64_t *id = tensor_data_i64(*ids), *m = tensor_data_i64(*mask);
        for (int b = 0; b < n; b++) {
            int64_t *row = id + (int64_t)b * L, *mrow = m + (int64_t)b * L;
            row[0] = first;
            for (size_t i = 0; i < seqs[b].len; i++) row[i + 1] = seqs[b].ids[i];
            row[seqs[b].len + 1] = t->ids.sep;
            for (size_t i = 0; i < seqs[b].len + 2; i++) mrow[i] = 1;
        }
    }
    for (int b = 0; b < n; b++) token_ids_free(&seqs[b]);
    free(seqs);
    return st;
}

// ---- ids to text ----

// Replaces every occurrence of `from` (left to right, not overlapping) by `to`.
static void replace_all(strbuf *s, const char *from, const char *to) {
    size_t nf = strlen(from), nt = strlen(to);
    if (!s->data || !strstr(s->data, from)) return;
    strbuf out = {0};
    const char *p = s->data, *hit;
    while ((hit = strstr(p, from))) {
        strbuf_append(&out, p, (size_t)(hit - p));
        strbuf_append(&out, to, nt);
        p = hit + nf;
    }
    strbuf_append(&out, p, strlen(p));
    strbuf_free(s);
    *s = out;
}

// HF's convert_tokens_to_string: " ".join(tokens).replace(" ##", "").strip(), appended to the
// sub-texts joined by spaces; `always` keeps an empty result as an (empty) sub-text.
static void flush_tokens(strbuf *tokens, strbuf *text, int *n_subs, bool always) {
    replace_all(tokens, " ##", "");
    size_t start, end;
    text_strip(tokens->data ? tokens->data : "", tokens->len, &start, &end);
    if (end > start || always) {
        if ((*n_subs)++) strbuf_push(text, ' ');
        strbuf_append(text, tokens->data ? tokens->data + start : "", end - start);
    }
    strbuf_clear(tokens);
}

char *tokenizer_decode(const tokenizer *t, const int64_t *ids, size_t n, bool skip_special) {
    static const char *cleanup[][2] = {
        {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
        {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    strbuf text = {0}, tokens = {0};
    int n_subs = 0, n_tokens = 0;
    for (size_t i = 0; i < n; i++) {
        bool known = ids[i] >= 0 && ids[i] < t->n;
        uint8_t flags = known ? t->tokens[ids[i]].flags : 0;
        const char *tok = t->tokens[known ? ids[i] : t->ids.unk].text;
        if (skip_special && (flags & TOKEN_SPECIAL)) continue;
        if (flags & TOKEN_APART) {
            if (n_tokens) flush_tokens(&tokens, &text, &n_subs, false);
            n_tokens = 0;
            if (n_subs++) strbuf_push(&text, ' ');
            strbuf_append(&text, tok, strlen(tok));
            continue;
        }
        if (n_tokens++) strbuf_push(&tokens, ' ');
        strbuf_append(&tokens, tok, strlen(tok));
    }
    if (n_tokens) flush_tokens(&tokens, &text, &n_subs, true);
    strbuf_free(&tokens);
    for (size_t k = 0; k < sizeof cleanup / sizeof *cleanup; k++)
        replace_all(&text, cleanup[k][0], cleanup[k][1]);
    return strbuf_take(&text);
}
