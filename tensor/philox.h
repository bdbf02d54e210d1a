// Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a
// counter-based generator. Output block c of key k is a pure function of (k, c), so element i of a
// random tensor can be computed by any thread on any device and the result never depends on how the
// work is split. Shared by the CPU and CUDA backends.
#pragma once

#include <stdint.h>

#include "tensor/elementwise.h" // PETAL_HD

typedef struct {
    uint32_t v[4];
} philox_block;

PETAL_HD static inline uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

// Philox4x32-10 of the 128-bit counter (c0, c1, c2, c3) under the key (k0, k1).
PETAL_HD static inline philox_block philox4x32_10_full(uint32_t c0, uint32_t c1, uint32_t c2,
                                                       uint32_t c3, uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = philox_mulhilo(0xD2511F53u, c0, &hi0);
        uint32_t lo1 = philox_mulhilo(0xCD9E8D57u, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    philox_block b = {{c0, c1, c2, c3}};
    return b;
}

// petal's streams: counter (block, 0) under a 64-bit key.
PETAL_HD static inline philox_block philox4x32_10(uint64_t key, uint64_t block) {
    return philox4x32_10_full((uint32_t)block, (uint32_t)(block >> 32), 0, 0, (uint32_t)key,
                              (uint32_t)(key >> 32));
}

// The i-th 32-bit output of the stream that starts at block `offset`.
PETAL_HD static inline uint32_t philox_u32(uint64_t key, uint64_t offset, uint64_t i) {
    return philox4x32_10(key, offset + i / 4).v[i % 4];
}

// A 32-bit output as a uniform in [0, 1), as a double (exact for every output).
PETAL_HD static inline double philox_unit(uint32_t w) {
    return (double)w * 2.3283064365386963e-10; // 2^-32
}

PETAL_HD static inline double philox_uniform(uint64_t key, uint64_t offset, uint64_t i) {
    return philox_unit(philox_u32(key, offset, i));
}
