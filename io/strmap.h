// A map from byte strings to int64 values (open addressing, keys copied), for vocabularies and ids.
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *key; // NULL in an empty slot
    size_t len;
    int64_t value;
} strmap_slot;

// Zero-initialise it.
typedef struct {
    strmap_slot *slots;
    size_t n_slots; // 0 or a power of two, at least twice n
    size_t n;
} strmap;

// The value stored under key, or -1.
int64_t strmap_get(const strmap *m, const char *key, size_t len);
// Stores value under key, replacing any earlier value.
void strmap_set(strmap *m, const char *key, size_t len, int64_t value);
void strmap_free(strmap *m);
