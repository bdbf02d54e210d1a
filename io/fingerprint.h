// A 64-bit content hash over named tensors (docs/checkpoint-format.md, "Fingerprints").
//
// The stream, for each entry in ascending byte order of names: the name, a 0 byte, the dtype name
// ("f32", "bf16", ...), a 0 byte, ndim, each dim and the data size in bytes (each a little-endian
// u64), then the data (row-major, little-endian). The stream is cut into little-endian 64-bit
// words (the last one zero-padded) and mixed with xxHash64's round and avalanche constants.
// It identifies content; it is not a cryptographic hash.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tensor/tensor.h"

typedef struct {
    uint64_t acc;
    uint64_t length; // bytes fed so far
    uint8_t tail[8]; // bytes not yet forming a word
    int n_tail;
} fingerprint_state;

void fingerprint_init(fingerprint_state *s);
void fingerprint_bytes(fingerprint_state *s, const void *data, size_t n);
void fingerprint_u64(fingerprint_state *s, uint64_t v); // 8 bytes, little-endian
// One entry of the stream: name, dtype, shape, size and data (t: any device, any layout).
void fingerprint_tensor(fingerprint_state *s, const char *name, const tensor *t);
uint64_t fingerprint_final(const fingerprint_state *s);

// The indices 0..n-1 in ascending byte order of names (malloc'd; the caller frees it).
int *fingerprint_order(int n, const char *const *names);
// Feeds n named tensors in ascending byte order of their names, whatever the order given.
void fingerprint_feed_entries(fingerprint_state *s, int n, const char *const *names,
                              const tensor *const *values);
// The fingerprint of n named tensors, in ascending byte order of their names whatever the order
// given.
uint64_t fingerprint_entries(int n, const char *const *names, const tensor *const *values);
