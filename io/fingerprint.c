#include "io/fingerprint.h"

#include <stdlib.h>
#include <string.h>

#include "io/tensor_list.h"
#include "tensor/error.h"

// xxHash64's primes.
#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static uint64_t rotl(uint64_t x, int r) {
    return (x << r) | (x >> (64 - r));
}

static uint64_t load_le64(const uint8_t *p) {
    uint64_t w = 0;
    for (int i = 7; i >= 0; i--) w = (w << 8) | p[i];
    return w;
}

static void mix_word(fingerprint_state *s, uint64_t w) {
    s->acc ^= rotl(w * P2, 31) * P1;
    s->acc = rotl(s->acc, 27) * P1 + P4;
}

void fingerprint_init(fingerprint_state *s) {
    *s = (fingerprint_state){.acc = P5};
}

void fingerprint_bytes(fingerprint_state *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->length += n;
    while (n > 0 && s->n_tail > 0) {
        s->tail[s->n_tail++] = *p++;
        n--;
        if (s->n_tail == 8) {
            mix_word(s, load_le64(s->tail));
            s->n_tail = 0;
        }
    }
    for (; n >= 8; p += 8, n -= 8) mix_word(s, load_le64(p));
    memcpy(s->tail + s->n_tail, p, n);
    s->n_tail += (int)n;
}

void fingerprint_u64(fingerprint_state *s, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    fingerprint_bytes(s, b, 8);
}

void fingerprint_tensor(fingerprint_state *s, const char *name, const tensor *t) {
    const char *dtype = dtype_name(t->dtype);
    fingerprint_bytes(s, name, strlen(name) + 1);
    fingerprint_bytes(s, dtype, strlen(dtype) + 1);
    fingerprint_u64(s, (uint64_t)t->ndim);
    for (int d = 0; d < t->ndim; d++) fingerprint_u64(s, (uint64_t)t->shape[d]);
    fingerprint_u64(s, tensor_nbytes(t));
    tensor *host = tensor_host_contiguous(t);
    fingerprint_bytes(s, tensor_data(host), tensor_nbytes(host));
    tensor_free(host);
}

uint64_t fingerprint_final(const fingerprint_state *s) {
    uint64_t acc = s->acc;
    if (s->n_tail > 0) {
        uint8_t last[8] = {0};
        memcpy(last, s->tail, (size_t)s->n_tail);
        fingerprint_state tmp = *s;
        mix_word(&tmp, load_le64(last));
        acc = tmp.acc;
    }
    acc ^= s->length;
    acc ^= acc >> 33;
    acc *= P2;
    acc ^= acc >> 29;
    acc *= P3;
    acc ^= acc >> 32;
    return acc;
}

typedef struct {
    const char *name;
    int index;
} sort_key;

static int by_name(const void *a, const void *b) {
    return strcmp(((const sort_key *)a)->name, ((const sort_key *)b)->name);
}

int *fingerprint_order(int n, const char *const *names) {
    sort_key *keys = malloc((size_t)(n > 0 ? n : 1) * sizeof *keys);
    int *order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
    PETAL_CHECK(keys != NULL && order != NULL, "fingerprint_order: out of host memory");
    for (int i = 0; i < n; i++) keys[i] = (sort_key){names[i], i};
    qsort(keys, (size_t)n, sizeof *keys, by_name);
    for (int i = 0; i < n; i++) order[i] = keys[i].index;
    free(keys);
    return order;
}

void fingerprint_feed_entries(fingerprint_state *s, int n, const char *const *names,
                              const tensor *const *values) {
    int *order = fingerprint_order(n, names);
    for (int i = 0; i < n; i++) fingerprint_tensor(s, names[order[i]], values[order[i]]);
    free(order);
}

uint64_t fingerprint_entries(int n, const char *const *names, const tensor *const *values) {
    fingerprint_state s;
    fingerprint_init(&s);
    fingerprint_feed_entries(&s, n, names, values);
    return fingerprint_final(&s);
}
