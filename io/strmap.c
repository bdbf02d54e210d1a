#include "io/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL; // FNV-1a
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

// The slot holding key, or the empty slot where it would go (n_slots > 0).
static strmap_slot *find_slot(const strmap *m, const char *key, size_t len) {
    size_t mask = m->n_slots - 1, i = hash_bytes(key, len) & mask;
    while (m->slots[i].key) {
        if (m->slots[i].len == len && memcmp(m->slots[i].key, key, len) == 0) break;
        i = (i + 1) & mask;
    }
    return &m->slots[i];
}

int64_t strmap_get(const strmap *m, const char *key, size_t len) {
    if (!m->n_slots) return -1;
    const strmap_slot *s = find_slot(m, key, len);
    return s->key ? s->value : -1;
}

static void grow(strmap *m) {
    strmap old = *m;
    m->n_slots = old.n_slots ? old.n_slots * 2 : 64;
    m->slots = calloc(m->n_slots, sizeof *m->slots);
    PETAL_CHECK(m->slots, "strmap: out of memory for %zu slots", m->n_slots);
    for (size_t i = 0; i < old.n_slots; i++)
        if (old.slots[i].key) *find_slot(m, old.slots[i].key, old.slots[i].len) = old.slots[i];
    free(old.slots);
}

void strmap_set(strmap *m, const char *key, size_t len, int64_t value) {
    if ((m->n + 1) * 2 > m->n_slots) grow(m);
    strmap_slot *s = find_slot(m, key, len);
    if (!s->key) {
        *s = (strmap_slot){.key = buffer_strndup(key, len), .len = len};
        m->n++;
    }
    s->value = value;
}

void strmap_free(strmap *m) {
    for (size_t i = 0; i < m->n_slots; i++) free(m->slots[i].key);
    free(m->slots);
    *m = (strmap){0};
}
