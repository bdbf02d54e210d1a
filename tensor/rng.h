// Random number streams. Every random op draws a fresh, non-overlapping range of Philox counters
// from a generator, so a given seed reproduces the same values whatever the thread count or device.
#pragma once

#include <stdint.h>

#include "tensor/backend.h"

typedef struct {
    uint64_t seed;
    uint64_t offset; // next unused Philox block
} rng_generator;

rng_generator *rng_default(void);    // the process-wide generator (seed 0 until set)
void rng_manual_seed(uint64_t seed); // reseeds the default generator
// Reserves counters for n draws and returns where they start.
rng_state rng_reserve(rng_generator *g, int64_t n);

// In-place random fills of a float tensor (any device); g may be NULL for the default generator.
void tensor_uniform_(tensor *t, double lo, double hi, rng_generator *g);
void tensor_normal_(tensor *t, double mean, double std, rng_generator *g);
// Normal(mean, std) truncated to [lo, hi], drawn by inverting the CDF (as torch.nn.init does).
void tensor_trunc_normal_(tensor *t, double mean, double std, double lo, double hi,
                          rng_generator *g);

// PyTorch's fan-in / fan-out of a weight: dim 1 / dim 0 times the receptive field (dims 2..).
void init_fans(const tensor *w, int64_t *fan_in, int64_t *fan_out);
// kaiming_uniform_(w, a): U(-b, b), b = sqrt(2 / (1 + a^2)) * sqrt(3 / fan_in). nn.Linear's default
// init is a = sqrt(5).
void init_kaiming_uniform_(tensor *w, double a, rng_generator *g);
// xavier_uniform_(w, gain): U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)).
void init_xavier_uniform_(tensor *w, double gain, rng_generator *g);
