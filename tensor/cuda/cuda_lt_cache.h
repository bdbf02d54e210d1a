// The bookkeeping of tensor/cuda/cuda_linear.cu's cache of cuBLASLt plans (a matmul descriptor,
// three matrix layouts and the algorithm the heuristic chose). Creating them and asking the
// heuristic costs as much as the bias pass the epilogue saves on a small product, so each is made
// once per GEMM shape and kept. The key is everything the descriptors and the algorithm depend on:
// the sizes, transposes and leading dimensions, the input type and precision, the device, and the
// operands' pointer alignment (the heuristic picks an algorithm for the alignment it is told; a
// less aligned pointer needs another). Bounded: LT_CACHE_SLOTS entries per device, the least
// recently used one is replaced. One cache per device and no lock: threads that share a device
// take turns (docs/cuda.md "Threads"), as they do for its cuBLAS handle. Plain C on the host, so
// the CPU suites test it (tests/cuda/test_cuda_host.c).
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define LT_CACHE_SLOTS 32
#define LT_ALIGN_MAX   256 // bytes: cudaMalloc's alignment; no algorithm asks for more

typedef struct {
    int device;
    int dtype;     // petal_dtype of the GEMM's A and B (PETAL_BF16 for bf16 copies)
    int precision; // petal_precision
    bool trans_a, trans_b;
    int64_t m, n, k, lda, ldb, ldc; // the row-major plan (tensor/matmul_plan.h)
    int align;                      // bytes every operand pointer is a multiple of
} lt_key;

typedef struct {
    lt_key keys[LT_CACHE_SLOTS];
    uint64_t last_use[LT_CACHE_SLOTS]; // 0: the slot is empty
    uint64_t clock;
    int64_t hits, misses, evictions;
} lt_cache;

// The largest power of two (at most LT_ALIGN_MAX) dividing every address of ptrs[0..n).
static inline int lt_alignment(const void *const *ptrs, int n) {
    uintptr_t bits = LT_ALIGN_MAX;
    for (int i = 0; i < n; i++) bits |= (uintptr_t)ptrs[i];
    return (int)(bits & (~bits + 1)); // the lowest set bit
}

static inline bool lt_key_equal(const lt_key *a, const lt_key *b) {
    return a->device == b->device && a->dtype == b->dtype && a->precision == b->precision &&
           a->trans_a == b->trans_a && a->trans_b == b->trans_b && a->m == b->m && a->n == b->n &&
           a->k == b->k && a->lda == b->lda && a->ldb == b->ldb && a->ldc == b->ldc &&
           a->align == b->align;
}

// The slot for key, marked used now. *hit: it holds key already. Else the slot is for key from now
// on, and *evict says whether it held another key, whose plan the caller must destroy first: an
// empty slot if there is one, else the least recently used.
static inline int lt_cache_slot(lt_cache *c, const lt_key *key, bool *hit, bool *evict) {
    int pick = 0;
    for (int i = 0; i < LT_CACHE_SLOTS; i++) {
        if (c->last_use[i] && lt_key_equal(&c->keys[i], key)) {
            c->last_use[i] = ++c->clock;
            c->hits++;
            *hit = true;
            *evict = false;
            return i;
        }
        if (c->last_use[i] < c->last_use[pick]) pick = i;
    }
    *hit = false;
    *evict = c->last_use[pick] != 0;
    c->misses++;
    c->evictions += *evict;
    c->keys[pick] = *key;
    c->last_use[pick] = ++c->clock;
    return pick;
}

// Entries in use.
static inline int lt_cache_entries(const lt_cache *c) {
    int n = 0;
    for (int i = 0; i < LT_CACHE_SLOTS; i++) n += c->last_use[i] != 0;
    return n;
}
