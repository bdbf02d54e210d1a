#include "tensor/block_cache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/error.h"

// Class of n: octave e = floor(log2 n) split into 8 steps of 2^(e-3).
static int size_class(size_t n) {
    int e = 63 - __builtin_clzll((unsigned long long)n);
    size_t step = (size_t)1 << (e > 3 ? e - 3 : 0);
    size_t k = (n - ((size_t)1 << e) + step - 1) / step; // 0..8
    int cls = e * 8 + (int)k;
    PETAL_CHECK(cls < BLOCK_CACHE_CLASSES, "block cache: request of %zu bytes too large", n);
    return cls;
}

static size_t class_size(int cls) {
    int e = cls / 8, k = cls % 8;
    size_t step = (size_t)1 << (e > 3 ? e - 3 : 0);
    return ((size_t)1 << e) + (size_t)k * step;
}

static void release_block(block_cache *c, int cls) {
    cached_block *b = c->free_lists[cls];
    c->free_lists[cls] = b->next;
    c->raw_free(b->ptr, class_size(cls));
    c->reserved -= class_size(cls);
    c->cached -= class_size(cls);
    b->next = c->spare_nodes;
    c->spare_nodes = b;
}

static void empty_locked(block_cache *c) {
    for (int cls = 0; cls < BLOCK_CACHE_CLASSES; cls++)
        while (c->free_lists[cls]) release_block(c, cls);
}

// Before `size` new bytes are reserved: releases cached blocks, largest first, until the reserve
// is back within twice the peak in use (counting the request) or the cache is empty.
static void trim_for(block_cache *c, size_t size) {
    size_t in_use = c->reserved - c->cached + size;
    size_t limit = 2 * (in_use > c->peak_in_use ? in_use : c->peak_in_use);
    for (int cls = BLOCK_CACHE_CLASSES - 1; cls >= 0 && c->reserved + size > limit; cls--)
        while (c->free_lists[cls] && c->reserved + size > limit) release_block(c, cls);
}

// Takes a cached block of class cls .. cls + 3 (the smallest that has one), or NULL.
static void *take_cached(block_cache *c, int cls, size_t *capacity) {
    for (int k = cls; k < cls + 4 && k < BLOCK_CACHE_CLASSES; k++) {
        cached_block *b = c->free_lists[k];
        if (!b) continue;
        c->free_lists[k] = b->next;
        b->next = c->spare_nodes;
        c->spare_nodes = b;
        c->cached -= class_size(k);
        *capacity = class_size(k);
        return b->ptr;
    }
    return NULL;
}

// *zero: the block is known to hold zeros (fresh from a raw_zeroed raw_alloc, not reused).
static void *alloc_block(block_cache *c, size_t nbytes, size_t *capacity, bool *zero) {
    *capacity = nbytes;
    *zero = false;
    if (nbytes < c->min_cached) return c->raw_alloc(nbytes);
    int cls = size_class(nbytes);
    pthread_mutex_lock(&c->lock);
    void *ptr = take_cached(c, cls, capacity);
    *zero = ptr == NULL && c->raw_zeroed;
    if (!ptr) {
        size_t size = class_size(cls);
        trim_for(c, size);
        ptr = c->raw_alloc(size);
        if (!ptr) { // the system refused: give back everything cached and try once more
            empty_locked(c);
            ptr = c->raw_alloc(size);
        }
        if (ptr) {
            c->reserved += size;
            *capacity = size;
        }
    }
    if (ptr && c->reserved - c->cached > c->peak_in_use) c->peak_in_use = c->reserved - c->cached;
    pthread_mutex_unlock(&c->lock);
    return ptr;
}

void *block_cache_alloc(block_cache *c, size_t nbytes, size_t *capacity) {
    bool zero;
    return alloc_block(c, nbytes, capacity, &zero);
}

void *block_cache_alloc_zeroed(block_cache *c, size_t nbytes, size_t *capacity) {
    PETAL_CHECK(c->raw_zeroed, "block cache: zeroed allocation from a cache without raw_zeroed");
    bool zero;
    void *ptr = alloc_block(c, nbytes, capacity, &zero);
    if (ptr && !zero) memset(ptr, 0, nbytes);
    return ptr;
}

void block_cache_free(block_cache *c, void *ptr, size_t capacity) {
    if (capacity < c->min_cached) {
        c->raw_free(ptr, capacity);
        return;
    }
    int cls = size_class(capacity);
    pthread_mutex_lock(&c->lock);
    cached_block *b = c->spare_nodes;
    if (b)
        c->spare_nodes = b->next;
    else
        b = malloc(sizeof *b);
    if (!b) { // no memory for bookkeeping: release the block instead of caching it
        c->raw_free(ptr, capacity);
        c->reserved -= capacity;
    } else {
        b->ptr = ptr;
        b->next = c->free_lists[cls];
        c->free_lists[cls] = b;
        c->cached += capacity;
    }
    pthread_mutex_unlock(&c->lock);
}

void block_cache_empty(block_cache *c) {
    pthread_mutex_lock(&c->lock);
    empty_locked(c);
    while (c->spare_nodes) {
        cached_block *b = c->spare_nodes;
        c->spare_nodes = b->next;
        free(b);
    }
    pthread_mutex_unlock(&c->lock);
}
