// A caching block allocator with size-class free lists, shared by the CPU and CUDA backends.
//
// Training allocates the same shapes every step. Returning big buffers to the system and asking
// again costs page faults on the CPU (the kernel zeroes every new page) and a synchronising
// cudaMalloc on the GPU, so freed blocks are kept on a free list of their size class and handed
// out again. Classes are 8 per octave; a request takes a block of its class or, failing that, of
// one of the next three (at most ~1.5x the size). A request that finds no cached block asks the
// system for a new one; cached blocks (largest first) are given back first only when keeping
// them would put more than twice the peak of bytes in use on reserve. The slack matters: a
// program that alternates two different steps (training and evaluation, or two models, as
// `petal bench block --petl` does) needs the blocks of both, and a cache that gave back what the
// other step left unused would fault in fresh pages on every step. block_cache_empty releases
// everything cached (allocation does too, then retries, when the system refuses).
//
// A backend whose raw_alloc hands out zero-filled memory (fresh pages from the kernel) says so
// in raw_zeroed: block_cache_alloc_zeroed then clears only reused blocks, so a model whose
// parameters are zeros until a checkpoint overwrites them (`petal params`, loading) touches no
// page of them until it is written.
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#define BLOCK_CACHE_CLASSES 512

typedef struct cached_block {
    void *ptr;
    struct cached_block *next;
} cached_block;

typedef struct {
    void *(*raw_alloc)(size_t nbytes);          // NULL on failure
    void (*raw_free)(void *ptr, size_t nbytes); // nbytes: what raw_alloc was asked for
    size_t min_cached; // blocks smaller than this go straight to raw_alloc / raw_free
    bool raw_zeroed;   // raw_alloc's blocks of min_cached bytes and more are zero-filled
    cached_block *free_lists[BLOCK_CACHE_CLASSES];
    cached_block *spare_nodes; // list nodes not in use
    size_t reserved;           // bytes obtained from raw_alloc and not returned
    size_t cached;             // of which sitting on free lists
    size_t peak_in_use;        // the most bytes ever handed out at once (reserved - cached)
    pthread_mutex_t lock;
} block_cache;

#define BLOCK_CACHE_INIT(alloc, free, min, zeroed)                                                 \
    {                                                                                              \
        .raw_alloc = (alloc), .raw_free = (free), .min_cached = (min), .raw_zeroed = (zeroed),     \
        .lock = PTHREAD_MUTEX_INITIALIZER                                                          \
    }

// *capacity receives the size of the block handed out; free needs it back.
void *block_cache_alloc(block_cache *c, size_t nbytes, size_t *capacity);
// The same, its first nbytes zero-filled; only for a cache with raw_zeroed set.
void *block_cache_alloc_zeroed(block_cache *c, size_t nbytes, size_t *capacity);
void block_cache_free(block_cache *c, void *ptr, size_t capacity);
void block_cache_empty(block_cache *c); // returns every cached block to the system
