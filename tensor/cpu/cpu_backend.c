// The CPU backend table: 64-byte aligned host memory and the kernels of tensor/cpu/.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tensor/block_cache.h"
#include "tensor/cpu/cpu_kernels.h"
#include "tensor/threads.h"

#define HUGE_PAGE  ((size_t)2 << 20)
#define MIN_CACHED ((size_t)64 << 10)

// Blocks of 64 KiB and more are pages of their own from mmap: fresh pages read as zero without
// being touched (the block cache's raw_zeroed), so zero-filled parameters that a checkpoint is
// about to overwrite cost no memory until then. Blocks of 2 MiB and more ask for transparent
// huge pages (where the system grants them on request, as Debian's default "madvise" setting
// does): a rank-R product streams a whole activation for a few multiply-adds per element, and
// with 4 KiB pages every 4 KiB of it costs a TLB miss (measured: about half a point of Aurora's
// overhead on the ViT-B block).
static void *raw_alloc(size_t nbytes) {
    if (nbytes < MIN_CACHED) return aligned_alloc(64, (nbytes + 63) & ~(size_t)63);
    void *p = mmap(NULL, nbytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    if (nbytes >= HUGE_PAGE) madvise(p, nbytes, MADV_HUGEPAGE); // advice: failure is harmless
#endif
    return p;
}

static void raw_free(void *ptr, size_t nbytes) {
    if (nbytes < MIN_CACHED)
        free(ptr);
    else
        munmap(ptr, nbytes);
}

// Below 64 KiB malloc reuses memory without page faults; larger buffers are cached.
static block_cache cache = BLOCK_CACHE_INIT(raw_alloc, raw_free, MIN_CACHED, true);

static void *cpu_alloc(int device_index, size_t nbytes, size_t *capacity) {
    (void)device_index;
    threads_init(); // the first allocation fixes the thread budget, before any kernel runs
    return block_cache_alloc(&cache, nbytes, capacity);
}

static void *cpu_alloc_zeroed(int device_index, size_t nbytes, size_t *capacity) {
    (void)device_index;
    threads_init();
    return block_cache_alloc_zeroed(&cache, nbytes, capacity);
}

static void cpu_free(int device_index, void *ptr, size_t capacity) {
    (void)device_index;
    block_cache_free(&cache, ptr, capacity);
}

static void cpu_empty_cache(int device_index) {
    (void)device_index;
    block_cache_empty(&cache);
}

static size_t cpu_reserved(int device_index) {
    (void)device_index;
    return cache.reserved;
}

static void cpu_memset_zero(void *ptr, size_t nbytes) {
    memset(ptr, 0, nbytes);
}
static void cpu_memcpy(void *dst, const void *src, size_t nbytes) {
    memcpy(dst, src, nbytes);
}
static void cpu_synchronize(void) {}

const backend cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .alloc_zeroed = cpu_alloc_zeroed,
    .free = cpu_free,
    .empty_cache = cpu_empty_cache,
    .reserved = cpu_reserved,
    .memset_zero = cpu_memset_zero,
    .copy_from_host = cpu_memcpy,
    .copy_to_host = cpu_memcpy,
    .synchronize = cpu_synchronize,
    .copy = cpu_copy,
    .fill = cpu_fill,
    .unary = cpu_unary,
    .binary = cpu_binary,
    .where = cpu_where,
    .reduce = cpu_reduce,
    .arg_reduce = cpu_arg_reduce,
    .topk = cpu_topk,
    .matmul = cpu_matmul,
    .linear_bias = NULL, // OpenBLAS has no epilogue: the bias goes into y before the GEMM
    .softmax = cpu_softmax,
    .softmax_backward = cpu_softmax_backward,
    .layer_norm = cpu_layer_norm,
    .layer_norm_backward = cpu_layer_norm_backward,
    .cross_entropy = cpu_cross_entropy,
    .cross_entropy_backward = cpu_cross_entropy_backward,
    .attention = cpu_attention, // f32 at f32 precision; the GEMM path of ops/attention.c else
    .attention_backward = cpu_attention_backward,
    .attention_f32_only = true,
    .attention_max_scores = (int64_t)1 << 22, // 16 MB a score buffer: T = S = 2048
    .index_select = cpu_index_select,
    .index_add = cpu_index_add,
    .gather = cpu_gather,
    .scatter_add = cpu_scatter_add,
    .random = cpu_random,
    .dropout = cpu_dropout,
    .adamw = cpu_adamw,
};
